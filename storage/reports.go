package storage

import (
	"context"
	"database/sql"
	"fmt"
)

// Report kinds.
const (
	ReportEvent = "event"
	ReportRoom  = "room"
	ReportUser  = "user"
)

// Report is one content report. Score is nil when the reporter gave none.
type Report struct {
	ID       int64
	Kind     string
	Reporter string
	RoomID   string
	EventID  string
	UserID   string // the reported user, or the sender of the reported event
	Reason   string
	Score    *int64
	TS       int64
}

// InsertReport stores a content report and returns its ID.
func (tx *Tx) InsertReport(ctx context.Context, r Report) (int64, error) {
	var score any
	if r.Score != nil {
		score = *r.Score
	}
	var id int64
	err := tx.q().QueryRowContext(ctx, `INSERT INTO content_reports (kind, reporter, room_id, event_id, user_id, reason, score, ts)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING report_id`,
		r.Kind, r.Reporter, r.RoomID, r.EventID, r.UserID, r.Reason, score, r.TS).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("saving report: %w", err)
	}
	return id, nil
}

// Reports lists up to limit reports with an ID below before (0: from the
// newest), newest first.
func (db *DB) Reports(ctx context.Context, before int64, limit int) ([]Report, error) {
	if before <= 0 {
		before = 1 << 62
	}
	rows, err := db.q().QueryContext(ctx, `SELECT report_id, kind, reporter, room_id, event_id, user_id, reason, score, ts
		FROM content_reports WHERE report_id < $1 ORDER BY report_id DESC LIMIT $2`, before, limit)
	if err != nil {
		return nil, fmt.Errorf("listing reports: %w", err)
	}
	defer rows.Close()
	var out []Report
	for rows.Next() {
		var r Report
		var score sql.NullInt64
		if err := rows.Scan(&r.ID, &r.Kind, &r.Reporter, &r.RoomID, &r.EventID, &r.UserID, &r.Reason, &score, &r.TS); err != nil {
			return nil, fmt.Errorf("reading report: %w", err)
		}
		if score.Valid {
			r.Score = &score.Int64
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
