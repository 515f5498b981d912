package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
)

// Purges delete a room, or the older part of its history, in bounded
// batches: each batch is one logical write, so the writer serves other
// rooms between batches and a purge of a big room never holds it for long.

// PurgeBatch is how many events one purge write deletes.
const PurgeBatch = 200

// nextNID is the ID expression for a new row of table: above both the
// highest row and the floor a purge left (nid_floors), so that IDs of
// purged rows are never handed out again.
func nextNID(table, column string) string {
	return `(` + greatest(`COALESCE((SELECT MAX(`+column+`) FROM `+table+`), 0)`,
		`COALESCE((SELECT nid FROM nid_floors WHERE name = '`+table+`'), 0)`) + ` + 1)`
}

// nidTables are the tables whose IDs caches are keyed by.
var nidTables = [][2]string{{"rooms", "room_nid"}, {"events", "event_nid"}, {"state_snapshots", "snapshot_nid"}}

// raiseNIDFloors records each nidTables table's highest ID as its floor.
func (tx *Tx) raiseNIDFloors(ctx context.Context) error {
	for _, t := range nidTables {
		_, err := tx.exec(ctx, `INSERT INTO nid_floors (name, nid) SELECT $1, COALESCE(MAX(`+t[1]+`), 0) FROM `+t[0]+` WHERE true
			ON CONFLICT (name) DO UPDATE SET nid = `+greatest("nid_floors.nid", "excluded.nid"), t[0])
		if err != nil {
			return fmt.Errorf("raising the ID floor of %s: %w", t[0], err)
		}
	}
	return nil
}

// TableColumn names a column of a table.
type TableColumn struct{ Table, Column string }

// TablesWithColumns lists the tables having any of the named columns, one
// entry per (table, column), in name order. Purges find the rows of a room
// through it, so a table added later is covered without being listed.
func (db *DB) TablesWithColumns(ctx context.Context, columns ...string) ([]TableColumn, error) {
	return tablesWithColumns(ctx, db.q(), columns)
}

func tablesWithColumns(ctx context.Context, q querier, columns []string) ([]TableColumn, error) {
	rows, err := q.QueryContext(ctx, tableColumnsQuery)
	if err != nil {
		return nil, fmt.Errorf("reading the catalogue: %w", err)
	}
	defer rows.Close()
	want := map[string]bool{}
	for _, c := range columns {
		want[c] = true
	}
	var out []TableColumn
	for rows.Next() {
		var tc TableColumn
		if err := rows.Scan(&tc.Table, &tc.Column); err != nil {
			return nil, err
		}
		if want[tc.Column] {
			out = append(out, tc)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Table != out[j].Table {
			return out[i].Table < out[j].Table
		}
		return out[i].Column < out[j].Column
	})
	return out, rows.Err()
}

// PurgeProgress is how far a purge got.
type PurgeProgress struct {
	Events    int64 // events deleted
	Snapshots int64 // state snapshots deleted
}

// PurgeRoom deletes everything of a room: its events with every row keyed
// by them (edges, search index, push actions, transaction IDs, federation
// queue), its state, and then the rows of every table with a room_nid or
// room_id column that names the room, the room itself last. keep lists
// tables whose rows stay (blocked_rooms, when the room is to stay
// blocked). progress is told after each batch. A purge cut short (an
// error, a restart) is finished by running it again.
func (db *DB) PurgeRoom(ctx context.Context, roomID string, keep []string, progress func(PurgeProgress)) error {
	room, err := db.Room(ctx, roomID)
	if errors.Is(err, ErrNotFound) {
		// Only the room-ID-keyed rows can remain.
		return db.purgeRoomRows(ctx, 0, roomID, keep)
	}
	if err != nil {
		return err
	}
	if err := db.Write(ctx, func(tx *Tx) error { return tx.raiseNIDFloors(ctx) }); err != nil {
		return err
	}
	var p PurgeProgress
	report := func() {
		if progress != nil {
			progress(p)
		}
	}
	for {
		n, err := db.purgeRoomEventBatch(ctx, room.NID)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		p.Events += int64(n)
		report()
	}
	for {
		n, err := db.purgeSnapshotBatch(ctx, room.NID)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		p.Snapshots += int64(n)
		report()
	}
	if err := db.purgeRoomRows(ctx, room.NID, roomID, keep); err != nil {
		return err
	}
	db.unread.reset()
	report()
	return nil
}

// purgeRoomEventBatch deletes up to PurgeBatch events of a room, newest
// first, and returns how many it deleted.
func (db *DB) purgeRoomEventBatch(ctx context.Context, roomNID int64) (int, error) {
	var n int
	err := db.Write(ctx, func(tx *Tx) error {
		nids, ids, err := tx.eventRefs(ctx, `SELECT event_nid, event_id FROM events WHERE room_nid = $1
			ORDER BY event_nid DESC LIMIT $2`, roomNID, PurgeBatch)
		if err != nil {
			return err
		}
		n = len(nids)
		return tx.deleteEvents(ctx, roomNID, nids, ids)
	})
	return n, err
}

