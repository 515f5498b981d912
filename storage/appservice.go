package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// AppServiceState is how delivery to one appservice stands.
type AppServiceState struct {
	ASID string
	// Pos is the stream position up to which events were considered.
	Pos     int64
	LastTxn int64
	// TxnBody is the transaction in flight (ID LastTxn), nil for none.
	TxnBody       []byte
	TxnEvents     int
	TxnStartedTS  int64
	Failures      int
	LastSuccessTS int64
	LastFailureTS int64
	LastError     string
}

// EnsureAppService records an appservice that delivery starts for at pos,
// unless it is known already (then it continues where it was).
func (tx *Tx) EnsureAppService(ctx context.Context, asID string, pos int64) error {
	if _, err := tx.exec(ctx, `INSERT INTO appservice_state (as_id, pos) VALUES ($1, $2) ON CONFLICT (as_id) DO NOTHING`, asID, pos); err != nil {
		return fmt.Errorf("recording appservice %s: %w", asID, err)
	}
	return nil
}

const appServiceStateColumns = `as_id, pos, last_txn, txn_body, txn_events, txn_started_ts, failures, last_success_ts, last_failure_ts, last_error`

func scanAppServiceState(row interface{ Scan(...any) error }) (AppServiceState, error) {
	var s AppServiceState
	var body sql.NullString
	err := row.Scan(&s.ASID, &s.Pos, &s.LastTxn, &body, &s.TxnEvents, &s.TxnStartedTS, &s.Failures, &s.LastSuccessTS, &s.LastFailureTS, &s.LastError)
	if body.Valid {
		s.TxnBody = []byte(body.String)
	}
	return s, err
}

// AppServiceState reads the delivery state of an appservice.
func (db *DB) AppServiceState(ctx context.Context, asID string) (AppServiceState, error) {
	s, err := scanAppServiceState(db.q().QueryRowContext(ctx, `SELECT `+appServiceStateColumns+` FROM appservice_state WHERE as_id = $1`, asID))
	if errors.Is(err, sql.ErrNoRows) {
		return s, ErrNotFound
	}
	if err != nil {
		return s, fmt.Errorf("reading appservice %s: %w", asID, err)
	}
	return s, nil
}

// AppServiceStates reads the delivery state of every appservice known.
func (db *DB) AppServiceStates(ctx context.Context) ([]AppServiceState, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT `+appServiceStateColumns+` FROM appservice_state ORDER BY as_id`)
	if err != nil {
		return nil, fmt.Errorf("listing appservices: %w", err)
	}
	defer rows.Close()
	var out []AppServiceState
	for rows.Next() {
		s, err := scanAppServiceState(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// AppServiceQueued is an entry of an appservice's ephemeral queue.
type AppServiceQueued struct {
	NID     int64
	Kind    string
	Content []byte
}

// QueueAppService appends ephemeral data for an appservice.
func (tx *Tx) QueueAppService(ctx context.Context, asID, kind string, content []byte) error {
	if _, err := tx.exec(ctx, `INSERT INTO appservice_queue (as_id, kind, content) VALUES ($1, $2, $3)`, asID, kind, string(content)); err != nil {
		return fmt.Errorf("queueing %s for appservice %s: %w", kind, asID, err)
	}
	return nil
}

// AppServiceQueue reads up to limit of an appservice's queued entries, oldest first.
func (db *DB) AppServiceQueue(ctx context.Context, asID string, limit int) ([]AppServiceQueued, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT queue_nid, kind, content FROM appservice_queue WHERE as_id = $1 ORDER BY queue_nid LIMIT $2`, asID, limit)
	if err != nil {
		return nil, fmt.Errorf("reading the queue of appservice %s: %w", asID, err)
	}
	defer rows.Close()
	var out []AppServiceQueued
	for rows.Next() {
		var q AppServiceQueued
		var content string
		if err := rows.Scan(&q.NID, &q.Kind, &content); err != nil {
			return nil, err
		}
		q.Content = []byte(content)
		out = append(out, q)
	}
	return out, rows.Err()
}

// AppServiceTxn is a transaction being started: the events considered up
// to Pos, the queue entries up to QueuedUpTo taken into it.
type AppServiceTxn struct {
	ASID       string
	Pos        int64
	QueuedUpTo int64
	Body       []byte
	Events     int
	NowMS      int64
}

