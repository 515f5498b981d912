package storage

import (
	"context"
	"fmt"
	"testing"
)

// roomRows counts the rows naming a room in every table with a room_nid or
// room_id column, found through the catalogue.
func roomRows(t *testing.T, db *DB, roomNID int64, roomID string) map[string]int {
	t.Helper()
	ctx := context.Background()
	tables, err := db.TablesWithColumns(ctx, "room_nid", "room_id")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, tc := range tables {
		var arg any = roomID
		if tc.Column == "room_nid" {
			arg = roomNID
		}
		var n int
		if err := db.q().QueryRowContext(ctx, `SELECT COUNT(*) FROM `+tc.Table+` WHERE `+tc.Column+` = $1`, arg).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			out[tc.Table+"."+tc.Column] = n
		}
	}
	return out
}

func TestPurgeRoomDeletesEverythingOfTheRoomOnly(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	gone, kept := newRoomKit(t, db, "!gone:hs"), newRoomKit(t, db, "!kept:hs")
	for _, k := range []*roomKit{gone, kept} {
		k.create("@a:hs", "public", "shared")
		for i := range 3*PurgeBatch + 7 {
			k.message("@a:hs", fmt.Sprintf("hello number %d", i))
		}
	}
	mustWrite(t, db, func(tx *Tx) error {
		_, err := tx.PutAccountData(ctx, "@a:hs", gone.id, "m.tag", []byte(`{}`))
		return err
	})
	before := roomRows(t, db, kept.nid, kept.id)
	if before["events.room_nid"] == 0 || roomRows(t, db, gone.nid, gone.id)["account_data.room_id"] != 1 {
		t.Fatalf("setup: %v", before)
	}
	var last PurgeProgress
	if err := db.PurgeRoom(ctx, gone.id, nil, func(p PurgeProgress) { last = p }); err != nil {
		t.Fatal(err)
	}
	if left := roomRows(t, db, gone.nid, gone.id); len(left) != 0 {
		t.Fatalf("rows left of the purged room: %v", left)
	}
	if last.Events != int64(len(gone.ids)) || last.Snapshots == 0 {
		t.Fatalf("progress = %+v, want %d events", last, len(gone.ids))
	}
	if after := roomRows(t, db, kept.nid, kept.id); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("other room changed: %v, was %v", after, before)
	}
	// Nothing of the room is left in the search index or the event-keyed tables.
	var n int
	if err := db.q().QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM event_search)
		+ (SELECT COUNT(*) FROM event_edges WHERE event_nid NOT IN (SELECT event_nid FROM events))
		- (SELECT COUNT(*) FROM events WHERE room_nid = $1 AND type = 'm.room.message')`, kept.nid).Scan(&n); err != nil || n != 0 {
		t.Fatalf("search rows or edges of purged events: %d %v", n, err)
	}
	// A new room does not reuse the purged room's IDs.
	var nid int64
	mustWrite(t, db, func(tx *Tx) (err error) { nid, err = tx.InsertRoom(ctx, "!new:hs", "11", 1); return err })
	if nid <= gone.nid {
		t.Fatalf("new room nid %d reuses the purged %d", nid, gone.nid)
	}
	// Space goes back to the file system (SQLite; PostgreSQL's autovacuum
	// does that itself).
	if !onPostgres() {
		free, err := db.FreePages(ctx)
		if err != nil || free == 0 {
			t.Fatalf("free pages after purge = %d %v", free, err)
		}
		if err := db.ReclaimSpace(ctx, 1<<20); err != nil {
			t.Fatal(err)
		}
		if free, err := db.FreePages(ctx); err != nil || free != 0 {
			t.Fatalf("free pages after reclaiming = %d %v", free, err)
		}
	}
	// Purging again (a resumed purge) is harmless.
	if err := db.PurgeRoom(ctx, gone.id, nil, nil); err != nil {
		t.Fatal(err)
	}
}

func TestPurgeHistoryKeepsStateExtremitiesAndLocalEvents(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	k := newRoomKit(t, db, "!h:hs")
	k.create("@a:hs", "public", "shared")
	var ids []string
	for i := range 2*PurgeBatch + 3 {
		sender := "@b:remote"
		if i%10 == 0 {
			sender = "@a:hs"
		}
		e, _ := k.message(sender, fmt.Sprintf("m%d", i))
		ids = append(ids, e.EventID)
	}
	k.member("@c:remote", "join")
	cut := ids[len(ids)-5]
	cutEv, err := db.EventByID(ctx, cut)
	if err != nil {
		t.Fatal(err)
	}
	err = db.PurgeHistory(ctx, HistoryPurge{RoomNID: k.nid, Before: TopoPos{Depth: cutEv.Depth, NID: cutEv.NID}, KeepLocal: "hs"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		_, err := db.EventByID(ctx, id)
		kept := i >= len(ids)-5 || i%10 == 0
		if kept != (err == nil) {
			t.Fatalf("event %d (%s): kept=%v, err=%v", i, id, kept, err)
		}
	}
	// State stays.
	k.wantCurrent("after history purge")
}
