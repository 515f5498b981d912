package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
)

// maxChainLen bounds a snapshot's delta chain before a full copy is stored.
const maxChainLen = 32

// Placement says where an event goes among a room's events.
type Placement int

const (
	// Timeline: a new event at the DAG's forward edge. It takes the next
	// stream position, so /sync delivers it.
	Timeline Placement = iota
	// Backfill: history older than what the room holds. It takes a negative
	// stream position, so /sync never sees it, and it changes neither the
	// room's current state nor its forward extremities.
	Backfill
	// Outlier: stored for its content only (auth chains, state fetched over
	// federation), outside the timeline and without state.
	Outlier
	// Rejected events fail the auth rules; stored so they are not fetched
	// or checked again.
	Rejected
	// SoftFailed events passed the auth rules at their place in the DAG but
	// not against the room's current state: kept out of the timeline.
	SoftFailed
)

// Status is the status an event stored with this placement has.
func (p Placement) Status() int { return p.status() }

func (p Placement) status() int {
	switch p {
	case Outlier:
		return EventOutlier
	case Rejected:
		return EventRejected
	case SoftFailed:
		return EventSoftFailed
	}
	return EventAccepted
}

// EventWrite is everything that storing one event changes, decided by the
// roomserver while it held the room; StoreEvent applies it in one step.
type EventWrite struct {
	Event     NewEvent // Event.StateBefore and Event.Status are set by StoreEvent
	Placement Placement
	// Room identifies the room for the delayed-events table (by ID).
	RoomID string

	// State before the event, for timeline, backfilled and soft-failed
	// events: an existing snapshot, or (when StateBeforeIDs is not nil) the
	// state as event IDs, stored as a new full snapshot. Zero with nil IDs
	// means the room's current state. StateBeforeDelta, with StateBefore,
	// is a state that differs from that snapshot in these entries (the
	// state after a prev event that is a state event): stored as a delta
	// over it, so a chain of events does not copy the room's state each.
	StateBefore      int64
	StateBeforeIDs   map[StateKey]string
	StateBeforeDelta map[StateKey]string

	// How a timeline event changes the room's current state: a state event
	// that extends the current state replaces its own key (Extends); after
	// a fork the whole resolved state is given as event IDs (Resolved, the
	// event itself included when it is state).
	Extends  bool
	Resolved map[StateKey]string

	// Head, when not nil, is the room's new DAG head.
	Head *RoomHead
	// Push holds the recipients' notifying push rule outcomes.
	Push []PushAction
	// Txn, when not nil, records the client transaction that sent the event.
	Txn *TxnRecord
	// Promote turns an event stored as an outlier into this placement
	// instead of inserting it.
	Promote bool
	// Gap marks a timeline event whose prev events are not all in the
	// timeline (see LatestTimelineGap).
	Gap bool
}

// RoomHead is a room's forward extremities and greatest depth.
type RoomHead struct {
	Extremities []string
	MaxDepth    int64
}

// TxnRecord names a client transaction (see InsertTxnID).
type TxnRecord struct {
	UserID, DeviceID, Scope, TxnID string
}

// StoredEvent is what StoreEvent assigned.
type StoredEvent struct {
	NID         int64
	StreamPos   int64 // 0 for events outside the timeline
	StateBefore int64
}

