package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
)

// RoomMembership is a user's membership of a room as of a stream position.
type RoomMembership struct {
	RoomNID    int64
	RoomID     string
	Membership string
	StreamPos  int64 // of the membership event
	EventNID   int64
}

// MembershipsAt returns, for every room the user has a membership event
// in, the latest one at or before upTo, in stream order.
func (db *DB) MembershipsAt(ctx context.Context, userID string, upTo int64) ([]RoomMembership, error) {
	// Usually the current memberships are what upTo sees: read them from
	// current_state alone (no event rows, which lie scattered over the
	// table). Its stream_pos is where the membership became current: the
	// member event's own position, or for a resolved fork the position that
	// resolved it. A membership that became current after upTo sends the
	// reader through the event history instead.
	rows, err := db.q().QueryContext(ctx, `SELECT c.room_nid, r.room_id, COALESCE(c.membership, ''), c.stream_pos, c.event_nid
		FROM current_state c JOIN rooms r ON r.room_nid = c.room_nid
		WHERE c.type = 'm.room.member' AND c.state_key = $1`, userID)
	if err != nil {
		return nil, fmt.Errorf("listing memberships: %w", err)
	}
	var out []RoomMembership
	current := true
	for rows.Next() {
		var m RoomMembership
		if err := rows.Scan(&m.RoomNID, &m.RoomID, &m.Membership, &m.StreamPos, &m.EventNID); err != nil {
			rows.Close()
			return nil, err
		}
		if m.StreamPos > upTo {
			current = false
			break
		}
		out = append(out, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing memberships: %w", err)
	}
	if current {
		sort.Slice(out, func(i, j int) bool { return out[i].StreamPos < out[j].StreamPos })
		return out, nil
	}
	return db.membershipHistoryAt(ctx, userID, upTo)
}

// membershipHistoryAt is MembershipsAt from the user's member events.
func (db *DB) membershipHistoryAt(ctx context.Context, userID string, upTo int64) ([]RoomMembership, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT e.room_nid, r.room_id, COALESCE(e.state_value, ''), e.stream_pos, e.event_nid
		FROM events e JOIN rooms r ON r.room_nid = e.room_nid
		WHERE e.type = 'm.room.member' AND e.state_key = $1 AND e.stream_pos IS NOT NULL AND e.stream_pos <= $2
		  AND e.stream_pos = (SELECT MAX(x.stream_pos) FROM events x WHERE x.type = 'm.room.member' AND x.state_key = $1
		      AND x.room_nid = e.room_nid AND x.stream_pos IS NOT NULL AND x.stream_pos <= $2)
		ORDER BY e.stream_pos`, userID, upTo)
	if err != nil {
		return nil, fmt.Errorf("listing memberships: %w", err)
	}
	defer rows.Close()
	var out []RoomMembership
	for rows.Next() {
		var m RoomMembership
		if err := rows.Scan(&m.RoomNID, &m.RoomID, &m.Membership, &m.StreamPos, &m.EventNID); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return db.withOutOfBand(ctx, out, userID, upTo)
}

// withOutOfBand merges the user's out-of-band memberships (outofband.go)
// into memberships read from the timeline: per room the later one wins.
func (db *DB) withOutOfBand(ctx context.Context, ms []RoomMembership, userID string, upTo int64) ([]RoomMembership, error) {
	oob, err := db.outOfBandHistoryAt(ctx, userID, upTo)
	if err != nil || len(oob) == 0 {
		return ms, err
	}
	at := make(map[int64]int, len(ms))
	for i, m := range ms {
		at[m.RoomNID] = i
	}
	for _, o := range oob {
		if i, ok := at[o.RoomNID]; !ok {
			ms = append(ms, o)
		} else if o.StreamPos > ms[i].StreamPos {
			ms[i] = o
		}
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].StreamPos < ms[j].StreamPos })
	return ms, nil
}

// PushRulesPos is the stream position of the user's last push rule change (0: never).
func (db *DB) PushRulesPos(ctx context.Context, userID string) (int64, error) {
	var pos int64
	err := db.q().QueryRowContext(ctx, `SELECT stream_pos FROM push_rules WHERE user_id = $1`, userID).Scan(&pos)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading push rules position: %w", err)
	}
	return pos, nil
}

// RoomMates lists the users joined to any room the user is joined to
// (including the user), for presence and device list fan-out.
func (db *DB) RoomMates(ctx context.Context, userID string) ([]string, error) {
	out, err := queryStrings(ctx, db.q(), `SELECT DISTINCT o.state_key FROM current_state me
		JOIN current_state o ON o.room_nid = me.room_nid AND o.type = 'm.room.member' AND o.membership = 'join'
		WHERE me.type = 'm.room.member' AND me.state_key = $1 AND me.membership = 'join'`, userID)
	if err != nil {
		return nil, fmt.Errorf("listing room mates: %w", err)
	}
	return out, nil
}

// RoomChanges is what changed in rooms over a window of the stream.
type RoomChanges struct {
	// Rooms have new timeline events or receipts.
	Rooms map[int64]bool
	// Members are the rooms among them with membership events.
	Members map[int64]bool
}

// RoomsChangedSince lists the rooms with new timeline events or receipts
// in (from, to], so an incremental sync can skip untouched rooms, and which
// of them saw membership changes (read from the same rows).
func (db *DB) RoomsChangedSince(ctx context.Context, from, to int64) (RoomChanges, error) {
	out := RoomChanges{Rooms: map[int64]bool{}, Members: map[int64]bool{}}
	rows, err := db.q().QueryContext(ctx, `SELECT room_nid, CASE WHEN type = 'm.room.member' THEN 1 ELSE 0 END FROM events WHERE stream_pos > $1 AND stream_pos <= $2
		UNION SELECT room_nid, 0 FROM receipts WHERE stream_pos > $1 AND stream_pos <= $2`, from, to)
	if err != nil {
		return out, fmt.Errorf("listing changed rooms: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var nid int64
		var member bool
		if err := rows.Scan(&nid, &member); err != nil {
			return out, err
		}
		out.Rooms[nid] = true
		if member {
			out.Members[nid] = true
		}
	}
	return out, rows.Err()
}

var newlyJoinedQuery = `SELECT DISTINCT state_key FROM current_state
	WHERE type = 'm.room.member' AND membership = 'join' AND ` + inArray("room_nid", 1) + `
	  AND (stream_pos > $2 OR ` + inArray("room_nid", 3) + `)`

// NewlyJoined lists the users joined to the rooms in changed whose join
// became current after since, and every joined member of the rooms in all
// (rooms the reader joined since): whose presence an incremental sync sends
// whatever its age.
func (db *DB) NewlyJoined(ctx context.Context, changed, all []int64, since int64) ([]string, error) {
	if len(changed) == 0 && len(all) == 0 {
		return nil, nil
	}
	out, err := queryStrings(ctx, db.q(), newlyJoinedQuery, arrayArg(append(changed, all...)), since, arrayArg(all))
	if err != nil {
		return nil, fmt.Errorf("listing newly joined members: %w", err)
	}
	return out, nil
}
