package roomserver

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

// Events from elsewhere (federation transactions, joins, backfill, fetched
// auth chains and state) enter through Input. Each event passes the spec's
// "checks performed on receipt of a PDU", one file per step:
//
//	input_verify.go    signatures (1-3: the caller parsed it, which checks
//	                   the format and content hash)
//	input_auth.go      4. authorised by its auth events, else rejected
//	input_state.go     5. authorised by the state before it, else rejected
//	input_softfail.go  6. authorised by the room's current state, else soft-failed
//	input_accept.go    the accepted event moves the room's head
//
// fetch.go, beside the pipeline, fills the gaps that the missing-event
// errors report, through a Fetcher (federation plugs in its client).

// InputKind says how an event from elsewhere enters the room.
type InputKind int

const (
	// KindNew is a timeline event: it may extend the room's DAG, move its
	// current state and reach clients through /sync.
	KindNew InputKind = iota
	// KindOutlier is stored without state and outside the timeline (auth
	// chains and state fetched over federation); it may be promoted when it
	// later arrives as KindNew or KindBackfill.
	KindOutlier
	// KindBackfill is history older than what the room holds: it is paged
	// through /messages but never reaches /sync, the forward extremities or
	// the current state.
	KindBackfill
)

// InputEvent is one event for Input.
type InputEvent struct {
	Kind  InputKind
	Event gomatrixserverlib.PDU
	// Origin is the server it came from (fetches go there).
	Origin spec.ServerName
	// StateBefore, when not nil, is the trusted state before the event as
	// the IDs of stored events (the send_join and /state_ids case).
	StateBefore []string
	// remoteJoin marks a local user's join from send_join: the room moved
	// on without this server, so its current state here is no reason to
	// soft-fail the join.
	remoteJoin bool
	// verified: an earlier pass checked its signatures (it then lacked
	// events); InputFetching sets it when it inputs the event again.
	verified bool
}

// EventStatus is what became of an input event.
type EventStatus int

// Event statuses, as storage keeps them.
const (
	StatusAccepted   EventStatus = storage.EventAccepted
	StatusOutlier    EventStatus = storage.EventOutlier
	StatusRejected   EventStatus = storage.EventRejected
	StatusSoftFailed EventStatus = storage.EventSoftFailed
)

func (s EventStatus) String() string {
	switch s {
	case StatusAccepted:
		return "accepted"
	case StatusOutlier:
		return "outlier"
	case StatusRejected:
		return "rejected"
	case StatusSoftFailed:
		return "soft-failed"
	}
	return fmt.Sprintf("status(%d)", int(s))
}

// InputResult is the outcome for one input event. Err is set when the
// event could not be processed (missing events: it was not stored).
type InputResult struct {
	EventID   string
	Status    EventStatus
	Reason    string // why it was rejected or soft-failed
	StreamPos int64  // for accepted events
	Err       error
}

// MissingAuthEventsError: auth events the room does not hold. Fetch the
// event's auth chain and input it as outliers.
type MissingAuthEventsError struct {
	EventID string
	Missing []string
}

func (e *MissingAuthEventsError) Error() string {
	return "event " + e.EventID + " is missing auth events: " + strings.Join(e.Missing, ", ")
}

// MissingPrevEventsError: prev events the room does not hold. Fetch them
// (/get_missing_events) and input them first.
type MissingPrevEventsError struct {
	EventID string
	Missing []string
}

func (e *MissingPrevEventsError) Error() string {
	return "event " + e.EventID + " is missing prev events: " + strings.Join(e.Missing, ", ")
}

// MissingStateError: the state before the event is unknown (its prev
// events are held without state, or the trusted state names events not
// held). Fetch the state at the event (/state_ids) and input it again with
// StateBefore.
type MissingStateError struct {
	EventID string
	// Events are the prev events held without state, or the state events
	// not held.
	Events []string
}

func (e *MissingStateError) Error() string {
	return "state before event " + e.EventID + " is unknown (" + strings.Join(e.Events, ", ") + ")"
}

// Input processes events from elsewhere. Events of one room are processed
// in the order given (callers order them so prev and auth events come
// first) under one hold of the room, and their writes waited for once.
// The error return is for failures of the server itself; per-event
// outcomes, missing events included, are in the results.
func (rs *Roomserver) Input(ctx context.Context, events []InputEvent) ([]InputResult, error) {
	results := make([]InputResult, len(events))
	byRoom := map[string][]int{}
	var order []string
	for i, ev := range events {
		results[i].EventID = ev.Event.EventID()
		id := ev.Event.RoomID().String()
		if _, ok := byRoom[id]; !ok {
			order = append(order, id)
		}
		byRoom[id] = append(byRoom[id], i)
	}
	for _, roomID := range order {
		if err := rs.inputRoom(ctx, roomID, events, byRoom[roomID], results); err != nil {
			return nil, err
		}
	}
	return results, nil
}