// eventRefs runs a query selecting (event_nid, event_id) rows.
func (tx *Tx) eventRefs(ctx context.Context, query string, args ...any) ([]int64, []string, error) {
	rows, err := tx.q().QueryContext(ctx, query, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("listing events to purge: %w", err)
	}
	defer rows.Close()
	var nids []int64
	var ids []string
	for rows.Next() {
		var nid int64
		var id string
		if err := rows.Scan(&nid, &id); err != nil {
			return nil, nil, err
		}
		nids, ids = append(nids, nid), append(ids, id)
	}
	return nids, ids, rows.Err()
}

// deleteEvents deletes events of a room and the rows keyed by them.
func (tx *Tx) deleteEvents(ctx context.Context, roomNID int64, nids []int64, ids []string) error {
	if len(nids) == 0 {
		return nil
	}
	if err := tx.unindexEvents(ctx, nids); err != nil {
		return err
	}
	byNID, byID := arrayArg(nids), arrayArg(ids)
	for _, q := range []struct {
		sql string
		arg any
	}{
		{`DELETE FROM event_edges WHERE ` + inArray("event_nid", 1), byNID},
		{`DELETE FROM push_actions WHERE ` + inArray("event_nid", 1), byNID},
		{`DELETE FROM out_of_band_memberships WHERE ` + inArray("event_nid", 1), byNID},
		{`DELETE FROM federation_queue WHERE ` + inArray("event_nid", 1), byNID},
		{`DELETE FROM txn_ids WHERE ` + inArray("event_id", 1), byID},
		{`DELETE FROM events WHERE ` + inArray("event_nid", 1), byNID},
	} {
		if _, err := tx.exec(ctx, q.sql, q.arg); err != nil {
			return fmt.Errorf("purging events: %w", err)
		}
	}
	if _, err := tx.exec(ctx, `DELETE FROM receipts WHERE room_nid = $1 AND `+inArray("event_id", 2), roomNID, byID); err != nil {
		return fmt.Errorf("purging receipts: %w", err)
	}
	return nil
}

