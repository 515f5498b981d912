package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Account flags an admin sets (migration 0100).
const (
	FlagShadowBanned = "shadow_banned"
	FlagLocked       = "locked"
	FlagSuspended    = "suspended"
)

// SetAccountFlag turns an admin flag of an account on or off; ErrNotFound
// for an unknown account.
func (tx *Tx) SetAccountFlag(ctx context.Context, userID, flag string, on bool) error {
	switch flag {
	case FlagShadowBanned, FlagLocked, FlagSuspended:
	default:
		return fmt.Errorf("unknown account flag %q", flag)
	}
	res, err := tx.exec(ctx, `UPDATE accounts SET `+flag+` = $2 WHERE user_id = $1`, userID, boolInt(on))
	if err != nil {
		return fmt.Errorf("setting %s: %w", flag, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// RatelimitOverride is a user's own message rate limit (0, 0: none).
type RatelimitOverride struct {
	MessagesPerSecond int64
	BurstCount        int64
}

// RatelimitOverride returns a user's override; ErrNotFound when none.
func (db *DB) RatelimitOverride(ctx context.Context, userID string) (RatelimitOverride, error) {
	var o RatelimitOverride
	err := db.q().QueryRowContext(ctx, `SELECT messages_per_second, burst_count FROM ratelimit_overrides WHERE user_id = $1`, userID).
		Scan(&o.MessagesPerSecond, &o.BurstCount)
	if errors.Is(err, sql.ErrNoRows) {
		return o, ErrNotFound
	}
	if err != nil {
		return o, fmt.Errorf("reading a ratelimit override: %w", err)
	}
	return o, nil
}

// SetRatelimitOverride sets (nil: deletes) a user's override.
func (tx *Tx) SetRatelimitOverride(ctx context.Context, userID string, o *RatelimitOverride) error {
	var err error
	if o == nil {
		_, err = tx.exec(ctx, `DELETE FROM ratelimit_overrides WHERE user_id = $1`, userID)
	} else {
		_, err = tx.exec(ctx, `INSERT INTO ratelimit_overrides (user_id, messages_per_second, burst_count) VALUES ($1, $2, $3)
			ON CONFLICT (user_id) DO UPDATE SET messages_per_second = excluded.messages_per_second, burst_count = excluded.burst_count`,
			userID, o.MessagesPerSecond, o.BurstCount)
	}
	if err != nil {
		return fmt.Errorf("setting a ratelimit override: %w", err)
	}
	return nil
}

// AllAccountData lists every account data entry of a user.
func (db *DB) AllAccountData(ctx context.Context, userID string) ([]AccountData, error) {
	return scanAccountData(db.q().QueryContext(ctx, `SELECT room_id, type, content, stream_pos FROM account_data
		WHERE user_id = $1 ORDER BY room_id, type`, userID))
}

// ReportsOfKind lists every report of a kind, oldest first.
func (db *DB) ReportsOfKind(ctx context.Context, kind string) ([]Report, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT report_id, kind, reporter, room_id, event_id, user_id, reason, score, ts
		FROM content_reports WHERE kind = $1 ORDER BY report_id`, kind)
	if err != nil {
		return nil, fmt.Errorf("listing reports: %w", err)
	}
	defer rows.Close()
	var out []Report
	for rows.Next() {
		r, err := scanReport(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *r)
	}
	return out, rows.Err()
}

// ReportByID returns one report; ErrNotFound when there is none.
func (db *DB) ReportByID(ctx context.Context, id int64) (*Report, error) {
	r, err := scanReport(db.q().QueryRowContext(ctx, `SELECT report_id, kind, reporter, room_id, event_id, user_id, reason, score, ts
		FROM content_reports WHERE report_id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return r, err
}

// DeleteReport deletes one report; ErrNotFound when there is none.
func (tx *Tx) DeleteReport(ctx context.Context, id int64, kind string) error {
	res, err := tx.exec(ctx, `DELETE FROM content_reports WHERE report_id = $1 AND kind = $2`, id, kind)
	if err != nil {
		return fmt.Errorf("deleting a report: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

func scanReport(row interface{ Scan(...any) error }) (*Report, error) {
	var r Report
	var score sql.NullInt64
	if err := row.Scan(&r.ID, &r.Kind, &r.Reporter, &r.RoomID, &r.EventID, &r.UserID, &r.Reason, &score, &r.TS); err != nil {
		return nil, err
	}
	if score.Valid {
		r.Score = &score.Int64
	}
	return &r, nil
}

// UserEventsSelection picks a user's events to redact in a room: sent at
// or after AfterTS and at or before BeforeTS (0: unbounded), the newest
// Limit of them.
type UserEventsSelection struct {
	Sender            string
	AfterTS, BeforeTS int64
	Limit             int
}

// UserEventsToRedact lists the IDs of a user's timeline events in a room
// that a redaction would change: not state, not redactions, not redacted
// already; newest first.
func (db *DB) UserEventsToRedact(ctx context.Context, roomNID int64, sel UserEventsSelection) ([]string, error) {
	before := sel.BeforeTS
	if before == 0 {
		before = 1 << 62
	}
	rows, err := db.q().QueryContext(ctx, `SELECT event_id FROM events
		WHERE room_nid = $1 AND sender = $2 AND stream_pos IS NOT NULL AND status = 0 AND state_key IS NULL
			AND type != 'm.room.redaction' AND redacted_by IS NULL AND origin_server_ts >= $3 AND origin_server_ts <= $4
		ORDER BY stream_pos DESC LIMIT $5`, roomNID, sel.Sender, sel.AfterTS, before, sel.Limit)
	if err != nil {
		return nil, fmt.Errorf("listing events to redact: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}
