package storage

import (
	"errors"
	"maps"
	"slices"
	"testing"
)

func eventIDs(evs []Event) []string {
	out := []string{}
	for _, e := range evs {
		out = append(out, e.EventID)
	}
	return out
}

// The event lookups: by ID and NID, inside and outside a write, with the
// stored columns around the JSON.
func TestEventLookups(t *testing.T) {
	db, _ := openTestDB(t)
	k := newRoomKit(t, db, "!look:x")
	k.create("@alice:x", "public", "shared")
	msgEv, msg := k.message("@alice:x", "hello")
	e, err := db.EventByID(k.ctx, msgEv.EventID)
	if err != nil || e.NID != msg.NID || e.RoomID != k.id || e.RoomVersion != "11" || e.StreamPos != msg.StreamPos ||
		e.Sender != "@alice:x" || e.StateKey != nil || e.Depth != msgEv.Depth || e.OriginTS != msgEv.OriginTS || string(e.JSON) != string(msgEv.JSON) {
		t.Fatalf("EventByID = %+v, %v", e, err)
	}
	if _, err := db.EventByID(k.ctx, "$missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing event: %v", err)
	}
	mustWrite(t, db, func(tx *Tx) error {
		e, err := tx.EventByID(k.ctx, msgEv.EventID)
		if err != nil || e.NID != msg.NID {
			t.Errorf("Tx.EventByID = %+v, %v", e, err)
		}
		nids, err := tx.EventNIDs(k.ctx, []string{msgEv.EventID, "$missing"})
		if err != nil || len(nids) != 1 || nids[msgEv.EventID] != msg.NID {
			t.Errorf("EventNIDs = %v, %v", nids, err)
		}
		return nil
	})
	first := k.ids["$look:x-1"]
	evs, err := db.EventsByNID(k.ctx, []int64{msg.NID, first})
	if err != nil || !slices.Equal(eventIDs(evs), []string{"$look:x-1", msgEv.EventID}) {
		t.Fatalf("EventsByNID = %v, %v; want NID order", eventIDs(evs), err)
	}
	if evs, err := db.EventsByNID(k.ctx, nil); evs != nil || err != nil {
		t.Fatalf("EventsByNID(nil) = %v, %v", evs, err)
	}
	evs, err = db.EventsByID(k.ctx, []string{msgEv.EventID, "$missing", "$look:x-1"})
	if got := eventIDs(evs); err != nil || len(got) != 2 || !slices.Contains(got, msgEv.EventID) || !slices.Contains(got, "$look:x-1") {
		t.Fatalf("EventsByID = %v, %v", got, err)
	}
	if evs, err := db.EventsByID(k.ctx, nil); evs != nil || err != nil {
		t.Fatalf("EventsByID(nil) = %v, %v", evs, err)
	}

	mustWrite(t, db, func(tx *Tx) error {
		return tx.RedactEvent(k.ctx, msg.NID, "$redaction", []byte(`{"type":"m.room.message","content":{}}`))
	})
	if e, _ := db.EventByID(k.ctx, msgEv.EventID); e.RedactedBy != "$redaction" || string(e.JSON) != `{"type":"m.room.message","content":{}}` {
		t.Fatalf("redacted event = %+v", e)
	}
}

