package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// Room is a room's row: its version and the head of its DAG.
type Room struct {
	NID         int64
	ID          string
	Version     string
	Snapshot    int64
	Extremities []string
	MaxDepth    int64
	Published   bool
	// ChainLen is the delta-chain length of the current snapshot.
	ChainLen int
}

func scanRoom(row interface{ Scan(...any) error }) (*Room, error) {
	var r Room
	var ext string
	err := row.Scan(&r.NID, &r.ID, &r.Version, &r.Snapshot, &ext, &r.MaxDepth, &r.Published, &r.ChainLen)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading room: %w", err)
	}
	if err := json.Unmarshal([]byte(ext), &r.Extremities); err != nil {
		return nil, fmt.Errorf("decoding forward extremities of %s: %w", r.ID, err)
	}
	return &r, nil
}

const roomColumns = `room_nid, room_id, room_version, state_snapshot, forward_extremities, max_depth, published,
	COALESCE((SELECT chain_len FROM state_snapshots s WHERE s.snapshot_nid = rooms.state_snapshot), 0)`

// Room looks up a room by ID.
func (db *DB) Room(ctx context.Context, roomID string) (*Room, error) {
	return scanRoom(db.q().QueryRowContext(ctx, `SELECT `+roomColumns+` FROM rooms WHERE room_id = $1`, roomID))
}

// InsertRoom creates a room row; ErrExists if the ID is taken.
func (tx *Tx) InsertRoom(ctx context.Context, roomID, version string, now int64) (int64, error) {
	var nid int64
	err := tx.q().QueryRowContext(ctx, `INSERT INTO rooms (room_nid, room_id, room_version, created_ts)
		VALUES (`+nextNID("rooms", "room_nid")+`, $1, $2, $3) ON CONFLICT DO NOTHING RETURNING room_nid`, roomID, version, now).Scan(&nid)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrExists
	}
	if err != nil {
		return 0, fmt.Errorf("inserting room: %w", err)
	}
	return nid, nil
}

// UpdateRoomHead records a room's new current state and DAG head.
func (tx *Tx) UpdateRoomHead(ctx context.Context, roomNID, snapshot int64, extremities []string, maxDepth int64) error {
	ext, err := json.Marshal(extremities)
	if err != nil {
		return err
	}
	err = tx.execLater(ctx, `UPDATE rooms SET state_snapshot = $2, forward_extremities = $3, max_depth = $4 WHERE room_nid = $1`,
		roomNID, snapshot, string(ext), maxDepth)
	if err != nil {
		return fmt.Errorf("updating room head: %w", err)
	}
	return nil
}

// SetRoomPublished lists or unlists a room in the public directory.
func (tx *Tx) SetRoomPublished(ctx context.Context, roomNID int64, published bool) error {
	_, err := tx.exec(ctx, `UPDATE rooms SET published = $2 WHERE room_nid = $1`, roomNID, published)
	if err != nil {
		return fmt.Errorf("publishing room: %w", err)
	}
	return nil
}

// StateKey identifies a piece of room state.
type StateKey struct {
	Type     string
	StateKey string
}

// InsertSnapshot stores a state snapshot as entries over parent (0: a full
// snapshot) and returns its ID.
func (tx *Tx) InsertSnapshot(ctx context.Context, roomNID, parent int64, chainLen int, entries map[StateKey]int64) (int64, error) {
	var nid int64
	err := tx.q().QueryRowContext(ctx, `INSERT INTO state_snapshots (snapshot_nid, room_nid, parent_nid, chain_len)
		VALUES (`+nextNID("state_snapshots", "snapshot_nid")+`, $1, $2, $3) RETURNING snapshot_nid`,
		roomNID, parent, chainLen).Scan(&nid)
	if err != nil {
		return 0, fmt.Errorf("inserting snapshot: %w", err)
	}
	for k, ev := range entries {
		if _, err := tx.exec(ctx, `INSERT INTO state_entries (snapshot_nid, type, state_key, event_nid) VALUES ($1, $2, $3, $4)`,
			nid, k.Type, k.StateKey, ev); err != nil {
			return 0, fmt.Errorf("inserting state entry: %w", err)
		}
	}
	return nid, nil
}

// Snapshot reads the full state of a snapshot by walking its delta chain.
func (db *DB) Snapshot(ctx context.Context, snapshotNID int64) (map[StateKey]int64, error) {
	return readSnapshot(ctx, db.q(), snapshotNID)
}

