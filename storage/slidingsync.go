package storage

import (
	"context"
	"fmt"
)

// BumpEventTypes are the events that move a room up a sliding-sync room
// list (MSC4186 bump_stamp): messages and the like, not state changes.
var BumpEventTypes = []string{"m.room.create", "m.room.message", "m.room.encrypted", "m.sticker",
	"m.call.invite", "m.poll.start", "m.beacon_info"}

var bumpStampsQuery = `SELECT r.value, (SELECT e.stream_pos FROM events e
		WHERE e.room_nid = r.value AND e.stream_pos IS NOT NULL AND e.stream_pos <= $2 AND ` + inArray("e.type", 3) + `
		ORDER BY e.stream_pos DESC LIMIT 1)
	FROM ` + arrayTable(1, "r")

// BumpStamps returns, per room, the stream position of its newest bump
// event at or before upTo (rooms without one are absent). One statement for
// all rooms; each walks its room's timeline backwards to the first match.
func (db *DB) BumpStamps(ctx context.Context, roomNIDs []int64, upTo int64) (map[int64]int64, error) {
	out := map[int64]int64{}
	if len(roomNIDs) == 0 {
		return out, nil
	}
	rows, err := db.q().QueryContext(ctx, bumpStampsQuery, arrayArg(roomNIDs), upTo, arrayArg(BumpEventTypes))
	if err != nil {
		return nil, fmt.Errorf("reading bump stamps: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var nid int64
		var pos *int64
		if err := rows.Scan(&nid, &pos); err != nil {
			return nil, err
		}
		if pos != nil {
			out[nid] = *pos
		}
	}
	return out, rows.Err()
}

// RoomFlags are the facts sliding-sync list filters select rooms by.
type RoomFlags struct {
	Encrypted bool
	Type      string // m.room.create content.type ("" for plain rooms)
}

var roomFlagsQuery = `SELECT c.room_nid, c.type, COALESCE(` + jsonText("e.json", "content", "type") + `, '')
	FROM current_state c JOIN events e ON e.event_nid = c.event_nid
	WHERE ` + inArray("c.room_nid", 1) + ` AND c.type IN ('m.room.create', 'm.room.encryption') AND c.state_key = ''`

// RoomFlagsOf reads the current encryption and room type of rooms.
func (db *DB) RoomFlagsOf(ctx context.Context, roomNIDs []int64) (map[int64]RoomFlags, error) {
	out := map[int64]RoomFlags{}
	if len(roomNIDs) == 0 {
		return out, nil
	}
	rows, err := db.q().QueryContext(ctx, roomFlagsQuery, arrayArg(roomNIDs))
	if err != nil {
		return nil, fmt.Errorf("reading room flags: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var nid int64
		var typ, roomType string
		if err := rows.Scan(&nid, &typ, &roomType); err != nil {
			return nil, err
		}
		f := out[nid]
		if typ == "m.room.encryption" {
			f.Encrypted = true
		} else {
			f.Type = roomType
		}
		out[nid] = f
	}
	return out, rows.Err()
}