// Timeline reads the live stream in either direction, between two
// positions; backfilled history is not in it.
func TestTimelineByStreamPosition(t *testing.T) {
	db, _ := openTestDB(t)
	k := newRoomKit(t, db, "!tl:x")
	other := newRoomKit(t, db, "!tl2:x")
	var ids []string
	var pos []int64
	for range 5 {
		e, out := k.message("@alice:x", "m")
		other.message("@bob:x", "elsewhere")
		ids, pos = append(ids, e.EventID), append(pos, out.StreamPos)
	}
	k.store(EventWrite{Event: k.event("m.room.message", nil, "@alice:x", map[string]any{}), Placement: Backfill})
	read := func(from, to int64, backwards bool, limit int) []string {
		t.Helper()
		evs, err := db.Timeline(k.ctx, k.nid, from, to, backwards, limit)
		if err != nil {
			t.Fatal(err)
		}
		return eventIDs(evs)
	}
	if got := read(0, 0, false, 10); !slices.Equal(got, ids) {
		t.Fatalf("forwards from the start: %v", got)
	}
	if got := read(pos[1], pos[3], false, 10); !slices.Equal(got, ids[2:4]) {
		t.Fatalf("forwards (pos1, pos3]: %v", got)
	}
	if got := read(pos[4], 0, true, 2); !slices.Equal(got, []string{ids[4], ids[3]}) {
		t.Fatalf("backwards from the end, two: %v", got)
	}
	if got := read(pos[3], pos[0], true, 10); !slices.Equal(got, []string{ids[3], ids[2], ids[1]}) {
		t.Fatalf("backwards (pos0, pos3]: %v", got)
	}
	if latest, err := db.LatestStreamPos(k.ctx, k.nid); err != nil || latest != pos[4] {
		t.Fatalf("LatestStreamPos = %d, %v; want %d", latest, err, pos[4])
	}
	if latest, err := db.LatestStreamPos(k.ctx, 999); err != nil || latest != 0 {
		t.Fatalf("LatestStreamPos of no room = %d, %v", latest, err)
	}
}

// EventNearTimestamp finds the closest live event on the asked side.
func TestEventNearTimestamp(t *testing.T) {
	db, _ := openTestDB(t)
	k := newRoomKit(t, db, "!ts:x")
	var ids []string
	for range 3 { // origin_server_ts 1010, 1020, 1030
		e, _ := k.message("@alice:x", "m")
		ids = append(ids, e.EventID)
	}
	for _, c := range []struct {
		ts       int64
		forwards bool
		want     string
	}{
		{1020, true, ids[1]}, {1020, false, ids[1]}, {1015, true, ids[1]}, {1015, false, ids[0]},
		{1, true, ids[0]}, {5000, false, ids[2]}, {1, false, ""}, {5000, true, ""},
	} {
		e, err := db.EventNearTimestamp(k.ctx, k.nid, c.ts, c.forwards)
		got := ""
		if err == nil {
			got = e.EventID
		} else if !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("EventNearTimestamp(%d, forwards %v) = %q, want %q", c.ts, c.forwards, got, c.want)
		}
	}
}

