package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// AccountData is one account-data entry; RoomID is "" for global data.
type AccountData struct {
	RoomID    string
	Type      string
	Content   []byte
	StreamPos int64
}

// PutAccountData stores (replacing) one entry and returns its stream position.
func (tx *Tx) PutAccountData(ctx context.Context, userID, roomID, typ string, content []byte) (int64, error) {
	pos := tx.NextStreamPos()
	tx.WakeUsers(userID)
	_, err := tx.exec(ctx, `INSERT INTO account_data (user_id, room_id, type, content, stream_pos) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content, stream_pos = excluded.stream_pos`,
		userID, roomID, typ, string(content), pos)
	if err != nil {
		return 0, fmt.Errorf("saving account data: %w", err)
	}
	return pos, nil
}

// AccountData returns one entry's content; ErrNotFound if absent.
func (db *DB) AccountData(ctx context.Context, userID, roomID, typ string) ([]byte, error) {
	return getAccountData(ctx, db.q(), userID, roomID, typ)
}

// AccountData reads one entry inside a write, so a read-modify-write (room
// tags) is atomic; ErrNotFound if absent.
func (tx *Tx) AccountData(ctx context.Context, userID, roomID, typ string) ([]byte, error) {
	return getAccountData(ctx, tx.q(), userID, roomID, typ)
}

var accountDataQuery = `SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = ` + noReprepare(3)

func getAccountData(ctx context.Context, q querier, userID, roomID, typ string) ([]byte, error) {
	var content string
	err := q.QueryRowContext(ctx, accountDataQuery, userID, roomID, typ).Scan(&content)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading account data: %w", err)
	}
	return []byte(content), nil
}

// AccountDataChanges lists a user's entries changed in (from, to], in stream order.
func (db *DB) AccountDataChanges(ctx context.Context, userID string, from, to int64) ([]AccountData, error) {
	return scanAccountData(db.q().QueryContext(ctx, `SELECT room_id, type, content, stream_pos FROM account_data
		WHERE user_id = $1 AND stream_pos > $2 AND stream_pos <= $3 ORDER BY stream_pos`, userID, from, to))
}

// roomAccountDataQuery looks entries up by room, not by position.
var roomAccountDataQuery = `SELECT room_id, type, content, stream_pos FROM account_data
	WHERE user_id = $1 AND ` + inArray("room_id", 2) + ` AND ` + noIndex("stream_pos") + ` <= $3`

// RoomAccountData lists a user's entries for some rooms as of position to.
func (db *DB) RoomAccountData(ctx context.Context, userID string, roomIDs []string, to int64) ([]AccountData, error) {
	return scanAccountData(db.q().QueryContext(ctx, roomAccountDataQuery, userID, arrayArg(roomIDs), to))
}

func scanAccountData(rows *sql.Rows, err error) ([]AccountData, error) {
	if err != nil {
		return nil, fmt.Errorf("listing account data: %w", err)
	}
	defer rows.Close()
	var out []AccountData
	for rows.Next() {
		var a AccountData
		var content string
		if err := rows.Scan(&a.RoomID, &a.Type, &content, &a.StreamPos); err != nil {
			return nil, err
		}
		a.Content = []byte(content)
		out = append(out, a)
	}
	return out, rows.Err()
}
