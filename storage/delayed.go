package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// DelayedEvent is an event scheduled to be sent later (MSC4140).
type DelayedEvent struct {
	DelayID      string
	UserID       string
	DeviceID     string
	RoomID       string
	Type         string
	StateKey     *string // nil for a timeline event
	Content      []byte
	DelayMS      int64
	RunningSince int64 // ms
	SendTS       int64 // ms
}

const delayedColumns = `delay_id, user_id, device_id, room_id, type, state_key, content, delay_ms, running_since, send_ts`

func scanDelayed(rows *sql.Rows) ([]DelayedEvent, error) {
	defer rows.Close()
	var out []DelayedEvent
	for rows.Next() {
		var d DelayedEvent
		var sk sql.NullString
		var content string
		if err := rows.Scan(&d.DelayID, &d.UserID, &d.DeviceID, &d.RoomID, &d.Type, &sk, &content, &d.DelayMS, &d.RunningSince, &d.SendTS); err != nil {
			return nil, err
		}
		if sk.Valid {
			d.StateKey = &sk.String
		}
		d.Content = []byte(content)
		out = append(out, d)
	}
	return out, rows.Err()
}

// InsertDelayedEvent schedules an event; maxPerUser bounds a user's
// scheduled events (ErrLimit past it).
func (tx *Tx) InsertDelayedEvent(ctx context.Context, d DelayedEvent, maxPerUser int) error {
	var n int
	if err := tx.q().QueryRowContext(ctx, `SELECT COUNT(*) FROM delayed_events WHERE user_id = $1`, d.UserID).Scan(&n); err != nil {
		return fmt.Errorf("counting delayed events: %w", err)
	}
	if n >= maxPerUser {
		return ErrLimit
	}
	_, err := tx.exec(ctx, `INSERT INTO delayed_events (`+delayedColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		d.DelayID, d.UserID, d.DeviceID, d.RoomID, d.Type, d.StateKey, string(d.Content), d.DelayMS, d.RunningSince, d.SendTS)
	if err != nil {
		return fmt.Errorf("scheduling delayed event: %w", err)
	}
	return nil
}

// ErrLimit: a per-user limit is reached.
var ErrLimit = errors.New("limit reached")

// DelayedEventsOf lists a user's scheduled events, soonest first.
func (db *DB) DelayedEventsOf(ctx context.Context, userID string) ([]DelayedEvent, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT `+delayedColumns+` FROM delayed_events WHERE user_id = $1 ORDER BY send_ts, delay_id`, userID)
	if err != nil {
		return nil, fmt.Errorf("listing delayed events: %w", err)
	}
	return scanDelayed(rows)
}

// DueDelayedEvents lists up to limit events due at now, soonest first.
func (db *DB) DueDelayedEvents(ctx context.Context, now int64, limit int) ([]DelayedEvent, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT `+delayedColumns+` FROM delayed_events WHERE send_ts <= $1 ORDER BY send_ts LIMIT $2`, now, limit)
	if err != nil {
		return nil, fmt.Errorf("listing due delayed events: %w", err)
	}
	return scanDelayed(rows)
}

// NextDelayedSendTS is when the next scheduled event is due (ok false: none).
func (db *DB) NextDelayedSendTS(ctx context.Context) (ts int64, ok bool, err error) {
	var next sql.NullInt64
	if err := db.q().QueryRowContext(ctx, `SELECT MIN(send_ts) FROM delayed_events`).Scan(&next); err != nil {
		return 0, false, fmt.Errorf("reading next delayed event: %w", err)
	}
	return next.Int64, next.Valid, nil
}

// DelayedEvent reads one of a user's scheduled events (ErrNotFound).
func (tx *Tx) DelayedEvent(ctx context.Context, userID, delayID string) (*DelayedEvent, error) {
	rows, err := tx.q().QueryContext(ctx, `SELECT `+delayedColumns+` FROM delayed_events WHERE delay_id = $1 AND user_id = $2`, delayID, userID)
	if err != nil {
		return nil, fmt.Errorf("reading delayed event: %w", err)
	}
	out, err := scanDelayed(rows)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, ErrNotFound
	}
	return &out[0], nil
}

// RestartDelayedEvent starts a scheduled event's delay over from now.
func (tx *Tx) RestartDelayedEvent(ctx context.Context, userID, delayID string, now int64) error {
	res, err := tx.exec(ctx, `UPDATE delayed_events SET running_since = $3, send_ts = $3 + delay_ms WHERE delay_id = $1 AND user_id = $2`,
		delayID, userID, now)
	if err != nil {
		return fmt.Errorf("restarting delayed event: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// DeleteDelayedEvent removes a scheduled event (sent or cancelled).
func (tx *Tx) DeleteDelayedEvent(ctx context.Context, delayID string) error {
	if _, err := tx.exec(ctx, `DELETE FROM delayed_events WHERE delay_id = $1`, delayID); err != nil {
		return fmt.Errorf("deleting delayed event: %w", err)
	}
	return nil
}

var cancelDelayedStateQuery = `DELETE FROM delayed_events
	WHERE room_id = $1 AND type = ` + noReprepare(2) + ` AND state_key = $3 AND user_id != $4`

// CancelDelayedStateEvents drops the scheduled state events for a room's
// state key made by anyone but except: someone else changed that state.
func (tx *Tx) CancelDelayedStateEvents(ctx context.Context, roomID, typ, stateKey, except string) error {
	_, err := tx.exec(ctx, cancelDelayedStateQuery, roomID, typ, stateKey, except)
	if err != nil {
		return fmt.Errorf("cancelling delayed state events: %w", err)
	}
	return nil
}
