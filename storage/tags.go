package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// AccountData reads one account-data entry inside a write, so a
// read-modify-write (room tags) is atomic; ErrNotFound if absent.
func (tx *Tx) AccountData(ctx context.Context, userID, roomID, typ string) ([]byte, error) {
	var content string
	err := tx.q().QueryRowContext(ctx, `SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3`,
		userID, roomID, typ).Scan(&content)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading account data: %w", err)
	}
	return []byte(content), nil
}
