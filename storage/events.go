package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// Event statuses.
const (
	EventAccepted   = 0
	EventOutlier    = 1
	EventRejected   = 2
	EventSoftFailed = 3
)

// Event is a stored event with what the APIs need around its JSON.
type Event struct {
	NID           int64
	EventID       string
	RoomNID       int64
	RoomID        string
	RoomVersion   string
	Type          string
	StateKey      *string
	Sender        string
	Depth         int64
	OriginTS      int64
	StreamPos     int64 // 0 when not in the timeline
	StateBefore   int64
	Status        int
	RelatesTo     string
	RelType       string
	RedactedBy    string
	SenderDevice  string
	TxnID         string
	UnsignedExtra []byte
	JSON          []byte
	// ViewerMembership is not stored: readers that checked the event's
	// visibility for a user set it to the user's membership at the event
	// (unsigned.membership, MSC4115).
	ViewerMembership string
}

// NewEvent is an event to store.
type NewEvent struct {
	RoomNID       int64
	EventID       string
	Type          string
	StateKey      *string
	Sender        string
	Depth         int64
	OriginTS      int64
	StateBefore   int64
	Status        int
	RelatesTo     string
	RelType       string
	SenderDevice  string
	TxnID         string
	UnsignedExtra []byte
	JSON          []byte
	PrevEvents    []string
	// Redacts is a redaction's target event ID.
	Redacts string
	// SentByResident marks a local user's join made through another
	// server's send_join: that server distributes it, the federation sender
	// does not (see StreamEventsAfter).
	SentByResident bool
}

// InsertEvent stores an event row at the timeline's end (accepted events
// get the next stream position) and nothing around it; the roomserver
// stores events with StoreEvent. Tests use it to build fixtures.
func (tx *Tx) InsertEvent(ctx context.Context, e NewEvent) (nid, pos int64, err error) {
	return tx.insertEvent(ctx, e, Timeline, 0)
}

func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}

// RedactEvent replaces an event's JSON with its redacted form.
func (tx *Tx) RedactEvent(ctx context.Context, eventNID int64, redactedBy string, redactedJSON []byte) error {
	_, err := tx.exec(ctx, `UPDATE events SET json = $2, redacted_by = $3 WHERE event_nid = $1`, eventNID, string(redactedJSON), redactedBy)
	if err != nil {
		return fmt.Errorf("redacting event: %w", err)
	}
	return nil
}

const eventColumns = `e.event_nid, e.event_id, e.room_nid, r.room_id, r.room_version, e.type, e.state_key, e.sender, e.depth,
	e.origin_server_ts, COALESCE(e.stream_pos, 0), e.state_before, e.status, COALESCE(e.relates_to, ''), COALESCE(e.rel_type, ''),
	COALESCE(e.redacted_by, ''), COALESCE(e.sender_device, ''), COALESCE(e.txn_id, ''), COALESCE(e.unsigned_extra, ''), e.json`

const eventFrom = ` FROM events e JOIN rooms r ON r.room_nid = e.room_nid `

func scanEvent(row interface{ Scan(...any) error }) (*Event, error) {
	return scanEventWith(row)
}

// scanEventWith scans leading columns into before, then the event columns.
func scanEventWith(row interface{ Scan(...any) error }, before ...any) (*Event, error) {
	var e Event
	var sk sql.NullString
	var extra, js string
	err := row.Scan(append(before, &e.NID, &e.EventID, &e.RoomNID, &e.RoomID, &e.RoomVersion, &e.Type, &sk, &e.Sender, &e.Depth,
		&e.OriginTS, &e.StreamPos, &e.StateBefore, &e.Status, &e.RelatesTo, &e.RelType,
		&e.RedactedBy, &e.SenderDevice, &e.TxnID, &extra, &js)...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading event: %w", err)
	}
	if sk.Valid {
		e.StateKey = &sk.String
	}
	if extra != "" {
		e.UnsignedExtra = []byte(extra)
	}
	e.JSON = []byte(js)
	return &e, nil
}