// StoreEvent stores an event with everything around it: its row and DAG
// edges, state snapshots, the room's current state and head, the search
// index, push actions, the client transaction and delayed events the new
// state voids. It is the one write the roomserver makes per event.
func (tx *Tx) StoreEvent(ctx context.Context, w EventWrite) (StoredEvent, error) {
	var out StoredEvent
	e := w.Event
	e.Status = w.Placement.status()
	room, err := tx.roomState(ctx, e.RoomNID)
	if err != nil {
		return out, err
	}
	switch {
	case w.Placement == Outlier || w.Placement == Rejected:
		e.StateBefore = 0
	case w.StateBeforeIDs != nil:
		nids, err := tx.eventNIDs(ctx, w.StateBeforeIDs, "", 0)
		if err != nil {
			return out, err
		}
		if e.StateBefore, err = tx.InsertSnapshot(ctx, e.RoomNID, 0, 0, nids); err != nil {
			return out, err
		}
	case w.StateBefore != 0 && len(w.StateBeforeDelta) > 0:
		if e.StateBefore, err = tx.deltaSnapshot(ctx, e.RoomNID, w.StateBefore, w.StateBeforeDelta); err != nil {
			return out, err
		}
	case w.StateBefore != 0:
		e.StateBefore = w.StateBefore
	default:
		e.StateBefore = room.snapshot
	}
	var nid, pos int64
	if w.Promote {
		nid, pos, err = tx.promoteOutlier(ctx, e, w.Placement, room.snapshot)
	} else {
		nid, pos, err = tx.insertEvent(ctx, e, w.Placement, room.snapshot)
	}
	if err != nil {
		return out, err
	}
	out = StoredEvent{NID: nid, StreamPos: pos, StateBefore: e.StateBefore}
	if e.Status != EventAccepted {
		return out, nil
	}
	// Search index: message/name/topic text in, a redaction's target out.
	if err := tx.IndexEventText(ctx, nid, e.RoomNID, e.Type, contentOf(e.JSON), e.Redacts); err != nil {
		return out, err
	}
	if w.Placement == Backfill {
		return out, nil
	}
	if w.Gap && w.Placement == Timeline && pos > 0 {
		if err := tx.execLater(ctx, `INSERT INTO timeline_gaps (room_nid, stream_pos) VALUES ($1, $2) ON CONFLICT DO NOTHING`, e.RoomNID, pos); err != nil {
			return out, fmt.Errorf("recording a timeline gap: %w", err)
		}
	}
	tx.WakeRooms(e.RoomNID)
	if e.Type == "m.room.member" && e.StateKey != nil {
		tx.WakeUsers(*e.StateKey) // invites, and the last word to who left
	}
	if len(w.Push) > 0 {
		if err := tx.InsertPushActions(ctx, e.RoomNID, nid, pos, w.Push); err != nil {
			return out, err
		}
	}
	current := room.snapshot
	switch {
	case w.Resolved != nil:
		if current, err = tx.replaceCurrentState(ctx, e.RoomNID, room.snapshot, w.Resolved, e.EventID, nid, pos); err != nil {
			return out, err
		}
	case w.Extends && e.StateKey != nil:
		key := StateKey{Type: e.Type, StateKey: *e.StateKey}
		if current, err = tx.extendCurrentState(ctx, e.RoomNID, room, key, nid, pos); err != nil {
			return out, err
		}
		// Others' delayed events (MSC4140) for this state are void now.
		if err := tx.CancelDelayedStateEvents(ctx, w.RoomID, key.Type, key.StateKey, e.Sender); err != nil {
			return out, err
		}
	}
	// The row was stored with the room's state before it as current_after;
	// only a change of state needs it rewritten.
	if current != room.snapshot {
		if err := tx.execLater(ctx, `UPDATE events SET current_after = $2 WHERE event_nid = $1`, nid, current); err != nil {
			return out, fmt.Errorf("recording state after event: %w", err)
		}
	}
	if current != room.snapshot || w.Head != nil {
		if err := tx.updateRoomHead(ctx, e.RoomNID, current, w.Head); err != nil {
			return out, err
		}
	}
	if w.Txn != nil {
		if err := tx.InsertTxnID(ctx, w.Txn.UserID, w.Txn.DeviceID, w.Txn.Scope, w.Txn.TxnID, e.EventID); err != nil {
			return out, err
		}
	}
	return out, nil
}

// roomSnapshot is a room's current snapshot and its delta-chain length.
type roomSnapshot struct {
	snapshot int64
	chainLen int
}

func (tx *Tx) roomState(ctx context.Context, roomNID int64) (roomSnapshot, error) {
	var r roomSnapshot
	err := tx.q().QueryRowContext(ctx, `SELECT r.state_snapshot, COALESCE(s.chain_len, 0) FROM rooms r
		LEFT JOIN state_snapshots s ON s.snapshot_nid = r.state_snapshot WHERE r.room_nid = $1`, roomNID).Scan(&r.snapshot, &r.chainLen)
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("room %d: %w", roomNID, ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("reading room head: %w", err)
	}
	return r, nil
}

