package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// NoticesRoom returns a user's server notices room: the newest room the
// notices user is joined to in which the user has any membership (so a
// user who left gets notices in the same room again); ErrNotFound if none.
func (db *DB) NoticesRoom(ctx context.Context, noticesUser, userID string) (string, error) {
	var id string
	err := db.q().QueryRowContext(ctx, `SELECT r.room_id FROM current_state n
		JOIN current_state u ON u.room_nid = n.room_nid AND u.type = 'm.room.member' AND u.state_key = $2
		JOIN rooms r ON r.room_nid = n.room_nid
		WHERE n.type = 'm.room.member' AND n.state_key = $1 AND n.membership = 'join'
		ORDER BY n.room_nid DESC LIMIT 1`, noticesUser, userID).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("finding the server notices room: %w", err)
	}
	return id, nil
}
