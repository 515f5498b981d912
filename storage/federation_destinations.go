package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// What the outbound federation sender records of each destination for
// admins (Synapse's federation admin API): its failures and retry timing,
// and the rooms whose events it took.

// RecordFederationFailure records a failed attempt at nowMS: the
// destination's consecutive failures, when to try again, and the timing
// the admin API shows (the start of the failure run is kept).
func (tx *Tx) RecordFederationFailure(ctx context.Context, destination string, failures int, nowMS, retryAtMS int64) error {
	_, err := tx.exec(ctx, `INSERT INTO federation_destinations (destination, failures, retry_at, failure_ts, retry_last_ts, retry_interval)
		VALUES ($1, $2, $3, $4, $4, $5)
		ON CONFLICT (destination) DO UPDATE SET failures = excluded.failures, retry_at = excluded.retry_at,
			failure_ts = COALESCE(federation_destinations.failure_ts, excluded.failure_ts),
			retry_last_ts = excluded.retry_last_ts, retry_interval = excluded.retry_interval`,
		destination, failures, retryAtMS, nowMS, max(retryAtMS-nowMS, 0))
	if err != nil {
		return fmt.Errorf("recording a failure of %s: %w", destination, err)
	}
	return nil
}

// RecordFederationDelivered records that a destination took a
// transaction: for each room of its events, the stream position of the
// newest, and the newest overall. Call it before FinishFederationTxn
// removes the transaction's rows.
func (tx *Tx) RecordFederationDelivered(ctx context.Context, destination, txnID string) error {
	_, err := tx.exec(ctx, `INSERT INTO federation_destination_rooms (destination, room_nid, stream_pos)
		SELECT q.destination, e.room_nid, MAX(e.stream_pos) FROM federation_queue q JOIN events e ON e.event_nid = q.event_nid
		WHERE q.destination = $1 AND q.txn_id = $2 AND q.kind = 0 AND e.stream_pos > 0
		GROUP BY q.destination, e.room_nid
		ON CONFLICT (destination, room_nid) DO UPDATE SET
			stream_pos = `+greatest("federation_destination_rooms.stream_pos", "excluded.stream_pos"), destination, txnID)
	if err != nil {
		return fmt.Errorf("recording the rooms sent to %s: %w", destination, err)
	}
	_, err = tx.exec(ctx, `UPDATE federation_destinations SET last_success_pos = (
			SELECT `+greatest("COALESCE(federation_destinations.last_success_pos, 0)", "MAX(e.stream_pos)")+`
			FROM federation_queue q JOIN events e ON e.event_nid = q.event_nid
			WHERE q.destination = $1 AND q.txn_id = $2 AND q.kind = 0 AND e.stream_pos > 0)
		WHERE destination = $1 AND EXISTS (SELECT 1 FROM federation_queue q JOIN events e ON e.event_nid = q.event_nid
			WHERE q.destination = $1 AND q.txn_id = $2 AND q.kind = 0 AND e.stream_pos > 0)`, destination, txnID)
	if err != nil {
		return fmt.Errorf("recording the last event sent to %s: %w", destination, err)
	}
	return nil
}

// DestinationStatus is what the admin API shows of a destination: times
// in ms; FailureTS and LastSuccessPos are nil when unset.
type DestinationStatus struct {
	Destination    string
	RetryLastTS    int64
	RetryInterval  int64
	FailureTS      *int64
	LastSuccessPos *int64
}

// Orders of FederationDestinations (Synapse's order_by values).
var destinationOrders = map[string]string{
	"destination":                     "destination",
	"retry_last_ts":                   "retry_last_ts",
	"retry_interval":                  "retry_interval",
	"failure_ts":                      "failure_ts",
	"last_successful_stream_ordering": "last_success_pos",
}

// ValidDestinationOrder reports whether orderBy is an order
// FederationDestinations knows.
func ValidDestinationOrder(orderBy string) bool {
	_, ok := destinationOrders[orderBy]
	return ok
}

// DestinationQuery pages through the known destinations: those whose name
// contains Search (case-insensitive; "" for all), sorted by OrderBy (a
// Synapse order_by value, default destination; ties by name), backwards
// when Backwards.
type DestinationQuery struct {
	Search      string
	OrderBy     string
	Backwards   bool
	From, Limit int
}

