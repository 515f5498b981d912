package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The outbound federation queue (federationapi/sender): per destination,
// the PDUs and EDUs it has yet to receive, its backoff and the transaction
// in flight; and the cursor of the stream reader that queues local events.

// Kinds of federation_queue rows.
const (
	queuedPDU = 0
	queuedEDU = 1
)

// StreamEventMeta is what the federation sender needs of a timeline event
// to decide where it goes (no JSON).
type StreamEventMeta struct {
	NID, StreamPos, RoomNID int64
	Type                    string
	StateKey                *string
	Sender                  string
	// StateBefore is the snapshot of the room state before the event.
	StateBefore int64
}

// FederationCursor is the stream position up to which local events have
// been queued for other servers.
func (db *DB) FederationCursor(ctx context.Context) (int64, error) {
	var pos int64
	err := db.q().QueryRowContext(ctx, `SELECT pos FROM federation_cursor WHERE id = 1`).Scan(&pos)
	if err != nil {
		return 0, fmt.Errorf("reading the federation cursor: %w", err)
	}
	return pos, nil
}

// SetFederationCursor records that local events up to pos were queued
// (never moving it back).
func (tx *Tx) SetFederationCursor(ctx context.Context, pos int64) error {
	if _, err := tx.exec(ctx, `UPDATE federation_cursor SET pos = `+greatest("pos", "$1")+` WHERE id = 1`, pos); err != nil {
		return fmt.Errorf("saving the federation cursor: %w", err)
	}
	return nil
}

// StreamEventsAfter lists the accepted timeline events with a stream
// position in (after, upTo], in stream order, at most limit; events another
// server distributes (NewEvent.SentByResident) are left out.
func (db *DB) StreamEventsAfter(ctx context.Context, after, upTo int64, limit int) ([]StreamEventMeta, error) {
	return db.streamEvents(ctx, after, upTo, limit, true)
}