func scanEvents(rows *sql.Rows, err error) ([]Event, error) {
	if err != nil {
		return nil, fmt.Errorf("querying events: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *e)
	}
	return out, rows.Err()
}

// EventByID loads one event.
func (db *DB) EventByID(ctx context.Context, eventID string) (*Event, error) {
	return scanEvent(db.q().QueryRowContext(ctx, `SELECT `+eventColumns+eventFrom+`WHERE e.event_id = $1`, eventID))
}

// EventByID loads one event inside a write.
func (tx *Tx) EventByID(ctx context.Context, eventID string) (*Event, error) {
	return scanEvent(tx.q().QueryRowContext(ctx, `SELECT `+eventColumns+eventFrom+`WHERE e.event_id = $1`, eventID))
}

// EventsByNID loads events by NID, in NID order.
func (db *DB) EventsByNID(ctx context.Context, nids []int64) ([]Event, error) {
	if len(nids) == 0 {
		return nil, nil
	}
	args := make([]any, len(nids))
	marks := make([]string, len(nids))
	for i, n := range nids {
		args[i] = n
		marks[i] = fmt.Sprintf("$%d", i+1)
	}
	return scanEvents(db.q().QueryContext(ctx, `SELECT `+eventColumns+eventFrom+`WHERE e.event_nid IN (`+strings.Join(marks, ",")+`) ORDER BY e.event_nid`, args...))
}

// Timeline returns up to limit timeline events of a room: with backwards,
// those with stream_pos <= from, newest first; else those with
// from < stream_pos <= to, oldest first. to <= 0 means no upper bound.
func (db *DB) Timeline(ctx context.Context, roomNID, from, to int64, backwards bool, limit int) ([]Event, error) {
	if backwards {
		return scanEvents(db.q().QueryContext(ctx, `SELECT `+eventColumns+eventFrom+`
			WHERE e.room_nid = $1 AND e.stream_pos IS NOT NULL AND e.stream_pos <= $2 AND e.stream_pos > $3
			ORDER BY e.stream_pos DESC LIMIT $4`, roomNID, from, to, limit))
	}
	if to <= 0 {
		to = 1 << 62
	}
	return scanEvents(db.q().QueryContext(ctx, `SELECT `+eventColumns+eventFrom+`
		WHERE e.room_nid = $1 AND e.stream_pos IS NOT NULL AND e.stream_pos > $2 AND e.stream_pos <= $3
		ORDER BY e.stream_pos ASC LIMIT $4`, roomNID, from, to, limit))
}

var stateHistoryQuery = `SELECT ` + eventColumns + eventFrom + `
	WHERE e.room_nid = $1 AND e.type = ` + noReprepare(2) + ` AND e.state_key = $3 AND e.stream_pos IS NOT NULL ORDER BY e.stream_pos`

// StateHistory returns the accepted state events of one key in a room (a
// user's membership events, or the room's history_visibility changes), in
// stream order.
func (db *DB) StateHistory(ctx context.Context, roomNID int64, typ, stateKey string) ([]Event, error) {
	return scanEvents(db.q().QueryContext(ctx, stateHistoryQuery, roomNID, typ, stateKey))
}

// CurrentStateEvents returns a room's current state events, optionally
// only those of one type.
func (db *DB) CurrentStateEvents(ctx context.Context, roomNID int64, typ string) ([]Event, error) {
	q := `SELECT ` + eventColumns + ` FROM current_state c JOIN events e ON e.event_nid = c.event_nid JOIN rooms r ON r.room_nid = e.room_nid
		WHERE c.room_nid = $1`
	args := []any{roomNID}
	if typ != "" {
		q += ` AND c.type = ` + noReprepare(2)
		args = append(args, typ)
	}
	return scanEvents(db.q().QueryContext(ctx, q+` ORDER BY c.type, c.state_key`, args...))
}

// LatestStreamPos is the stream position of a room's newest timeline event.
func (db *DB) LatestStreamPos(ctx context.Context, roomNID int64) (int64, error) {
	var pos int64
	err := db.q().QueryRowContext(ctx, `SELECT COALESCE(MAX(stream_pos), 0) FROM events WHERE room_nid = $1 AND stream_pos IS NOT NULL`, roomNID).Scan(&pos)
	if err != nil {
		return 0, fmt.Errorf("reading latest position: %w", err)
	}
	return pos, nil
}

// StateAt returns the room's current state (key to event NID) as of a
// stream position: after the room's last timeline event at or before pos.
// After a fork that is the resolved state, not the event's own branch.
func (db *DB) StateAt(ctx context.Context, roomNID, pos int64) (map[StateKey]int64, error) {
	snap, err := db.SnapshotAtPos(ctx, roomNID, pos)
	if err != nil {
		return nil, err
	}
	if snap == 0 {
		return map[StateKey]int64{}, nil
	}
	return db.Snapshot(ctx, snap)
}

// EventNearTimestamp finds the room's timeline event closest to ts in the
// given direction (forwards: the first at or after ts).
func (db *DB) EventNearTimestamp(ctx context.Context, roomNID, ts int64, forwards bool) (*Event, error) {
	q := `SELECT ` + eventColumns + eventFrom + `WHERE e.room_nid = $1 AND e.stream_pos IS NOT NULL AND e.origin_server_ts <= $2
		ORDER BY e.origin_server_ts DESC, e.stream_pos DESC LIMIT 1`
	if forwards {
		q = `SELECT ` + eventColumns + eventFrom + `WHERE e.room_nid = $1 AND e.stream_pos IS NOT NULL AND e.origin_server_ts >= $2
		ORDER BY e.origin_server_ts ASC, e.stream_pos ASC LIMIT 1`
	}
	return scanEvent(db.q().QueryRowContext(ctx, q, roomNID, ts))
}

// EventsByID loads the named events that exist, in no particular order.
func (db *DB) EventsByID(ctx context.Context, ids []string) ([]Event, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	args := make([]any, len(ids))
	marks := make([]string, len(ids))
	for i, id := range ids {
		args[i] = id
		marks[i] = fmt.Sprintf("$%d", i+1)
	}
	return scanEvents(db.q().QueryContext(ctx, `SELECT `+eventColumns+eventFrom+`WHERE e.event_id IN (`+strings.Join(marks, ",")+`)`, args...))
}

// EventNIDs maps event IDs to NIDs for the events that exist.
func (tx *Tx) EventNIDs(ctx context.Context, ids []string) (map[string]int64, error) {
	out := make(map[string]int64, len(ids))
	for _, id := range ids {
		var nid int64
		err := tx.q().QueryRowContext(ctx, `SELECT event_nid FROM events WHERE event_id = $1`, id).Scan(&nid)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("looking up event %s: %w", id, err)
		}
		out[id] = nid
	}
	return out, nil
}

