package storage

import (
	"context"
	"fmt"
)

// Receipt is a user's read receipt in a room.
type Receipt struct {
	RoomNID   int64
	UserID    string
	Type      string // m.read or m.read.private
	ThreadID  string // "" for unthreaded receipts
	EventID   string
	EventPos  int64 // stream position of the event read
	TS        int64
	StreamPos int64
}

// PutReceipt stores a receipt unless the user already has one of the same
// type and thread at a later event (receipts only move forward). It
// reports whether the receipt was stored.
func (tx *Tx) PutReceipt(ctx context.Context, r Receipt) (bool, error) {
	var cur int64
	err := tx.q().QueryRowContext(ctx, `SELECT event_pos FROM receipts WHERE room_nid = $1 AND user_id = $2 AND receipt_type = $3 AND thread_id = $4`,
		r.RoomNID, r.UserID, r.Type, r.ThreadID).Scan(&cur)
	if err == nil && cur >= r.EventPos {
		return false, nil
	}
	pos := tx.NextStreamPos()
	tx.WakeRooms(r.RoomNID)
	_, err = tx.exec(ctx, `INSERT INTO receipts (room_nid, user_id, receipt_type, thread_id, event_id, event_pos, ts, stream_pos)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (room_nid, user_id, receipt_type, thread_id) DO UPDATE SET
			event_id = excluded.event_id, event_pos = excluded.event_pos, ts = excluded.ts, stream_pos = excluded.stream_pos`,
		r.RoomNID, r.UserID, r.Type, r.ThreadID, r.EventID, r.EventPos, r.TS, pos)
	if err != nil {
		return false, fmt.Errorf("saving receipt: %w", err)
	}
	return true, nil
}

// ReceiptsSince lists a room's receipts changed in (from, to].
func (db *DB) ReceiptsSince(ctx context.Context, roomNID, from, to int64) ([]Receipt, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT room_nid, user_id, receipt_type, thread_id, event_id, event_pos, ts, stream_pos
		FROM receipts WHERE room_nid = $1 AND stream_pos > $2 AND stream_pos <= $3 ORDER BY stream_pos`, roomNID, from, to)
	if err != nil {
		return nil, fmt.Errorf("listing receipts: %w", err)
	}
	defer rows.Close()
	var out []Receipt
	for rows.Next() {
		var r Receipt
		if err := rows.Scan(&r.RoomNID, &r.UserID, &r.Type, &r.ThreadID, &r.EventID, &r.EventPos, &r.TS, &r.StreamPos); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ReadUpTo is the stream position up to which a user has read a room's
// main timeline (their latest m.read or m.read.private receipt, unthreaded
// or "main"); 0 when they never sent one.
func (db *DB) ReadUpTo(ctx context.Context, roomNID int64, userID string) (int64, error) {
	var pos int64
	err := db.q().QueryRowContext(ctx, `SELECT COALESCE(MAX(event_pos), 0) FROM receipts
		WHERE room_nid = $1 AND user_id = $2 AND thread_id IN ('', 'main')`, roomNID, userID).Scan(&pos)
	if err != nil {
		return 0, fmt.Errorf("reading receipt position: %w", err)
	}
	return pos, nil
}