// streamEvents lists the accepted timeline events with a stream position in
// (after, upTo], in stream order, at most limit; ownOnly leaves out the
// events another server distributes.
func (db *DB) streamEvents(ctx context.Context, after, upTo int64, limit int, ownOnly bool) ([]StreamEventMeta, error) {
	filter := ""
	if ownOnly {
		filter = ` AND sent_by_resident = 0`
	}
	rows, err := db.q().QueryContext(ctx, `SELECT event_nid, stream_pos, room_nid, type, state_key, sender, state_before FROM events
		WHERE stream_pos > $1 AND stream_pos <= $2 AND status = 0`+filter+` ORDER BY stream_pos LIMIT $3`, after, upTo, limit)
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

// JoinedServersInSnapshot lists the servers (user ID domains) with a joined
// member in a state snapshot, sorted.
func (db *DB) JoinedServersInSnapshot(ctx context.Context, snapshotNID int64) ([]string, error) {
	if snapshotNID == 0 {
		return nil, nil
	}
	// The entry nearest the snapshot along its delta chain is the member's
	// membership there.
	servers, err := queryStrings(ctx, db.q(), snapshotChainCTE+`,
		members AS (SELECT e.state_key, e.event_nid, ROW_NUMBER() OVER (PARTITION BY e.state_key ORDER BY c.lvl) AS rn
			FROM chain c JOIN state_entries e ON e.snapshot_nid = c.nid AND e.type = 'm.room.member')
		SELECT DISTINCT `+userIDServer("m.state_key")+` AS server FROM members m
			JOIN events ev ON ev.event_nid = m.event_nid
		WHERE m.rn = 1 AND ev.state_value = 'join' AND m.state_key LIKE '%:%' ORDER BY server`, snapshotNID)
	if err != nil {
		return nil, fmt.Errorf("listing the servers in snapshot %d: %w", snapshotNID, err)
	}
	return servers, nil
}

// QueuedPDU is an event queued for a destination.
type QueuedPDU struct {
	Destination string
	EventNID    int64
	RoomNID     int64
}

// QueueFederationPDUs appends events to their destinations' queues.
func (tx *Tx) QueueFederationPDUs(ctx context.Context, pdus []QueuedPDU) error {
	for _, p := range pdus {
		if _, err := tx.exec(ctx, `INSERT INTO federation_queue (destination, kind, event_nid, room_nid) VALUES ($1, 0, $2, $3)`,
			p.Destination, p.EventNID, p.RoomNID); err != nil {
			return fmt.Errorf("queueing event %d for %s: %w", p.EventNID, p.Destination, err)
		}
	}
	return nil
}

// QueuedEDU is an EDU queued for a destination. Key, when not empty, makes
// it replace the queued EDU of the same type and key not yet in a
// transaction (a newer typing notification replaces an older one).
type QueuedEDU struct {
	Destination string
	Type        string
	Key         string
	Content     []byte
}

// QueueFederationEDU appends an EDU to its destination's queue.
func (tx *Tx) QueueFederationEDU(ctx context.Context, e QueuedEDU) error {
	e.Key = tx.opaqueText(e.Key)
	if e.Key != "" {
		if _, err := tx.exec(ctx, `DELETE FROM federation_queue WHERE destination = $1 AND edu_type = $2 AND edu_key = $3
			AND txn_id IS NULL`, e.Destination, e.Type, e.Key); err != nil {
			return fmt.Errorf("replacing a queued %s for %s: %w", e.Type, e.Destination, err)
		}
	}
	if _, err := tx.exec(ctx, `INSERT INTO federation_queue (destination, kind, edu_type, edu_key, edu_content)
		VALUES ($1, 1, $2, NULLIF($3, ''), $4)`, e.Destination, e.Type, e.Key, string(e.Content)); err != nil {
		return fmt.Errorf("queueing a %s for %s: %w", e.Type, e.Destination, err)
	}
	return nil
}

// opaqueText is a key that is only ever compared, as a text column holds
// it: PostgreSQL's text cannot hold NUL, which keys use as a separator,
// so there it is escaped (one-to-one: \ becomes \\, NUL becomes \0).
func (tx *Tx) opaqueText(key string) string {
	if tx.dialect != dialectPostgres || !strings.ContainsAny(key, "\\\x00") {
		return key
	}
	return strings.NewReplacer(`\`, `\\`, "\x00", `\0`).Replace(key)
}

// FederationDestinationsPending lists the destinations with queued rows.
func (db *DB) FederationDestinationsPending(ctx context.Context) ([]string, error) {
	out, err := queryStrings(ctx, db.q(), `SELECT DISTINCT destination FROM federation_queue ORDER BY destination`)
	if err != nil {
		return nil, fmt.Errorf("listing federation destinations with queued work: %w", err)
	}
	return out, nil
}

// DestinationState is a destination's backoff and transaction in flight.
type DestinationState struct {
	// Failures is the number of consecutive failed attempts; RetryAt (ms)
	// is when the next may start.
	Failures int
	RetryAt  int64
	// TxnID is the transaction in flight ("" for none): its rows are sent
	// again, under this ID, until the destination answers.
	TxnID string
}

// FederationDestination reads a destination's state (zero when it has
// none yet).
func (db *DB) FederationDestination(ctx context.Context, destination string) (DestinationState, error) {
	var st DestinationState
	err := db.q().QueryRowContext(ctx, `SELECT failures, retry_at, txn_id FROM federation_destinations WHERE destination = $1`,
		destination).Scan(&st.Failures, &st.RetryAt, &st.TxnID)
	if errors.Is(err, sql.ErrNoRows) {
		return DestinationState{}, nil
	}
	if err != nil {
		return st, fmt.Errorf("reading federation destination %s: %w", destination, err)
	}
	return st, nil
}

// SetFederationBackoff records a destination's consecutive failures and
// when to try it again (0, 0 resets its backoff, and the failure times the
// admin API shows; RecordFederationFailure records a failure with them).
func (tx *Tx) SetFederationBackoff(ctx context.Context, destination string, failures int, retryAt int64) error {
	_, err := tx.exec(ctx, `INSERT INTO federation_destinations (destination, failures, retry_at) VALUES ($1, $2, $3)
		ON CONFLICT (destination) DO UPDATE SET failures = excluded.failures, retry_at = excluded.retry_at,
			failure_ts = CASE WHEN excluded.failures = 0 THEN NULL ELSE federation_destinations.failure_ts END,
			retry_last_ts = CASE WHEN excluded.failures = 0 THEN 0 ELSE federation_destinations.retry_last_ts END,
			retry_interval = CASE WHEN excluded.failures = 0 THEN 0 ELSE federation_destinations.retry_interval END`,
		destination, failures, retryAt)
	if err != nil {
		return fmt.Errorf("saving the backoff of %s: %w", destination, err)
	}
	return nil
}

// StartFederationTxn puts the destination's oldest queued rows not yet in
// a transaction (up to maxPDUs PDUs and maxEDUs EDUs) into a new
// transaction and returns its ID, "" when nothing is queued. IDs are
// decimal numbers, at least minID and greater than any used before for the
// destination (callers pass the time in ms, so IDs stay unique even if the
// database is restored from an older copy).
func (tx *Tx) StartFederationTxn(ctx context.Context, destination string, maxPDUs, maxEDUs int, minID int64) (string, error) {
	var last int64
	err := tx.q().QueryRowContext(ctx, `SELECT last_txn FROM federation_destinations WHERE destination = $1`, destination).Scan(&last)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("reading the last transaction of %s: %w", destination, err)
	}
	id := max(minID, last+1)
	txnID := strconv.FormatInt(id, 10)
	res, err := tx.exec(ctx, `UPDATE federation_queue SET txn_id = $2 WHERE queue_nid IN (
			SELECT queue_nid FROM federation_queue WHERE destination = $1 AND kind = 0 AND txn_id IS NULL ORDER BY queue_nid LIMIT $3)
		OR queue_nid IN (
			SELECT queue_nid FROM federation_queue WHERE destination = $1 AND kind = 1 AND txn_id IS NULL ORDER BY queue_nid LIMIT $4)`,
		destination, txnID, maxPDUs, maxEDUs)
	if err != nil {
		return "", fmt.Errorf("starting a transaction to %s: %w", destination, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return "", nil
	}
	_, err = tx.exec(ctx, `INSERT INTO federation_destinations (destination, txn_id, last_txn) VALUES ($1, $2, $3)
		ON CONFLICT (destination) DO UPDATE SET txn_id = excluded.txn_id, last_txn = excluded.last_txn`, destination, txnID, id)
	if err != nil {
		return "", fmt.Errorf("recording the transaction to %s: %w", destination, err)
	}
	return txnID, nil
}

// FederationItem is one row of a transaction: a PDU (EventID and JSON,
// both empty when the event no longer exists) or an EDU.
type FederationItem struct {
	QueueNID   int64
	IsEDU      bool
	EventID    string
	JSON       []byte
	EDUType    string
	EDUContent []byte
}

// FederationTxnItems reads the rows of a destination's transaction in
// queueing order.
func (db *DB) FederationTxnItems(ctx context.Context, destination, txnID string) ([]FederationItem, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT q.queue_nid, q.kind, COALESCE(e.event_id, ''), COALESCE(e.json, ''),
			COALESCE(q.edu_type, ''), COALESCE(q.edu_content, '')
		FROM federation_queue q LEFT JOIN events e ON e.event_nid = q.event_nid
		WHERE q.destination = $1 AND q.txn_id = $2 ORDER BY q.queue_nid`, destination, txnID)
	if err != nil {
		return nil, fmt.Errorf("reading transaction %s to %s: %w", txnID, destination, err)
	}
	defer rows.Close()
	var out []FederationItem
	for rows.Next() {
		var it FederationItem
		var kind int
		var js, content string
		if err := rows.Scan(&it.QueueNID, &kind, &it.EventID, &js, &it.EDUType, &content); err != nil {
			return nil, err
		}
		it.IsEDU = kind == queuedEDU
		if js != "" {
			it.JSON = []byte(js)
		}
		if content != "" {
			it.EDUContent = []byte(content)
		}
		out = append(out, it)
	}
	return out, rows.Err()
}

// FinishFederationTxn removes a transaction's rows once the destination
// answered it, and resets the destination's backoff (it is up).
func (tx *Tx) FinishFederationTxn(ctx context.Context, destination, txnID string) error {
	if _, err := tx.exec(ctx, `DELETE FROM federation_queue WHERE destination = $1 AND txn_id = $2`, destination, txnID); err != nil {
		return fmt.Errorf("removing transaction %s to %s: %w", txnID, destination, err)
	}
	_, err := tx.exec(ctx, `UPDATE federation_destinations SET txn_id = '', failures = 0, retry_at = 0,
		failure_ts = NULL, retry_last_ts = 0, retry_interval = 0 WHERE destination = $1`, destination)
	if err != nil {
		return fmt.Errorf("finishing transaction %s to %s: %w", txnID, destination, err)
	}
	return nil
}

// DropFederationTxn removes a transaction that has nothing left to send
// (catch-up dropped its events, or they were purged) without touching the
// destination's backoff: it was never answered.
func (tx *Tx) DropFederationTxn(ctx context.Context, destination, txnID string) error {
	if _, err := tx.exec(ctx, `DELETE FROM federation_queue WHERE destination = $1 AND txn_id = $2`, destination, txnID); err != nil {
		return fmt.Errorf("dropping transaction %s to %s: %w", txnID, destination, err)
	}
	_, err := tx.exec(ctx, `UPDATE federation_destinations SET txn_id = '' WHERE destination = $1 AND txn_id = $2`, destination, txnID)
	if err != nil {
		return fmt.Errorf("dropping transaction %s to %s: %w", txnID, destination, err)
	}
	return nil
}

// FederationQueueCounts counts a destination's queued PDUs and EDUs, those
// in the transaction in flight included.
func (db *DB) FederationQueueCounts(ctx context.Context, destination string) (pdus, edus int, err error) {
	err = db.q().QueryRowContext(ctx, `SELECT COUNT(*) FILTER (WHERE kind = 0), COUNT(*) FILTER (WHERE kind = 1) FROM federation_queue
		WHERE destination = $1`, destination).Scan(&pdus, &edus)
	if err != nil {
		err = fmt.Errorf("counting the queue of %s: %w", destination, err)
	}
	return pdus, edus, err
}

// QueuedFederationPDUs counts a destination's queued PDUs not yet in a
// transaction.
func (db *DB) QueuedFederationPDUs(ctx context.Context, destination string) (int, error) {
	var n int
	err := db.q().QueryRowContext(ctx, `SELECT COUNT(*) FROM federation_queue WHERE destination = $1 AND kind = 0 AND txn_id IS NULL`,
		destination).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting the queued events of %s: %w", destination, err)
	}
	return n, nil
}

