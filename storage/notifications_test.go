package storage

import (
	"testing"
)

// GET /notifications: a user's push actions newest first, paged by
// position, read up to the room's receipt, optionally highlights only.
func TestNotifications(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := t.Context()
	k := newRoomKit(t, db, "!notif:x")
	k.create("@alice:x", "public", "shared")
	var ids []string
	var pos []int64
	for i := range 4 {
		e := k.event("m.room.message", nil, "@alice:x", map[string]any{"body": "m"})
		out := k.store(EventWrite{Event: e, Placement: Timeline, Push: []PushAction{
			{UserID: "@bob:x", Highlight: i%2 == 1, ThreadID: "main", Actions: []byte(`["notify"]`)}}})
		ids, pos = append(ids, e.EventID), append(pos, out.StreamPos)
	}
	mustWrite(t, db, func(tx *Tx) error {
		_, err := tx.PutReceipt(ctx, Receipt{RoomNID: k.nid, UserID: "@bob:x", Type: "m.read", EventID: ids[1], EventPos: pos[1]})
		return err
	})
	got, err := db.Notifications(ctx, "@bob:x", 0, 10, false)
	if err != nil || len(got) != 4 {
		t.Fatalf("Notifications = %+v, %v", got, err)
	}
	for i, n := range got {
		src := 3 - i
		if n.Event.EventID != ids[src] || n.Highlight != (src%2 == 1) || n.Read != (src <= 1) || string(n.Actions) != `["notify"]` {
			t.Fatalf("notification %d = %s highlight %v read %v; want %s highlight %v read %v",
				i, n.Event.EventID, n.Highlight, n.Read, ids[src], src%2 == 1, src <= 1)
		}
	}
	page, _ := db.Notifications(ctx, "@bob:x", pos[3], 2, false)
	if len(page) != 2 || page[0].Event.EventID != ids[2] || page[1].Event.EventID != ids[1] {
		t.Fatalf("page before the newest = %+v", page)
	}
	hl, _ := db.Notifications(ctx, "@bob:x", 0, 10, true)
	if len(hl) != 2 || hl[0].Event.EventID != ids[3] || hl[1].Event.EventID != ids[1] {
		t.Fatalf("highlights = %+v", hl)
	}
	if none, _ := db.Notifications(ctx, "@alice:x", 0, 10, false); len(none) != 0 {
		t.Fatalf("alice's notifications = %+v", none)
	}
}
