package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// InsertFilter stores a filter and returns its ID; an identical filter of the
// same user gets its existing ID, so clients that re-upload on every start do
// not grow the table.
func (tx *Tx) InsertFilter(ctx context.Context, userID string, filterJSON []byte) (int64, error) {
	var id int64
	err := tx.q().QueryRowContext(ctx, `SELECT filter_id FROM filters WHERE user_id = $1 AND filter_json = $2`, userID, string(filterJSON)).Scan(&id)
	if err == nil {
		return id, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("looking up filter: %w", err)
	}
	err = tx.q().QueryRowContext(ctx, `INSERT INTO filters (user_id, filter_id, filter_json)
		VALUES ($1, (SELECT COALESCE(MAX(filter_id), -1) + 1 FROM filters WHERE user_id = $1), $2) RETURNING filter_id`,
		userID, string(filterJSON)).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("inserting filter: %w", err)
	}
	return id, nil
}

// Filter returns a stored filter; ErrNotFound if absent.
func (db *DB) Filter(ctx context.Context, userID string, filterID int64) ([]byte, error) {
	var f string
	err := db.q().QueryRowContext(ctx, `SELECT filter_json FROM filters WHERE user_id = $1 AND filter_id = $2`, userID, filterID).Scan(&f)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading filter: %w", err)
	}
	return []byte(f), nil
}
