package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// AliasRoom resolves a room alias to a room ID.
func (db *DB) AliasRoom(ctx context.Context, alias string) (string, error) {
	var roomID string
	err := db.q().QueryRowContext(ctx, `SELECT r.room_id FROM room_aliases a JOIN rooms r ON r.room_nid = a.room_nid WHERE a.alias = $1`, alias).Scan(&roomID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("resolving alias: %w", err)
	}
	return roomID, nil
}

// InsertAlias maps an alias to a room; ErrExists if it is taken.
func (tx *Tx) InsertAlias(ctx context.Context, alias string, roomNID int64, creator string) error {
	res, err := tx.exec(ctx, `INSERT INTO room_aliases (alias, room_nid, creator) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, alias, roomNID, creator)
	if err != nil {
		return fmt.Errorf("inserting alias: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrExists
	}
	return nil
}

// AliasCreator returns who created an alias.
func (db *DB) AliasCreator(ctx context.Context, alias string) (string, error) {
	var c string
	err := db.q().QueryRowContext(ctx, `SELECT creator FROM room_aliases WHERE alias = $1`, alias).Scan(&c)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("reading alias: %w", err)
	}
	return c, nil
}

// DeleteAlias removes an alias; ErrNotFound if absent.
func (tx *Tx) DeleteAlias(ctx context.Context, alias string) error {
	res, err := tx.exec(ctx, `DELETE FROM room_aliases WHERE alias = $1`, alias)
	if err != nil {
		return fmt.Errorf("deleting alias: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// RoomAliases lists the local aliases of a room.
func (db *DB) RoomAliases(ctx context.Context, roomNID int64) ([]string, error) {
	out, err := queryStrings(ctx, db.q(), `SELECT alias FROM room_aliases WHERE room_nid = $1 ORDER BY alias`, roomNID)
	if err != nil {
		return nil, fmt.Errorf("listing aliases: %w", err)
	}
	return out, nil
}

// MoveAliases points every alias of one room at another.
func (tx *Tx) MoveAliases(ctx context.Context, fromNID, toNID int64) error {
	if _, err := tx.exec(ctx, `UPDATE room_aliases SET room_nid = $2 WHERE room_nid = $1`, fromNID, toNID); err != nil {
		return fmt.Errorf("moving aliases: %w", err)
	}
	return nil
}