// purgeSnapshotBatch deletes up to PurgeBatch state snapshots of a room
// with their entries.
func (db *DB) purgeSnapshotBatch(ctx context.Context, roomNID int64) (int, error) {
	var n int
	err := db.Write(ctx, func(tx *Tx) error {
		rows, err := tx.q().QueryContext(ctx, `SELECT snapshot_nid FROM state_snapshots WHERE room_nid = $1 LIMIT $2`, roomNID, PurgeBatch)
		if err != nil {
			return fmt.Errorf("listing snapshots to purge: %w", err)
		}
		var nids []int64
		for rows.Next() {
			var nid int64
			if err := rows.Scan(&nid); err != nil {
				rows.Close()
				return err
			}
			nids = append(nids, nid)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		n = len(nids)
		for _, q := range []string{`DELETE FROM state_entries WHERE ` + inArray("snapshot_nid", 1),
			`DELETE FROM state_snapshots WHERE ` + inArray("snapshot_nid", 1)} {
			if _, err := tx.exec(ctx, q, arrayArg(nids)); err != nil {
				return fmt.Errorf("purging snapshots: %w", err)
			}
		}
		return nil
	})
	return n, err
}

// purgeRoomRows deletes the rows naming the room in every table with a
// room_nid or room_id column (one write per table), then the room.
func (db *DB) purgeRoomRows(ctx context.Context, roomNID int64, roomID string, keep []string) error {
	tables, err := db.TablesWithColumns(ctx, "room_nid", "room_id")
	if err != nil {
		return err
	}
	skip := map[string]bool{"rooms": true}
	for _, k := range keep {
		skip[k] = true
	}
	for _, tc := range tables {
		if skip[tc.Table] || (tc.Column == "room_nid" && roomNID == 0) {
			continue
		}
		var arg any = roomID
		if tc.Column == "room_nid" {
			arg = roomNID
		}
		// Names come from the catalogue, never from input.
		err := db.Write(ctx, func(tx *Tx) error {
			_, err := tx.exec(ctx, `DELETE FROM `+tc.Table+` WHERE `+tc.Column+` = $1`, arg)
			return err
		})
		if err != nil {
			return fmt.Errorf("purging %s of room %s: %w", tc.Table, roomID, err)
		}
	}
	if roomNID != 0 && !contains(keep, "rooms") {
		err := db.Write(ctx, func(tx *Tx) error {
			_, err := tx.exec(ctx, `DELETE FROM rooms WHERE room_nid = $1`, roomNID)
			return err
		})
		if err != nil {
			return fmt.Errorf("purging room %s: %w", roomID, err)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// HistoryPurge says which events of a room PurgeHistory deletes: the
// timeline events before Before (in topological order) that are not
// state, not a forward extremity (Keep), and, when KeepLocal is set, not
// sent by a user of that server.
type HistoryPurge struct {
	RoomNID   int64
	Before    TopoPos
	Keep      []string
	KeepLocal string
}

// PurgeHistory deletes the events a HistoryPurge selects, in batches, with
// the rows keyed by them; progress is told the running count.
func (db *DB) PurgeHistory(ctx context.Context, p HistoryPurge, progress func(PurgeProgress)) error {
	if err := db.Write(ctx, func(tx *Tx) error { return tx.raiseNIDFloors(ctx) }); err != nil {
		return err
	}
	var done PurgeProgress
	after := TopoPos{Depth: -1 << 62, NID: 0}
	for {
		var n int
		more := false
		err := db.Write(ctx, func(tx *Tx) error {
			var err error
			n, more, after, err = tx.purgeHistoryBatch(ctx, p, after)
			return err
		})
		if err != nil {
			return err
		}
		if !more {
			break
		}
		done.Events += int64(n)
		if progress != nil {
			progress(done)
		}
	}
	db.unread.reset()
	return nil
}

// purgeHistoryBatch deletes the next batch of a history purge after the
// position after; it returns how many events it deleted, whether it looked
// at any (kept ones are skipped), and where it got to.
func (tx *Tx) purgeHistoryBatch(ctx context.Context, p HistoryPurge, after TopoPos) (int, bool, TopoPos, error) {
	rows, err := tx.q().QueryContext(ctx, `SELECT event_nid, event_id, depth, state_key IS NULL, `+userIDServer("sender")+`
		FROM events
		WHERE room_nid = $1 AND stream_pos IS NOT NULL
			AND (depth > $2 OR (depth = $2 AND event_nid > $3)) AND (depth < $4 OR (depth = $4 AND event_nid < $5))
		ORDER BY depth, event_nid LIMIT $6`, p.RoomNID, after.Depth, after.NID, p.Before.Depth, p.Before.NID, PurgeBatch)
	if err != nil {
		return 0, false, after, fmt.Errorf("listing history to purge: %w", err)
	}
	var nids []int64
	var ids []string
	seen := false
	for rows.Next() {
		var nid, depth int64
		var id, server string
		var notState bool
		if err := rows.Scan(&nid, &id, &depth, &notState, &server); err != nil {
			rows.Close()
			return 0, false, after, err
		}
		seen = true
		after = TopoPos{Depth: depth, NID: nid}
		if !notState || contains(p.Keep, id) || (p.KeepLocal != "" && server == p.KeepLocal) {
			continue
		}
		nids, ids = append(nids, nid), append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, false, after, err
	}
	if err := tx.deleteEvents(ctx, p.RoomNID, nids, ids); err != nil {
		return 0, false, after, err
	}
	return len(nids), seen, after, nil
}

// reset forgets every cached count: a purge deleted push actions, and IDs
// the cache is keyed by.
func (c *unreadCache) reset() {
	c.mu.Lock()
	c.entries = nil
	c.mu.Unlock()
}

// RoomFederationPending reports whether the federation sender has yet to
// queue or send some of a room's local events.
func (db *DB) RoomFederationPending(ctx context.Context, roomNID int64) (bool, error) {
	var pending bool
	err := db.q().QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM federation_queue WHERE room_nid = $1)
		OR COALESCE((SELECT MAX(stream_pos) FROM events WHERE room_nid = $1 AND stream_pos IS NOT NULL), 0)
			> COALESCE((SELECT pos FROM federation_cursor WHERE id = 1), 0)`, roomNID).Scan(&pending)
	if err != nil {
		return false, fmt.Errorf("checking the room's federation queue: %w", err)
	}
	return pending, nil
}

// TopoPosAtTS is the topological position of a room's first timeline event
// sent at or after ts (TopoEnd when there is none): a history purge up to
// a time deletes what lies before it.
func (db *DB) TopoPosAtTS(ctx context.Context, roomNID, ts int64) (TopoPos, error) {
	var p TopoPos
	err := db.q().QueryRowContext(ctx, `SELECT depth, event_nid FROM events
		WHERE room_nid = $1 AND stream_pos IS NOT NULL AND origin_server_ts >= $2
		ORDER BY depth, event_nid LIMIT 1`, roomNID, ts).Scan(&p.Depth, &p.NID)
	if errors.Is(err, sql.ErrNoRows) {
		return TopoEnd, nil
	}
	if err != nil {
		return p, fmt.Errorf("finding the event at a time: %w", err)
	}
	return p, nil
}

// CountRowsIn counts the rows of a table whose column holds one of values
// (a check that a purge left nothing; the names come from
// TablesWithColumns).
func CountRowsIn[T ~string | ~int64](ctx context.Context, db *DB, tc TableColumn, values []T) (int64, error) {
	var n int64
	err := db.q().QueryRowContext(ctx, `SELECT COUNT(*) FROM `+tc.Table+` WHERE `+inArray(tc.Column, 1), arrayArg(values)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting rows of %s: %w", tc.Table, err)
	}
	return n, nil
}