// inputBatch is what the steps know of the events processed in one hold of
// a room: their writes are queued but not yet committed.
type inputBatch struct {
	status map[string]EventStatus
	// writes are the queued writes by event ID: an event whose prev event
	// is among them takes the state after it from its write (a chain of
	// backfilled events does not wait for each write to read it back).
	writes map[string]*eventWrite
	// snapshots are the stored snapshots read in this hold (shared: read
	// only).
	snapshots map[int64]stateMap
	// redacted is set once a write of the batch redacts an event: states
	// held in memory may hold the event unredacted, so they are read
	// afresh from then on.
	redacted bool
}

func newInputBatch() *inputBatch {
	return &inputBatch{status: map[string]EventStatus{}, writes: map[string]*eventWrite{}, snapshots: map[int64]stateMap{}}
}

func (rs *Roomserver) inputRoom(ctx context.Context, roomID string, events []InputEvent, idx []int, results []InputResult) error {
	r, err := rs.roomForInput(ctx, roomID, events[idx[0]].Event)
	if errors.Is(err, ErrRoomNotFound) {
		for _, i := range idx {
			results[i].Err = ErrRoomNotFound
		}
		return nil
	}
	if err != nil {
		return err
	}
	r.mu.Lock()
	if r.broken.Load() {
		r.mu.Unlock()
		return rs.inputRoom(ctx, roomID, events, idx, results)
	}
	// Everything this room queued must be readable before we look events up.
	if r.pending != nil {
		if err := r.pending(); err != nil {
			r.mu.Unlock()
			return err
		}
	}
	batch := newInputBatch()
	var wait func() error
	// Events of a room this server holds no state of (or rescinded
	// invites of a room it is not in) are handled after the lock.
	var outOfBand []int
	for _, i := range idx {
		if rs.isOutOfBandInput(ctx, r, events[i]) {
			outOfBand = append(outOfBand, i)
			continue
		}
		res, w, err := rs.inputOne(ctx, r, events[i], batch)
		if err != nil {
			r.mu.Unlock()
			return err
		}
		res.EventID = events[i].Event.EventID()
		results[i] = res
		if w != nil {
			wait = rs.enqueue(ctx, r, w)
			batch.writes[res.EventID] = w
			batch.status[res.EventID] = res.Status
			if w.redacts != "" || len(w.pendingRedactions) > 0 {
				batch.redacted = true
				clear(batch.snapshots)
			}
		}
	}
	r.mu.Unlock()
	if wait != nil {
		if err := wait(); err != nil {
			return err
		}
		for _, i := range idx {
			if w, ok := batch.writes[results[i].EventID]; ok {
				results[i].StreamPos = w.stored.StreamPos
			}
		}
	}
	for _, i := range outOfBand {
		results[i] = rs.inputOutOfBand(ctx, events[i])
	}
	return nil
}

// isOutOfBandInput reports whether an event cannot enter the room's DAG
// here (r.mu held): a timeline event of a room whose state this server
// does not hold (only a create event starts a room; a join's trusted
// state starts it after send_join), or the rescission of a local user's
// out-of-band invite in a room this server is not in. inputOutOfBand
// handles those.
func (rs *Roomserver) isOutOfBandInput(ctx context.Context, r *room, in InputEvent) bool {
	if in.Kind == KindOutlier || in.StateBefore != nil {
		return false
	}
	if _, ok := r.ref(spec.MRoomCreate, ""); !ok {
		return in.Event.Type() != spec.MRoomCreate || !in.Event.StateKeyEquals("")
	}
	if len(r.local) > 0 {
		return false
	}
	oob, err := rs.rescindsInvite(ctx, in.Event)
	return err == nil && oob != nil
}

// roomForInput returns the room's head; a create event brings a new room.
func (rs *Roomserver) roomForInput(ctx context.Context, roomID string, first gomatrixserverlib.PDU) (*room, error) {
	r, err := rs.room(ctx, roomID)
	if errors.Is(err, ErrRoomNotFound) && first.Type() == spec.MRoomCreate && first.StateKeyEquals("") {
		ver, err := gomatrixserverlib.GetRoomVersion(first.Version())
		if err != nil {
			return nil, ErrUnsupportedVersion
		}
		return rs.rooms.AddIfAbsent(roomID, newRoom(roomID, ver)), nil
	}
	return r, err
}