// RedactionsOf lists the stored redactions that target an event.
func (db *DB) RedactionsOf(ctx context.Context, eventID string) ([]Event, error) {
	return scanEvents(db.q().QueryContext(ctx, `SELECT `+eventColumns+eventFrom+`WHERE e.redacts = $1`, eventID))
}

// IsReferenced reports whether a stored event names eventID as a prev event
// (a child exists, so the event is no forward extremity).
func (db *DB) IsReferenced(ctx context.Context, eventID string) (bool, error) {
	var n int
	err := db.q().QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM event_edges WHERE prev_event_id = $1 LIMIT 1) AS found`, eventID).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("looking up children of %s: %w", eventID, err)
	}
	return n > 0, nil
}

// VisibilityNow is a user's current membership of a room, the room's
// current history visibility, and the position of the user's membership
// event.
type VisibilityNow struct {
	Membership    string
	Visibility    string
	MembershipPos int64
}

// VisibilityNow reads what Viewer needs of the room's current state, in
// one statement.
func (db *DB) VisibilityNow(ctx context.Context, roomNID int64, userID string) (VisibilityNow, error) {
	var v VisibilityNow
	rows, err := db.q().QueryContext(ctx, `SELECT c.type, COALESCE(e.state_value, ''), COALESCE(e.stream_pos, c.stream_pos)
		FROM current_state c JOIN events e ON e.event_nid = c.event_nid
		WHERE c.room_nid = $1 AND ((c.type = 'm.room.member' AND c.state_key = $2) OR (c.type = 'm.room.history_visibility' AND c.state_key = ''))`,
		roomNID, userID)
	if err != nil {
		return v, fmt.Errorf("reading visibility: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var typ, val string
		var pos int64
		if err := rows.Scan(&typ, &val, &pos); err != nil {
			return v, err
		}
		if typ == "m.room.member" {
			v.Membership, v.MembershipPos = val, pos
		} else {
			v.Visibility = val
		}
	}
	return v, rows.Err()
}

// SnapshotView is what a snapshot says of a room's history visibility and
// one user's membership.
type SnapshotView struct {
	Visibility string
	Membership string
}

// SnapshotVisibility reads the history visibility and userID's membership
// in a state snapshot (two keys along its delta chain).
func (db *DB) SnapshotVisibility(ctx context.Context, snapshotNID int64, userID string) (SnapshotView, error) {
	var v SnapshotView
	if snapshotNID == 0 {
		return v, nil
	}
	rows, err := db.q().QueryContext(ctx, snapshotChainCTE+`
		SELECT e.type, COALESCE(ev.state_value, '') FROM chain c
		JOIN state_entries e ON e.snapshot_nid = c.nid
			AND ((e.type = 'm.room.history_visibility' AND e.state_key = '') OR (e.type = 'm.room.member' AND e.state_key = $2))
		JOIN events ev ON ev.event_nid = e.event_nid
		ORDER BY c.lvl DESC`, snapshotNID, userID)
	if err != nil {
		return v, fmt.Errorf("reading snapshot %d: %w", snapshotNID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var typ, val string
		if err := rows.Scan(&typ, &val); err != nil {
			return v, err
		}
		if typ == "m.room.member" {
			v.Membership = val
		} else {
			v.Visibility = val
		}
	}
	return v, rows.Err()
}

// SnapshotAtPos is the room's current-state snapshot as of a stream
// position (after the last timeline event at or before it).
func (db *DB) SnapshotAtPos(ctx context.Context, roomNID, pos int64) (int64, error) {
	var snap int64
	err := db.q().QueryRowContext(ctx, `SELECT current_after FROM events
		WHERE room_nid = $1 AND stream_pos > 0 AND stream_pos <= $2 ORDER BY stream_pos DESC LIMIT 1`, roomNID, pos).Scan(&snap)
	if errors.Is(err, sql.ErrNoRows) {
		// Before the room's first timeline event here: the state before it
		// (none for a room created here; the room's state for one joined
		// over federation, whose first event is the join).
		err = db.q().QueryRowContext(ctx, `SELECT state_before FROM events
			WHERE room_nid = $1 AND stream_pos > 0 ORDER BY stream_pos LIMIT 1`, roomNID).Scan(&snap)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, nil
		}
	}
	if err != nil {
		return 0, fmt.Errorf("finding state at %d: %w", pos, err)
	}
	return snap, nil
}
