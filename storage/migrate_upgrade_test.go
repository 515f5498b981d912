package storage

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
)

// A database from before this session's migrations (schema 11) keeps its
// notifications and memberships through the upgrade: push actions moved to
// stream order, the covering membership index, receipts by position.
func TestUpgradeFromSchema11KeepsData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrateUpTo(ctx, raw, 11); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO rooms (room_nid, room_id, room_version, created_ts) VALUES (1, '!r:x', '12', 1)`,
		`INSERT INTO current_state (room_nid, type, state_key, event_nid, membership, stream_pos) VALUES (1, 'm.room.member', '@u:x', 7, 'join', 5)`,
		`INSERT INTO push_actions (user_id, room_nid, event_nid, stream_pos, highlight, thread_id, actions) VALUES ('@u:x', 1, 10, 10, 0, 'main', '["notify"]')`,
		`INSERT INTO push_actions (user_id, room_nid, event_nid, stream_pos, highlight, thread_id, actions) VALUES ('@u:x', 1, 11, 11, 1, 'main', '["notify"]')`,
		`INSERT INTO push_actions (user_id, room_nid, event_nid, stream_pos, highlight, thread_id, actions) VALUES ('@v:x', 1, 11, 11, 0, 'main', '["notify"]')`,
		`INSERT INTO receipts (room_nid, user_id, receipt_type, thread_id, event_id, event_pos, ts, stream_pos) VALUES (1, '@u:x', 'm.read', '', '$a', 10, 1, 12)`,
		`UPDATE stream_position SET pos = 12`,
	} {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	raw.Close()

	db, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("upgrading: %v", err)
	}
	defer db.Close()
	main, _, err := db.UnreadCounts(ctx, 1, "@u:x", false, 12)
	if err != nil || main.Notifications != 1 || main.Highlights != 1 {
		t.Fatalf("unread after upgrade = %+v, %v; want the one after the receipt, highlighted", main, err)
	}
	ms, err := db.MembershipsAt(ctx, "@u:x", 12)
	if err != nil || len(ms) != 1 || ms[0].Membership != "join" || ms[0].StreamPos != 5 || ms[0].EventNID != 7 {
		t.Fatalf("memberships after upgrade = %+v, %v", ms, err)
	}
	changed, err := db.RoomsChangedSince(ctx, 11, 12)
	if err != nil || !changed.Rooms[1] {
		t.Fatalf("rooms changed by the receipt = %v, %v", changed, err)
	}
}
