package storage

import (
	"context"
	"fmt"
)

// AdminRoom is a room as the admin API lists it, from its current state.
type AdminRoom struct {
	RoomID            string
	Version           string
	Published         bool
	JoinedMembers     int
	StateEvents       int
	Name              string
	CanonicalAlias    string
	Creator           string
	Encryption        string
	JoinRules         string
	GuestAccess       string
	HistoryVisibility string
	RoomType          string
}

var adminRoomsQuery = `SELECT r.room_id, r.room_version, r.published,
		(SELECT COUNT(*) FROM current_state m WHERE m.room_nid = r.room_nid AND m.type = 'm.room.member' AND m.membership = 'join'),
		(SELECT COUNT(*) FROM current_state s WHERE s.room_nid = r.room_nid),
		COALESCE(` + stateString("m.room.name", "name") + `, ''),
		COALESCE(` + stateString("m.room.canonical_alias", "alias") + `, ''),
		COALESCE((SELECT e.sender FROM current_state c JOIN events e ON e.event_nid = c.event_nid
			WHERE c.room_nid = r.room_nid AND c.type = 'm.room.create' AND c.state_key = ''), ''),
		COALESCE(` + stateString("m.room.encryption", "algorithm") + `, ''),
		COALESCE(` + stateValueOf("m.room.join_rules") + `, ''),
		COALESCE(` + stateString("m.room.guest_access", "guest_access") + `, ''),
		COALESCE(` + stateValueOf("m.room.history_visibility") + `, ''),
		COALESCE(` + stateString("m.room.create", "type") + `, '')
	FROM rooms r`

// AdminRooms lists every room the server knows, or one room when roomID is
// not "" (ErrNotFound when it is unknown).
func (db *DB) AdminRooms(ctx context.Context, roomID string) ([]AdminRoom, error) {
	q, args := adminRoomsQuery+` ORDER BY r.room_nid`, []any{}
	if roomID != "" {
		q, args = adminRoomsQuery+` WHERE r.room_id = $1`, []any{roomID}
	}
	rows, err := db.q().QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing rooms: %w", err)
	}
	defer rows.Close()
	var out []AdminRoom
	for rows.Next() {
		var a AdminRoom
		if err := rows.Scan(&a.RoomID, &a.Version, &a.Published, &a.JoinedMembers, &a.StateEvents, &a.Name, &a.CanonicalAlias,
			&a.Creator, &a.Encryption, &a.JoinRules, &a.GuestAccess, &a.HistoryVisibility, &a.RoomType); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if roomID != "" && len(out) == 0 {
		return nil, ErrNotFound
	}
	return out, nil
}

// JoinedMembers lists the users joined to a room.
func (db *DB) JoinedMembers(ctx context.Context, roomNID int64) ([]string, error) {
	out, err := queryStrings(ctx, db.q(), `SELECT state_key FROM current_state
		WHERE room_nid = $1 AND type = 'm.room.member' AND membership = 'join' ORDER BY state_key`, roomNID)
	if err != nil {
		return nil, fmt.Errorf("listing joined members: %w", err)
	}
	return out, nil
}