// CollapseFederationQueue shrinks the queue of a destination that missed
// events: of its PDUs, those of the transaction in flight included, it
// keeps the newest keepPerRoom of each room (the destination fetches the
// rest from us, as it would any gap), and it drops the queued EDUs of the
// given types that are not in a transaction. The transaction in flight
// keeps its ID and its other rows: a destination that took it before
// answers it as it did then. It returns how many rows it removed.
func (tx *Tx) CollapseFederationQueue(ctx context.Context, destination string, keepPerRoom int, dropEDUTypes []string) (int64, error) {
	res, err := tx.exec(ctx, `DELETE FROM federation_queue WHERE queue_nid IN (
			SELECT queue_nid FROM (
				SELECT queue_nid, ROW_NUMBER() OVER (PARTITION BY room_nid ORDER BY queue_nid DESC) AS rn
				FROM federation_queue WHERE destination = $1 AND kind = 0) AS ranked
			WHERE rn > $2)`, destination, keepPerRoom)
	if err != nil {
		return 0, fmt.Errorf("collapsing the queued events of %s: %w", destination, err)
	}
	removed, _ := res.RowsAffected()
	if len(dropEDUTypes) == 0 {
		return removed, nil
	}
	args := []any{destination}
	marks := make([]string, len(dropEDUTypes))
	for i, t := range dropEDUTypes {
		args = append(args, t)
		marks[i] = fmt.Sprintf("$%d", i+2)
	}
	res, err = tx.exec(ctx, `DELETE FROM federation_queue WHERE destination = $1 AND kind = 1 AND txn_id IS NULL
		AND edu_type IN (`+strings.Join(marks, ", ")+`)`, args...)
	if err != nil {
		return removed, fmt.Errorf("dropping the stale EDUs of %s: %w", destination, err)
	}
	n, _ := res.RowsAffected()
	return removed + n, nil
}
