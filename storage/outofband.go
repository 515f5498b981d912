package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Out-of-band memberships are the memberships of local users in rooms this
// server is not in: a remote invite, its rejection or rescission, a knock
// and its withdrawal. The room has no state here (or state this server no
// longer follows), so the member event cannot take its place in the DAG:
// it is stored as an outlier, and its membership becomes the user's row of
// current_state at a new stream position, which is what sync's membership
// queries read. The room's snapshots and DAG head are never touched; if the
// event later arrives in the room's timeline (after a join), it is promoted
// like any outlier.

// OutOfBandWrite is a membership event of a room this server is not in.
type OutOfBandWrite struct {
	RoomID      string
	RoomVersion string
	// Event is the member event; RoomNID and Status are set by the write.
	Event NewEvent
	// StrippedState is the room summary the other server gave (a JSON
	// array), nil for none.
	StrippedState []byte
	// Now is the time in milliseconds (the room row's creation time).
	Now int64
}

// StoreOutOfBand stores w's event as an outlier (unless it is held
// already) and makes its membership the user's current one in the room, at
// a new stream position. The room's row is created when this server has
// never seen the room. An event already in the room's timeline is left as
// it is (its place in the DAG decides the membership).
func (tx *Tx) StoreOutOfBand(ctx context.Context, w OutOfBandWrite) (StoredEvent, error) {
	e := w.Event
	if e.Type != "m.room.member" || e.StateKey == nil {
		return StoredEvent{}, errors.New("an out-of-band membership needs a member event")
	}
	roomNID, err := tx.roomForOutOfBand(ctx, w.RoomID, w.RoomVersion, w.Now)
	if err != nil {
		return StoredEvent{}, err
	}
	e.RoomNID, e.StateBefore = roomNID, 0
	var nid int64
	existing, err := tx.EventByID(ctx, e.EventID)
	switch {
	case err == nil:
		if existing.RoomNID != roomNID {
			return StoredEvent{}, fmt.Errorf("event %s is stored in another room", e.EventID)
		}
		if existing.Status != EventOutlier {
			return StoredEvent{NID: existing.NID, StreamPos: existing.StreamPos}, nil
		}
		nid = existing.NID
	case errors.Is(err, ErrNotFound):
		e.Status = EventOutlier
		if nid, _, err = tx.insertEvent(ctx, e, Outlier, 0); err != nil {
			return StoredEvent{}, err
		}
	default:
		return StoredEvent{}, err
	}
	pos := tx.NextStreamPos()
	_, err = tx.exec(ctx, `INSERT INTO current_state (room_nid, type, state_key, event_nid, membership, stream_pos)
		VALUES ($1, 'm.room.member', $2, $3, $4, $5)
		ON CONFLICT (room_nid, type, state_key) DO UPDATE SET event_nid = excluded.event_nid,
			membership = excluded.membership, stream_pos = excluded.stream_pos`,
		roomNID, *e.StateKey, nid, stateValue(e.Type, e.StateKey, e.JSON), pos)
	if err != nil {
		return StoredEvent{}, fmt.Errorf("recording out-of-band membership: %w", err)
	}
	_, err = tx.exec(ctx, `INSERT INTO out_of_band_memberships (event_nid, room_nid, user_id, stream_pos, stripped_state)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (event_nid) DO UPDATE SET stream_pos = excluded.stream_pos,
			stripped_state = COALESCE(excluded.stripped_state, out_of_band_memberships.stripped_state)`,
		nid, roomNID, *e.StateKey, pos, nullBytes(w.StrippedState))
	if err != nil {
		return StoredEvent{}, fmt.Errorf("recording out-of-band membership: %w", err)
	}
	tx.WakeUsers(*e.StateKey)
	return StoredEvent{NID: nid, StreamPos: pos}, nil
}

// roomForOutOfBand returns the room's NID, creating its row (without
// state) when the room is unknown.
func (tx *Tx) roomForOutOfBand(ctx context.Context, roomID, version string, now int64) (int64, error) {
	nid, err := tx.InsertRoom(ctx, roomID, version, now)
	if !errors.Is(err, ErrExists) {
		return nid, err
	}
	if err := tx.q().QueryRowContext(ctx, `SELECT room_nid FROM rooms WHERE room_id = $1`, roomID).Scan(&nid); err != nil {
		return 0, fmt.Errorf("reading room %s: %w", roomID, err)
	}
	return nid, nil
}