// insertEvent stores the event row and its DAG edges; accepted events get a
// stream position (negative for backfill).
func (tx *Tx) insertEvent(ctx context.Context, e NewEvent, p Placement, currentAfter int64) (nid, pos int64, err error) {
	var streamPos any
	if e.Status == EventAccepted {
		if pos, err = tx.streamPosFor(ctx, p); err != nil {
			return 0, 0, err
		}
		streamPos = pos
	}
	err = tx.q().QueryRowContext(ctx, `INSERT INTO events (event_nid, event_id, room_nid, type, state_key, sender, depth, origin_server_ts,
			stream_pos, state_before, status, relates_to, rel_type, sender_device, txn_id, unsigned_extra, json, state_value, redacts,
			current_after, sent_by_resident)
		VALUES (`+nextNID("events", "event_nid")+`, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULLIF($11, ''), NULLIF($12, ''), NULLIF($13, ''), NULLIF($14, ''), $15, $16,
			$17, NULLIF($18, ''), $19, $20)
		ON CONFLICT (event_id) DO NOTHING RETURNING event_nid`,
		e.EventID, e.RoomNID, e.Type, e.StateKey, e.Sender, e.Depth, e.OriginTS, streamPos, e.StateBefore, e.Status,
		e.RelatesTo, e.RelType, e.SenderDevice, e.TxnID, nullBytes(e.UnsignedExtra), string(e.JSON),
		stateValue(e.Type, e.StateKey, e.JSON), e.Redacts, currentAfter, boolInt(e.SentByResident)).Scan(&nid)
	// ON CONFLICT, not a caught unique violation: on PostgreSQL a failed
	// statement spoils the rest of the transaction.
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, ErrExists
	}
	if err != nil {
		return 0, 0, fmt.Errorf("inserting event %s: %w", e.EventID, err)
	}
	for _, prev := range e.PrevEvents {
		if err := tx.execLater(ctx, `INSERT INTO event_edges (event_nid, prev_event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, nid, prev); err != nil {
			return 0, 0, fmt.Errorf("inserting event edge: %w", err)
		}
	}
	return nid, pos, nil
}

// streamPosFor allocates the position of an accepted event: the next one,
// or the next backfill position.
func (tx *Tx) streamPosFor(ctx context.Context, p Placement) (int64, error) {
	if p == Backfill {
		return tx.nextBackfillPos(ctx)
	}
	return tx.NextStreamPos(), nil
}

// promoteOutlier makes an event stored as an outlier an accepted (or
// soft-failed) one, now that its place in the DAG is known.
func (tx *Tx) promoteOutlier(ctx context.Context, e NewEvent, p Placement, currentAfter int64) (nid, pos int64, err error) {
	var streamPos any
	if e.Status == EventAccepted {
		if pos, err = tx.streamPosFor(ctx, p); err != nil {
			return 0, 0, err
		}
		streamPos = pos
	}
	err = tx.q().QueryRowContext(ctx, `UPDATE events SET status = $2, stream_pos = $3, state_before = $4,
			unsigned_extra = COALESCE($5, unsigned_extra), current_after = $6, sent_by_resident = $7
		WHERE event_id = $1 AND status = 1 RETURNING event_nid`,
		e.EventID, e.Status, streamPos, e.StateBefore, nullBytes(e.UnsignedExtra), currentAfter, boolInt(e.SentByResident)).Scan(&nid)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, fmt.Errorf("promoting %s: %w", e.EventID, ErrNotFound)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("promoting %s: %w", e.EventID, err)
	}
	return nid, pos, nil
}

// nextBackfillPos allocates the next backfill position: -1, -2, ...
func (tx *Tx) nextBackfillPos(ctx context.Context) (int64, error) {
	var pos int64
	err := tx.q().QueryRowContext(ctx, `UPDATE stream_position SET backfill_pos = backfill_pos - 1 RETURNING backfill_pos`).Scan(&pos)
	if err != nil {
		return 0, fmt.Errorf("allocating backfill position: %w", err)
	}
	return pos, nil
}

// stateValue is the content field that queries filter on, for the state
// types that have one; nil otherwise.
func stateValue(typ string, stateKey *string, eventJSON []byte) any {
	if stateKey == nil {
		return nil
	}
	var field string
	switch typ {
	case "m.room.member":
		field = "membership"
	case "m.room.join_rules":
		field = "join_rule"
	case "m.room.history_visibility":
		field = "history_visibility"
	default:
		return nil
	}
	var ev struct {
		Content map[string]json.RawMessage `json:"content"`
	}
	if json.Unmarshal(eventJSON, &ev) != nil {
		return nil
	}
	var v string
	if json.Unmarshal(ev.Content[field], &v) != nil {
		return nil
	}
	return v
}

func contentOf(eventJSON []byte) []byte {
	var ev struct {
		Content json.RawMessage `json:"content"`
	}
	json.Unmarshal(eventJSON, &ev)
	return ev.Content
}

// extendCurrentState applies one state event to the room's current state:
// a delta snapshot over the current one, or a full copy once the chain is
// long, and the current_state row.
func (tx *Tx) extendCurrentState(ctx context.Context, roomNID int64, room roomSnapshot, key StateKey, nid, pos int64) (int64, error) {
	entries, parent, chain := map[StateKey]int64{key: nid}, room.snapshot, room.chainLen+1
	if room.snapshot == 0 || room.chainLen >= maxChainLen {
		full, err := readSnapshot(ctx, tx.q(), room.snapshot)
		if err != nil {
			return 0, err
		}
		full[key] = nid
		entries, parent, chain = full, 0, 0
	}
	snap, err := tx.InsertSnapshot(ctx, roomNID, parent, chain, entries)
	if err != nil {
		return 0, err
	}
	if err := tx.setCurrentStateFromEvent(ctx, roomNID, key, nid, pos); err != nil {
		return 0, err
	}
	return snap, nil
}

// deltaSnapshot stores the state of snapshot parent with the given entries
// changed: a delta over it, or a full copy once its chain is long.
func (tx *Tx) deltaSnapshot(ctx context.Context, roomNID, parent int64, changed map[StateKey]string) (int64, error) {
	nids, err := tx.eventNIDs(ctx, changed, "", 0)
	if err != nil {
		return 0, err
	}
	var chainLen int
	if err := tx.q().QueryRowContext(ctx, `SELECT chain_len FROM state_snapshots WHERE snapshot_nid = $1`, parent).Scan(&chainLen); err != nil {
		return 0, fmt.Errorf("reading snapshot %d: %w", parent, err)
	}
	if chainLen >= maxChainLen {
		full, err := readSnapshot(ctx, tx.q(), parent)
		if err != nil {
			return 0, err
		}
		for k, nid := range nids {
			full[k] = nid
		}
		return tx.InsertSnapshot(ctx, roomNID, 0, 0, full)
	}
	return tx.InsertSnapshot(ctx, roomNID, parent, chainLen+1, nids)
}

// replaceCurrentState stores a resolved current state as a full snapshot
// and brings current_state in line with it. selfID/selfNID name the event
// being stored in this same write.
func (tx *Tx) replaceCurrentState(ctx context.Context, roomNID, old int64, resolved map[StateKey]string, selfID string, selfNID, pos int64) (int64, error) {
	nids, err := tx.eventNIDs(ctx, resolved, selfID, selfNID)
	if err != nil {
		return 0, err
	}
	snap, err := tx.InsertSnapshot(ctx, roomNID, 0, 0, nids)
	if err != nil {
		return 0, err
	}
	before, err := readSnapshot(ctx, tx.q(), old)
	if err != nil {
		return 0, err
	}
	for key, nid := range nids {
		if before[key] == nid {
			continue
		}
		if err := tx.setCurrentStateFromEvent(ctx, roomNID, key, nid, pos); err != nil {
			return 0, err
		}
	}
	for key := range before {
		if _, ok := nids[key]; !ok {
			if err := tx.DeleteCurrentState(ctx, roomNID, key); err != nil {
				return 0, err
			}
		}
	}
	return snap, nil
}

// setCurrentStateFromEvent is SetCurrentState with the membership read
// from the stored event.
func (tx *Tx) setCurrentStateFromEvent(ctx context.Context, roomNID int64, key StateKey, nid, pos int64) error {
	err := tx.execLater(ctx, `INSERT INTO current_state (room_nid, type, state_key, event_nid, membership, stream_pos)
		SELECT $1, $2, $3, $4, CASE WHEN $2 = 'm.room.member' THEN state_value END, $5 FROM events WHERE event_nid = $4
		ON CONFLICT (room_nid, type, state_key) DO UPDATE SET event_nid = excluded.event_nid,
			membership = excluded.membership, stream_pos = excluded.stream_pos`,
		roomNID, key.Type, key.StateKey, nid, pos)
	if err != nil {
		return fmt.Errorf("updating current state: %w", err)
	}
	return nil
}

// eventNIDs maps state given as event IDs to event NIDs; selfID/selfNID
// name an event inserted in this same write.
func (tx *Tx) eventNIDs(ctx context.Context, state map[StateKey]string, selfID string, selfNID int64) (map[StateKey]int64, error) {
	ids := make([]string, 0, len(state))
	for _, id := range state {
		if id != selfID {
			ids = append(ids, id)
		}
	}
	found, err := tx.EventNIDs(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[StateKey]int64, len(state))
	for key, id := range state {
		nid, ok := found[id]
		if id == selfID && selfID != "" {
			nid, ok = selfNID, true
		}
		if !ok {
			return nil, fmt.Errorf("state event %s is not stored", id)
		}
		out[key] = nid
	}
	return out, nil
}

// updateRoomHead records a room's current snapshot and, when head is not
// nil, its forward extremities and depth.
func (tx *Tx) updateRoomHead(ctx context.Context, roomNID, snapshot int64, head *RoomHead) error {
	if head == nil {
		err := tx.execLater(ctx, `UPDATE rooms SET state_snapshot = $2 WHERE room_nid = $1`, roomNID, snapshot)
		if err != nil {
			return fmt.Errorf("updating room state: %w", err)
		}
		return nil
	}
	return tx.UpdateRoomHead(ctx, roomNID, snapshot, head.Extremities, head.MaxDepth)
}

// boolInt is a boolean column's value (booleans are stored as 0/1).
func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