func readSnapshot(ctx context.Context, q querier, snapshotNID int64) (map[StateKey]int64, error) {
	state := map[StateKey]int64{}
	// A recursive query fetches the chain's entries in one round trip; the
	// entry nearest the requested snapshot wins.
	rows, err := q.QueryContext(ctx, snapshotChainCTE+`
		SELECT e.type, e.state_key, e.event_nid FROM chain c JOIN state_entries e ON e.snapshot_nid = c.nid ORDER BY c.lvl DESC`, snapshotNID)
	if err != nil {
		return nil, fmt.Errorf("reading snapshot %d: %w", snapshotNID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var k StateKey
		var nid int64
		if err := rows.Scan(&k.Type, &k.StateKey, &nid); err != nil {
			return nil, err
		}
		state[k] = nid
	}
	return state, rows.Err()
}

// SetCurrentState records that key's current value in a room is eventNID.
func (tx *Tx) SetCurrentState(ctx context.Context, roomNID int64, key StateKey, eventNID int64, membership string, streamPos int64) error {
	_, err := tx.exec(ctx, `INSERT INTO current_state (room_nid, type, state_key, event_nid, membership, stream_pos)
		VALUES ($1, $2, $3, $4, NULLIF($5, ''), $6)
		ON CONFLICT (room_nid, type, state_key) DO UPDATE SET event_nid = excluded.event_nid,
			membership = excluded.membership, stream_pos = excluded.stream_pos`,
		roomNID, key.Type, key.StateKey, eventNID, membership, streamPos)
	if err != nil {
		return fmt.Errorf("updating current state: %w", err)
	}
	return nil
}

// JoinedRooms lists the IDs of the rooms a user is joined to.
func (db *DB) JoinedRooms(ctx context.Context, userID string) ([]string, error) {
	return db.roomsWithMembership(ctx, userID, "join")
}

func (db *DB) roomsWithMembership(ctx context.Context, userID, membership string) ([]string, error) {
	out, err := queryStrings(ctx, db.q(), `SELECT r.room_id FROM current_state c JOIN rooms r ON r.room_nid = c.room_nid
		WHERE c.type = 'm.room.member' AND c.state_key = $1 AND c.membership = $2 ORDER BY r.room_nid`, userID, membership)
	if err != nil {
		return nil, fmt.Errorf("listing rooms: %w", err)
	}
	return out, nil
}

// Membership is a user's current membership of a room ("" if none).
func (db *DB) Membership(ctx context.Context, roomNID int64, userID string) (string, error) {
	var m sql.NullString
	err := db.q().QueryRowContext(ctx, `SELECT membership FROM current_state WHERE room_nid = $1 AND type = 'm.room.member' AND state_key = $2`,
		roomNID, userID).Scan(&m)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading membership: %w", err)
	}
	return m.String, nil
}

// MemberCounts counts joined and invited members of a room.
func (db *DB) MemberCounts(ctx context.Context, roomNID int64) (joined, invited int, err error) {
	err = db.q().QueryRowContext(ctx, `SELECT
			COUNT(*) FILTER (WHERE membership = 'join'), COUNT(*) FILTER (WHERE membership = 'invite')
		FROM current_state WHERE room_nid = $1 AND type = 'm.room.member'`, roomNID).Scan(&joined, &invited)
	if err != nil {
		err = fmt.Errorf("counting members: %w", err)
	}
	return joined, invited, err
}

// InsertTxnID remembers which event a client transaction produced.
func (tx *Tx) InsertTxnID(ctx context.Context, userID, deviceID, scope, txnID, eventID string) error {
	err := tx.execLater(ctx, `INSERT INTO txn_ids (user_id, device_id, scope, txn_id, event_id) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT DO NOTHING`, userID, deviceID, scope, txnID, eventID)
	if err != nil {
		return fmt.Errorf("saving transaction ID: %w", err)
	}
	return nil
}

// TxnEventID returns the event a client transaction produced, or ErrNotFound.
func (db *DB) TxnEventID(ctx context.Context, userID, deviceID, scope, txnID string) (string, error) {
	var id string
	err := db.q().QueryRowContext(ctx, `SELECT event_id FROM txn_ids WHERE user_id = $1 AND device_id = $2 AND scope = $3 AND txn_id = $4`,
		userID, deviceID, scope, txnID).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("reading transaction ID: %w", err)
	}
	return id, nil
}