// StartAppServiceTxn records a new transaction in flight and returns its
// ID. It fails when one is already in flight (the caller's view is stale).
func (tx *Tx) StartAppServiceTxn(ctx context.Context, t AppServiceTxn) (int64, error) {
	var id int64
	err := tx.q().QueryRowContext(ctx, `UPDATE appservice_state SET pos = $2, last_txn = last_txn + 1, txn_body = $3,
		txn_events = $4, txn_started_ts = $5 WHERE as_id = $1 AND txn_body IS NULL RETURNING last_txn`,
		t.ASID, t.Pos, string(t.Body), t.Events, t.NowMS).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("starting a transaction for appservice %s: one is in flight", t.ASID)
	}
	if err != nil {
		return 0, fmt.Errorf("starting a transaction for appservice %s: %w", t.ASID, err)
	}
	if t.QueuedUpTo > 0 {
		if _, err := tx.exec(ctx, `DELETE FROM appservice_queue WHERE as_id = $1 AND queue_nid <= $2`, t.ASID, t.QueuedUpTo); err != nil {
			return 0, fmt.Errorf("taking queued entries of appservice %s: %w", t.ASID, err)
		}
	}
	return id, nil
}

// SetAppServicePos records that events up to pos were considered and none
// was for the appservice (only when no transaction is in flight).
func (tx *Tx) SetAppServicePos(ctx context.Context, asID string, pos int64) error {
	if _, err := tx.exec(ctx, `UPDATE appservice_state SET pos = $2 WHERE as_id = $1 AND pos < $2`, asID, pos); err != nil {
		return fmt.Errorf("saving the position of appservice %s: %w", asID, err)
	}
	return nil
}

// FinishAppServiceTxn records that the appservice took transaction txnID.
func (tx *Tx) FinishAppServiceTxn(ctx context.Context, asID string, txnID, nowMS int64) error {
	if _, err := tx.exec(ctx, `UPDATE appservice_state SET txn_body = NULL, txn_events = 0, txn_started_ts = 0, failures = 0,
		last_success_ts = $3, last_error = '' WHERE as_id = $1 AND last_txn = $2`, asID, txnID, nowMS); err != nil {
		return fmt.Errorf("finishing transaction %d of appservice %s: %w", txnID, asID, err)
	}
	return nil
}

// FailAppServiceTxn records a failed attempt to deliver the transaction in flight.
func (tx *Tx) FailAppServiceTxn(ctx context.Context, asID string, nowMS int64, reason string) error {
	if _, err := tx.exec(ctx, `UPDATE appservice_state SET failures = failures + 1, last_failure_ts = $2, last_error = $3 WHERE as_id = $1`,
		asID, nowMS, reason); err != nil {
		return fmt.Errorf("recording a failure of appservice %s: %w", asID, err)
	}
	return nil
}

// AppServiceStreamEvents lists the accepted timeline events (local and
// remote) with a stream position in (after, upTo], in stream order, at most limit.
func (db *DB) AppServiceStreamEvents(ctx context.Context, after, upTo int64, limit int) ([]StreamEventMeta, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT event_nid, stream_pos, room_nid, type, state_key, sender, state_before FROM events
		WHERE stream_pos > $1 AND stream_pos <= $2 AND status = 0 ORDER BY stream_pos LIMIT $3`, after, upTo, limit)
	if err != nil {
		return nil, fmt.Errorf("listing events after %d: %w", after, err)
	}
	defer rows.Close()
	var out []StreamEventMeta
	for rows.Next() {
		var e StreamEventMeta
		var sk sql.NullString
		if err := rows.Scan(&e.NID, &e.StreamPos, &e.RoomNID, &e.Type, &sk, &e.Sender, &e.StateBefore); err != nil {
			return nil, err
		}
		if sk.Valid {
			e.StateKey = &sk.String
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// RoomIDOfNID is the room ID of a room NID.
func (db *DB) RoomIDOfNID(ctx context.Context, roomNID int64) (string, error) {
	var id string
	err := db.q().QueryRowContext(ctx, `SELECT room_id FROM rooms WHERE room_nid = $1`, roomNID).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("reading room %d: %w", roomNID, err)
	}
	return id, nil
}