// AdoptRoom creates the row of a room whose first events are being stored
// (InsertRoom), or takes over the row of a room that holds out-of-band
// memberships only (no state yet), with the version its create event
// gives. ErrExists when the room already has state.
func (tx *Tx) AdoptRoom(ctx context.Context, roomID, version string, now int64) (int64, error) {
	nid, err := tx.InsertRoom(ctx, roomID, version, now)
	if !errors.Is(err, ErrExists) {
		return nid, err
	}
	var snapshot int64
	err = tx.q().QueryRowContext(ctx, `SELECT room_nid, state_snapshot FROM rooms WHERE room_id = $1`, roomID).Scan(&nid, &snapshot)
	if err != nil {
		return 0, fmt.Errorf("reading room %s: %w", roomID, err)
	}
	if snapshot != 0 {
		return 0, ErrExists
	}
	if err := tx.SetRoomVersion(ctx, nid, version); err != nil {
		return 0, err
	}
	return nid, nil
}

// SetRoomVersion corrects the version of a room without state (its row
// came from an out-of-band membership, which names the version the other
// server claimed).
func (tx *Tx) SetRoomVersion(ctx context.Context, roomNID int64, version string) error {
	if _, err := tx.exec(ctx, `UPDATE rooms SET room_version = $2 WHERE room_nid = $1 AND state_snapshot = 0`, roomNID, version); err != nil {
		return fmt.Errorf("setting room version: %w", err)
	}
	return nil
}

// OutOfBand is a local user's out-of-band membership.
type OutOfBand struct {
	EventNID   int64
	EventID    string
	RoomNID    int64
	Membership string
	Sender     string
	StreamPos  int64
	// StrippedState is the room summary given with it (a JSON array; nil
	// for none).
	StrippedState []byte
	// JSON is the member event.
	JSON []byte
}

const outOfBandColumns = `o.event_nid, e.event_id, o.room_nid, COALESCE(e.state_value, ''), e.sender, o.stream_pos,
	COALESCE(o.stripped_state, ''), e.json`

func scanOutOfBand(row *sql.Row) (*OutOfBand, error) {
	var o OutOfBand
	var stripped, js string
	err := row.Scan(&o.EventNID, &o.EventID, &o.RoomNID, &o.Membership, &o.Sender, &o.StreamPos, &stripped, &js)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading out-of-band membership: %w", err)
	}
	if stripped != "" {
		o.StrippedState = []byte(stripped)
	}
	o.JSON = []byte(js)
	return &o, nil
}

// CurrentOutOfBand returns the user's current membership of the room when
// it is out of band (its event is still an outlier); ErrNotFound when the
// user has no membership there or it is part of the room's state.
func (db *DB) CurrentOutOfBand(ctx context.Context, roomID, userID string) (*OutOfBand, error) {
	return scanOutOfBand(db.q().QueryRowContext(ctx, `SELECT `+outOfBandColumns+` FROM rooms r
		JOIN current_state c ON c.room_nid = r.room_nid AND c.type = 'm.room.member' AND c.state_key = $2
		JOIN out_of_band_memberships o ON o.event_nid = c.event_nid
		JOIN events e ON e.event_nid = c.event_nid
		WHERE r.room_id = $1 AND e.status = 1`, roomID, userID))
}

// OutOfBandByEvent returns the out-of-band record of a membership event
// (whatever became of the event since); ErrNotFound when it has none.
func (db *DB) OutOfBandByEvent(ctx context.Context, eventNID int64) (*OutOfBand, error) {
	return scanOutOfBand(db.q().QueryRowContext(ctx, `SELECT `+outOfBandColumns+` FROM out_of_band_memberships o
		JOIN events e ON e.event_nid = o.event_nid WHERE o.event_nid = $1`, eventNID))
}

// outOfBandHistoryAt lists the user's latest out-of-band membership per
// room at or before upTo (membershipHistoryAt merges them).
func (db *DB) outOfBandHistoryAt(ctx context.Context, userID string, upTo int64) ([]RoomMembership, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT o.room_nid, r.room_id, COALESCE(e.state_value, ''), o.stream_pos, o.event_nid
		FROM out_of_band_memberships o JOIN events e ON e.event_nid = o.event_nid JOIN rooms r ON r.room_nid = o.room_nid
		WHERE o.user_id = $1 AND o.stream_pos <= $2
		  AND o.stream_pos = (SELECT MAX(x.stream_pos) FROM out_of_band_memberships x
		      WHERE x.user_id = $1 AND x.room_nid = o.room_nid AND x.stream_pos <= $2)`, userID, upTo)
	if err != nil {
		return nil, fmt.Errorf("listing out-of-band memberships: %w", err)
	}
	defer rows.Close()
	var out []RoomMembership
	for rows.Next() {
		var m RoomMembership
		if err := rows.Scan(&m.RoomNID, &m.RoomID, &m.Membership, &m.StreamPos, &m.EventNID); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// CurrentJoinedServers lists the servers with a joined member in a room's
// current state.
func (db *DB) CurrentJoinedServers(ctx context.Context, roomNID int64) ([]string, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT DISTINCT `+userIDServer("state_key")+` FROM current_state
		WHERE room_nid = $1 AND type = 'm.room.member' AND membership = 'join'`, roomNID)
	if err != nil {
		return nil, fmt.Errorf("listing servers in room: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