// ForgetRoom hides a left room from the user; SetForgotten(false) undoes it on rejoin.
func (tx *Tx) SetForgotten(ctx context.Context, userID string, roomNID int64, forgotten bool) error {
	var err error
	if forgotten {
		_, err = tx.exec(ctx, `INSERT INTO forgotten_rooms (user_id, room_nid) VALUES ($1, $2) ON CONFLICT DO NOTHING`, userID, roomNID)
	} else {
		_, err = tx.exec(ctx, `DELETE FROM forgotten_rooms WHERE user_id = $1 AND room_nid = $2`, userID, roomNID)
	}
	if err != nil {
		return fmt.Errorf("updating forgotten rooms: %w", err)
	}
	return nil
}

// Forgotten reports whether the user forgot the room.
func (db *DB) Forgotten(ctx context.Context, userID string, roomNID int64) (bool, error) {
	var n int
	err := db.q().QueryRowContext(ctx, `SELECT COUNT(*) FROM forgotten_rooms WHERE user_id = $1 AND room_nid = $2`, userID, roomNID).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("reading forgotten rooms: %w", err)
	}
	return n > 0, nil
}

var deleteCurrentStateQuery = `DELETE FROM current_state WHERE room_nid = $1 AND type = ` + noReprepare(2) + ` AND state_key = $3`

// DeleteCurrentState removes a key from a room's current state (state
// resolution over a fork may drop one).
func (tx *Tx) DeleteCurrentState(ctx context.Context, roomNID int64, key StateKey) error {
	_, err := tx.exec(ctx, deleteCurrentStateQuery, roomNID, key.Type, key.StateKey)
	if err != nil {
		return fmt.Errorf("deleting current state: %w", err)
	}
	return nil
}

// StateRef is one entry of a state snapshot: the event and the content
// field queries filter on (events.state_value).
type StateRef struct {
	NID     int64
	EventID string
	Value   string
}

// SnapshotRefs reads a snapshot's state with each event's ID and value.
func (db *DB) SnapshotRefs(ctx context.Context, snapshotNID int64) (map[StateKey]StateRef, error) {
	out := map[StateKey]StateRef{}
	if snapshotNID == 0 {
		return out, nil
	}
	rows, err := db.q().QueryContext(ctx, snapshotChainCTE+`
		SELECT e.type, e.state_key, e.event_nid, ev.event_id, COALESCE(ev.state_value, '')
		FROM chain c JOIN state_entries e ON e.snapshot_nid = c.nid JOIN events ev ON ev.event_nid = e.event_nid
		ORDER BY c.lvl DESC`, snapshotNID)
	if err != nil {
		return nil, fmt.Errorf("reading snapshot %d: %w", snapshotNID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var k StateKey
		var ref StateRef
		if err := rows.Scan(&k.Type, &k.StateKey, &ref.NID, &ref.EventID, &ref.Value); err != nil {
			return nil, err
		}
		out[k] = ref
	}
	return out, rows.Err()
}

// snapshotChainCTE walks a snapshot's delta chain ($1): chain(nid, lvl),
// lvl 0 being the snapshot itself; the entry of the lowest level wins.
const snapshotChainCTE = `WITH RECURSIVE chain(nid, parent, lvl) AS (
			SELECT snapshot_nid, parent_nid, 0 FROM state_snapshots WHERE snapshot_nid = $1
			UNION ALL
			SELECT s.snapshot_nid, s.parent_nid, c.lvl + 1 FROM state_snapshots s JOIN chain c ON s.snapshot_nid = c.parent
		)`

// ListeningRooms lists the rooms whose changes a user's long-polls wait
// for: those the user is joined to, invited to or knocking on.
func (db *DB) ListeningRooms(ctx context.Context, userID string) ([]int64, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT room_nid FROM current_state
		WHERE type = 'm.room.member' AND state_key = $1 AND membership IN ('join', 'invite', 'knock')`, userID)
	if err != nil {
		return nil, fmt.Errorf("listing rooms of %s: %w", userID, err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var nid int64
		if err := rows.Scan(&nid); err != nil {
			return nil, err
		}
		out = append(out, nid)
	}
	return out, rows.Err()
}

// SetForwardExtremities replaces a room's forward extremities alone.
func (tx *Tx) SetForwardExtremities(ctx context.Context, roomNID int64, extremities []string) error {
	ext, err := json.Marshal(extremities)
	if err != nil {
		return err
	}
	if _, err := tx.exec(ctx, `UPDATE rooms SET forward_extremities = $2 WHERE room_nid = $1`, roomNID, string(ext)); err != nil {
		return fmt.Errorf("setting forward extremities: %w", err)
	}
	return nil
}