// The state reads: a key's history, the current state events, the state as
// of a stream position and what a snapshot says for history visibility.
func TestStateReads(t *testing.T) {
	db, _ := openTestDB(t)
	k := newRoomKit(t, db, "!state:x")
	k.create("@alice:x", "public", "shared")
	if st, err := db.StateAt(k.ctx, k.nid, 0); err != nil || len(st) != 0 {
		t.Fatalf("state before the room = %v, %v", st, err)
	}
	atCreate := clone(k.state)
	createdPos := db.StreamPosition()
	inviteEv, invite := k.setState("m.room.member", "@bob:x", "@alice:x", map[string]any{"membership": "invite"})
	atInvite := clone(k.state)
	_, msg := k.message("@alice:x", "before bob")
	joinEv, join := k.member("@bob:x", "join")
	k.setState("m.room.history_visibility", "", "@alice:x", map[string]any{"history_visibility": "joined"})
	leaveEv, leave := k.member("@bob:x", "leave")

	hist, err := db.StateHistory(k.ctx, k.nid, "m.room.member", "@bob:x")
	if err != nil || !slices.Equal(eventIDs(hist), []string{inviteEv.EventID, joinEv.EventID, leaveEv.EventID}) {
		t.Fatalf("bob's membership history = %v, %v", eventIDs(hist), err)
	}
	cur, err := db.CurrentStateEvents(k.ctx, k.nid, "")
	if err != nil || len(cur) != len(k.state) || cur[0].Type != "m.room.create" {
		t.Fatalf("current state events = %v, %v", eventIDs(cur), err)
	}
	members, err := db.CurrentStateEvents(k.ctx, k.nid, "m.room.member")
	if err != nil || !slices.Equal(eventIDs(members), []string{idOf(k, k.state[StateKey{"m.room.member", "@alice:x"}]), leaveEv.EventID}) {
		t.Fatalf("current member events = %v, %v", eventIDs(members), err)
	}

	for _, c := range []struct {
		pos  int64
		want map[StateKey]int64
	}{
		{createdPos, atCreate}, {invite.StreamPos, atInvite}, {msg.StreamPos, atInvite},
		{leave.StreamPos, k.state}, {leave.StreamPos + 100, k.state},
	} {
		got, err := db.StateAt(k.ctx, k.nid, c.pos)
		if err != nil || !maps.Equal(got, c.want) {
			t.Errorf("StateAt(%d) = %v, %v; want %v", c.pos, got, err, c.want)
		}
	}
	if snap, err := db.SnapshotAtPos(k.ctx, k.nid, join.StreamPos); err != nil || snap != k.row(joinEv.EventID).CurrentAfter {
		t.Fatalf("SnapshotAtPos(join) = %d, %v", snap, err)
	}

	now, err := db.VisibilityNow(k.ctx, k.nid, "@bob:x")
	if err != nil || now != (VisibilityNow{Membership: "leave", Visibility: "joined", MembershipPos: leave.StreamPos}) {
		t.Fatalf("VisibilityNow(bob) = %+v, %v", now, err)
	}
	if now, _ := db.VisibilityNow(k.ctx, k.nid, "@nobody:x"); now != (VisibilityNow{Visibility: "joined"}) {
		t.Fatalf("VisibilityNow(stranger) = %+v", now)
	}
	for _, c := range []struct {
		snapshot int64
		want     SnapshotView
	}{
		{k.row(inviteEv.EventID).StateBefore, SnapshotView{Visibility: "shared"}},
		{k.row(joinEv.EventID).StateBefore, SnapshotView{Visibility: "shared", Membership: "invite"}},
		{k.row(leaveEv.EventID).StateBefore, SnapshotView{Visibility: "joined", Membership: "join"}},
		{k.row(leaveEv.EventID).CurrentAfter, SnapshotView{Visibility: "joined", Membership: "leave"}},
		{0, SnapshotView{}},
	} {
		got, err := db.SnapshotVisibility(k.ctx, c.snapshot, "@bob:x")
		if err != nil || got != c.want {
			t.Errorf("SnapshotVisibility(%d) = %+v, %v; want %+v", c.snapshot, got, err, c.want)
		}
	}
	refs, err := db.SnapshotRefs(k.ctx, k.row(leaveEv.EventID).CurrentAfter)
	if ref := refs[StateKey{"m.room.member", "@bob:x"}]; err != nil || ref.EventID != leaveEv.EventID || ref.Value != "leave" || len(refs) != len(k.state) {
		t.Fatalf("SnapshotRefs = %v, %v", refs, err)
	}
	if refs, err := db.SnapshotRefs(k.ctx, 0); err != nil || len(refs) != 0 {
		t.Fatalf("SnapshotRefs(0) = %v, %v", refs, err)
	}
}

// IsReferenced follows prev_events edges.
func TestIsReferenced(t *testing.T) {
	db, _ := openTestDB(t)
	k := newRoomKit(t, db, "!edges:x")
	a, _ := k.message("@alice:x", "a")
	b := k.event("m.room.message", nil, "@alice:x", map[string]any{})
	b.PrevEvents = []string{a.EventID, "$unknown"}
	k.store(EventWrite{Event: b, Placement: Timeline})
	for id, want := range map[string]bool{a.EventID: true, "$unknown": true, b.EventID: false} {
		if got, err := db.IsReferenced(k.ctx, id); err != nil || got != want {
			t.Errorf("IsReferenced(%s) = %v, %v; want %v", id, got, err, want)
		}
	}
}