// inputOne runs the checks for one event (r.mu held) and returns its
// outcome and the write to queue (nil when nothing is stored).
func (rs *Roomserver) inputOne(ctx context.Context, r *room, in InputEvent, batch *inputBatch) (InputResult, *eventWrite, error) {
	pdu := in.Event
	if pdu.RoomID().String() != r.id {
		return InputResult{Err: fmt.Errorf("event %s is not in room %s", pdu.EventID(), r.id)}, nil, nil
	}
	promote := false
	if st, ok := batch.status[pdu.EventID()]; ok {
		return InputResult{Status: st}, nil, nil
	}
	if existing, err := rs.db.EventByID(ctx, pdu.EventID()); err == nil {
		if existing.Status != storage.EventOutlier || in.Kind == KindOutlier {
			return InputResult{Status: EventStatus(existing.Status), StreamPos: existing.StreamPos}, nil, nil
		}
		promote = true
	} else if !errors.Is(err, storage.ErrNotFound) {
		return InputResult{}, nil, err
	}
	// Signatures (steps 1-3).
	if !in.verified {
		if err := rs.verifySignatures(ctx, pdu); err != nil {
			return InputResult{Err: err}, nil, nil
		}
	}
	if err := byteLimits(pdu); err != nil {
		return rs.reject(pdu, err, promote)
	}
	// 4. Authorised by its own auth events?
	rejectedBy, err := rs.checkAuthEvents(ctx, r, pdu, batch)
	if err != nil {
		return missingOr(err)
	}
	if rejectedBy != nil {
		return rs.reject(pdu, rejectedBy, promote)
	}
	if in.Kind == KindOutlier {
		w := &eventWrite{pdu: pdu, placement: storage.Outlier}
		if w.pendingRedactions, err = rs.pendingRedactionsFor(ctx, r, pdu); err != nil {
			return InputResult{}, nil, err
		}
		return InputResult{Status: StatusOutlier}, w, nil
	}
	// 5. Authorised by the state before it?
	before, err := rs.stateBefore(ctx, r, in, batch)
	if err != nil {
		return missingOr(err)
	}
	if err := allowedBy(pdu, before.state); err != nil {
		return rs.reject(pdu, err, promote)
	}
	return rs.accept(ctx, r, in, before, promote, batch)
}

// missingOr turns a missing-events error into a per-event outcome and
// passes other errors up.
func missingOr(err error) (InputResult, *eventWrite, error) {
	var ma *MissingAuthEventsError
	var mp *MissingPrevEventsError
	var ms *MissingStateError
	if errors.As(err, &ma) || errors.As(err, &mp) || errors.As(err, &ms) || errors.Is(err, ErrUnverified) {
		return InputResult{Err: err}, nil, nil
	}
	return InputResult{}, nil, err
}

// reject stores an event as rejected, so it is neither fetched nor checked
// again and events that depend on it are rejected too.
func (rs *Roomserver) reject(pdu gomatrixserverlib.PDU, reason error, promote bool) (InputResult, *eventWrite, error) {
	if promote {
		// An outlier that fails at its place in the DAG stays an outlier:
		// its own auth chain allowed it.
		return InputResult{Status: StatusRejected, Reason: reason.Error()}, nil, nil
	}
	return InputResult{Status: StatusRejected, Reason: reason.Error()}, &eventWrite{pdu: pdu, placement: storage.Rejected}, nil
}

// maxIDBytes is the spec's limit on an event's type and state key.
const maxIDBytes = 255

// byteLimits rejects an event whose type or state key is over the spec's
// byte limit: room versions before 11 did not enforce it when parsing (it
// was counted in codepoints), so such events are stored rejected rather
// than dropped, as Synapse does.
func byteLimits(pdu gomatrixserverlib.PDU) error {
	if len(pdu.Type()) > maxIDBytes {
		return fmt.Errorf("event type is longer than %d bytes", maxIDBytes)
	}
	if sk := pdu.StateKey(); sk != nil && len(*sk) > maxIDBytes {
		return fmt.Errorf("state key is longer than %d bytes", maxIDBytes)
	}
	return nil
}

func allowedBy(pdu gomatrixserverlib.PDU, state stateMap) error {
	needed := gomatrixserverlib.StateNeededForAuth([]gomatrixserverlib.PDU{pdu})
	var events []gomatrixserverlib.PDU
	for _, t := range needed.Tuples() {
		if ev, ok := state[t]; ok {
			events = append(events, ev)
		}
	}
	if create, ok := state[gomatrixserverlib.StateKeyTuple{EventType: spec.MRoomCreate}]; ok {
		events = append(events, create)
	}
	provider, err := gomatrixserverlib.NewAuthEvents(events)
	if err != nil {
		return err
	}
	return gomatrixserverlib.Allowed(pdu, provider, userIDForSender)
}

func cloneState(s stateMap) stateMap {
	out := make(stateMap, len(s)+1)
	for k, v := range s {
		out[k] = v
	}
	return out
}