const destinationColumns = `destination, retry_last_ts, retry_interval, failure_ts, last_success_pos`

// FederationDestinations lists a page of the destinations this server has
// sent to, and how many match in all.
func (db *DB) FederationDestinations(ctx context.Context, q DestinationQuery) ([]DestinationStatus, int, error) {
	col, ok := destinationOrders[q.OrderBy]
	if q.OrderBy == "" {
		col, ok = "destination", true
	}
	if !ok {
		return nil, 0, fmt.Errorf("unknown destination order %q", q.OrderBy)
	}
	dir := "ASC"
	if q.Backwards {
		dir = "DESC"
	}
	where, args := "", []any{}
	if q.Search != "" {
		// Not LIKE: the search text is matched literally.
		where = `WHERE ` + containsText("LOWER(destination)", "$1")
		args = append(args, strings.ToLower(q.Search))
	}
	var total int
	if err := db.q().QueryRowContext(ctx, `SELECT COUNT(*) FROM federation_destinations `+where, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("counting destinations: %w", err)
	}
	n := len(args)
	rows, err := db.q().QueryContext(ctx, fmt.Sprintf(`SELECT %s FROM federation_destinations %s
		ORDER BY %s %s, destination ASC LIMIT $%d OFFSET $%d`, destinationColumns, where, col, dir, n+1, n+2),
		append(args, q.Limit, q.From)...)
	if err != nil {
		return nil, 0, fmt.Errorf("listing destinations: %w", err)
	}
	defer rows.Close()
	var out []DestinationStatus
	for rows.Next() {
		d, err := scanDestination(rows)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, d)
	}
	return out, total, rows.Err()
}

// FederationDestinationStatus reads one destination (found is false when
// this server never sent it anything).
func (db *DB) FederationDestinationStatus(ctx context.Context, destination string) (d DestinationStatus, found bool, err error) {
	d, err = scanDestination(db.q().QueryRowContext(ctx, `SELECT `+destinationColumns+` FROM federation_destinations
		WHERE destination = $1`, destination))
	if errors.Is(err, sql.ErrNoRows) {
		return d, false, nil
	}
	if err != nil {
		return d, false, fmt.Errorf("reading destination %s: %w", destination, err)
	}
	return d, true, nil
}

func scanDestination(row interface{ Scan(...any) error }) (DestinationStatus, error) {
	var d DestinationStatus
	var failure, last sql.NullInt64
	if err := row.Scan(&d.Destination, &d.RetryLastTS, &d.RetryInterval, &failure, &last); err != nil {
		return d, err
	}
	if failure.Valid {
		d.FailureTS = &failure.Int64
	}
	if last.Valid {
		d.LastSuccessPos = &last.Int64
	}
	return d, nil
}

// DestinationRoom is a room whose events went to a destination, with the
// stream position of the newest it took.
type DestinationRoom struct {
	RoomID    string
	StreamPos int64
}

// FederationDestinationRooms lists a page of a destination's rooms by room
// ID (backwards when asked), and how many there are.
func (db *DB) FederationDestinationRooms(ctx context.Context, destination string, from, limit int, backwards bool) ([]DestinationRoom, int, error) {
	var total int
	if err := db.q().QueryRowContext(ctx, `SELECT COUNT(*) FROM federation_destination_rooms WHERE destination = $1`,
		destination).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("counting the rooms of %s: %w", destination, err)
	}
	dir := "ASC"
	if backwards {
		dir = "DESC"
	}
	rows, err := db.q().QueryContext(ctx, `SELECT r.room_id, d.stream_pos FROM federation_destination_rooms d
		JOIN rooms r ON r.room_nid = d.room_nid WHERE d.destination = $1
		ORDER BY r.room_id `+dir+` LIMIT $2 OFFSET $3`, destination, limit, from)
	if err != nil {
		return nil, 0, fmt.Errorf("listing the rooms of %s: %w", destination, err)
	}
	defer rows.Close()
	out := []DestinationRoom{}
	for rows.Next() {
		var r DestinationRoom
		if err := rows.Scan(&r.RoomID, &r.StreamPos); err != nil {
			return nil, 0, err
		}
		out = append(out, r)
	}
	return out, total, rows.Err()
}
