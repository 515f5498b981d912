package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// SetRoomBlocked blocks (or unblocks) a room by ID; the room need not exist.
func (tx *Tx) SetRoomBlocked(ctx context.Context, roomID string, blocked bool, by string, ts int64) error {
	var err error
	if blocked {
		_, err = tx.exec(ctx, `INSERT INTO blocked_rooms (room_id, user_id, ts) VALUES ($1, $2, $3)
			ON CONFLICT (room_id) DO NOTHING`, roomID, by, ts)
	} else {
		_, err = tx.exec(ctx, `DELETE FROM blocked_rooms WHERE room_id = $1`, roomID)
	}
	if err != nil {
		return fmt.Errorf("blocking room: %w", err)
	}
	return nil
}

// RoomBlockedBy is the admin who blocked a room ("" when it is not blocked).
func (db *DB) RoomBlockedBy(ctx context.Context, roomID string) (string, error) {
	var by string
	err := db.q().QueryRowContext(ctx, `SELECT user_id FROM blocked_rooms WHERE room_id = $1`, roomID).Scan(&by)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading room block: %w", err)
	}
	return by, nil
}
