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

// QueueAppService appends ephemeral data for an appservice, replacing
// what was queued under the same key (typing of a room, presence of a
// user: only the latest matters).
func (tx *Tx) QueueAppService(ctx context.Context, asID, kind, key string, content []byte) error {
	if _, err := tx.exec(ctx, `DELETE FROM appservice_queue WHERE as_id = $1 AND ekey = $2`, asID, key); err != nil {
		return fmt.Errorf("replacing %s for appservice %s: %w", kind, asID, err)
	}
	if _, err := tx.exec(ctx, `INSERT INTO appservice_queue (as_id, kind, ekey, content) VALUES ($1, $2, $3, $4)`,
		asID, kind, key, string(content)); err != nil {
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
	// ToDeviceUsers are the users whose to-device messages up to Pos the
	// transaction carries: they are dropped from the devices' queues.
	ToDeviceUsers []string
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
	if err := tx.DeleteAppServiceToDevice(ctx, t.ToDeviceUsers, t.Pos); err != nil {
		return 0, err
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
	return db.streamEvents(ctx, after, upTo, limit, false)
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

// AppServiceEphemeral is what happened besides events in a window of the
// stream that appservices may receive.
type AppServiceEphemeral struct {
	Receipts    []AppServiceReceipt
	ToDevice    []AppServiceToDevice
	DeviceLists []DeviceListChange
	KeyCounts   []DeviceKeyCountChange
}

// AppServiceReceipt is a public read receipt.
type AppServiceReceipt struct {
	RoomNID                 int64
	UserID, EventID, Thread string
	TS                      int64
}

// AppServiceToDevice is a to-device message queued for a device.
type AppServiceToDevice struct {
	StreamPos                      int64
	UserID, DeviceID, Sender, Type string
	Content                        []byte
}

// DeviceListChange is a change of a user's device list; OnlyFor is "" when
// everyone sharing a room with the user is told, else the one user told.
type DeviceListChange struct{ UserID, OnlyFor string }

// DeviceKeyCountChange is a change of a device's one-time or fallback keys.
type DeviceKeyCountChange struct{ UserID, DeviceID string }

// AppServiceEphemeralRange reads the public receipts, to-device messages,
// device list and key count changes with a stream position in (from, to].
func (db *DB) AppServiceEphemeralRange(ctx context.Context, from, to int64) (AppServiceEphemeral, error) {
	var out AppServiceEphemeral
	if to <= from {
		return out, nil
	}
	rows, err := db.q().QueryContext(ctx, `SELECT room_nid, user_id, event_id, thread_id, ts FROM receipts
		WHERE stream_pos > $1 AND stream_pos <= $2 AND receipt_type = 'm.read' ORDER BY stream_pos`, from, to)
	if err != nil {
		return out, fmt.Errorf("reading receipts for appservices: %w", err)
	}
	for rows.Next() {
		var r AppServiceReceipt
		if err := rows.Scan(&r.RoomNID, &r.UserID, &r.EventID, &r.Thread, &r.TS); err != nil {
			rows.Close()
			return out, err
		}
		out.Receipts = append(out.Receipts, r)
	}
	rows.Close()
	rows, err = db.q().QueryContext(ctx, `SELECT stream_pos, user_id, device_id, sender, type, content FROM e2e_to_device
		WHERE stream_pos > $1 AND stream_pos <= $2 ORDER BY stream_pos, id`, from, to)
	if err != nil {
		return out, fmt.Errorf("reading to-device messages for appservices: %w", err)
	}
	for rows.Next() {
		var m AppServiceToDevice
		var content string
		if err := rows.Scan(&m.StreamPos, &m.UserID, &m.DeviceID, &m.Sender, &m.Type, &content); err != nil {
			rows.Close()
			return out, err
		}
		m.Content = []byte(content)
		out.ToDevice = append(out.ToDevice, m)
	}
	rows.Close()
	rows, err = db.q().QueryContext(ctx, `SELECT user_id, only_for FROM e2e_device_list_changes
		WHERE stream_pos > $1 AND stream_pos <= $2 ORDER BY stream_pos`, from, to)
	if err != nil {
		return out, fmt.Errorf("reading device list changes for appservices: %w", err)
	}
	for rows.Next() {
		var c DeviceListChange
		if err := rows.Scan(&c.UserID, &c.OnlyFor); err != nil {
			rows.Close()
			return out, err
		}
		out.DeviceLists = append(out.DeviceLists, c)
	}
	rows.Close()
	rows, err = db.q().QueryContext(ctx, `SELECT user_id, device_id FROM e2e_key_count_changes
		WHERE stream_pos > $1 AND stream_pos <= $2 ORDER BY stream_pos`, from, to)
	if err != nil {
		return out, fmt.Errorf("reading key count changes for appservices: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var c DeviceKeyCountChange
		if err := rows.Scan(&c.UserID, &c.DeviceID); err != nil {
			return out, err
		}
		out.KeyCounts = append(out.KeyCounts, c)
	}
	return out, rows.Err()
}

// JoinedMembersNow lists the users joined to a room now.
func (db *DB) JoinedMembersNow(ctx context.Context, roomNID int64) ([]string, error) {
	out, err := queryStrings(ctx, db.q(), `SELECT state_key FROM current_state
		WHERE room_nid = $1 AND type = 'm.room.member' AND membership = 'join'`, roomNID)
	if err != nil {
		return nil, fmt.Errorf("listing the members of room %d: %w", roomNID, err)
	}
	return out, nil
}

// DeleteAppServiceToDevice drops to-device messages delivered to an
// appservice: those of users in users up to pos.
func (tx *Tx) DeleteAppServiceToDevice(ctx context.Context, users []string, pos int64) error {
	for _, u := range users {
		if _, err := tx.exec(ctx, `DELETE FROM e2e_to_device WHERE user_id = $1 AND stream_pos <= $2`, u, pos); err != nil {
			return fmt.Errorf("dropping delivered to-device messages: %w", err)
		}
	}
	return nil
}
