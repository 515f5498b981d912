package roomserver

import (
	"context"
	"errors"
	"fmt"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/roomserver/stateres"
	"matrixhs/storage"
)

// Step 5: the event must pass the auth rules against the state before it.
// That state is, in order of preference: the trusted state the caller
// gives (send_join, /state_ids); the room's current state when the event
// extends exactly the room's forward extremities (linear); otherwise the
// state after each prev event, resolved with the room version's state
// resolution when there are several.

// priorState is the state before an event as the checks found it.
type priorState struct {
	state stateMap
	// linear: it is the room's current state, and only the entries the
	// checks read are loaded (the head, not the map, is what moves on).
	linear bool
	// base, when not nil, is how state derives from a stored snapshot.
	base *stateBase
}

// stateBase is a state as a stored snapshot, with at most one state event
// on top: the state after a prev event, for storing the state before the
// event as that snapshot or a delta over it (not a copy of the room's
// whole state per event).
type stateBase struct {
	// snapshot is a stored snapshot; when write is set, it is instead the
	// snapshot that write (of an earlier event of the same hold) stores as
	// its state before, known once it ran.
	snapshot int64
	write    *eventWrite
	// added is a state event on top of it (nil: none).
	added gomatrixserverlib.PDU
}

// stored is the snapshot and the entries changed over it; it runs on the
// storage writer goroutine, after the writes queued before.
func (b *stateBase) stored() (int64, map[storage.StateKey]string) {
	snap := b.snapshot
	if b.write != nil {
		snap = b.write.stored.StateBefore
	}
	if b.added == nil {
		return snap, nil
	}
	return snap, map[storage.StateKey]string{{Type: b.added.Type(), StateKey: *b.added.StateKey()}: b.added.EventID()}
}

// stateBefore returns the state before the event. The map may be shared
// with other events of the batch: callers must not change it.
func (rs *Roomserver) stateBefore(ctx context.Context, r *room, in InputEvent, batch *inputBatch) (priorState, error) {
	pdu := in.Event
	if in.StateBefore != nil {
		st, err := rs.trustedState(ctx, r, pdu.EventID(), in.StateBefore)
		return priorState{state: st}, err
	}
	prevs := pdu.PrevEventIDs()
	if in.Kind == KindNew && len(prevs) > 0 && sameSet(prevs, r.extremities) {
		st, err := rs.currentStateFor(ctx, r, pdu)
		return priorState{state: st, linear: true}, err
	}
	if len(prevs) == 0 {
		return priorState{state: stateMap{}}, nil // only a create event has no prev events
	}
	var sets []stateMap
	var bases []*stateBase
	var missing, stateless []string
	for _, id := range dedupe(prevs) {
		if w, ok := batch.writes[id]; ok && w.stateBefore != nil && !batch.redacted {
			// A prev event of this batch stored with its full state
			// before (backfill, a fork): the state after it is at hand.
			st, base := stateAfterWrite(w, batch.status[id])
			sets, bases = append(sets, st), append(bases, base)
			continue
		}
		if _, ok := batch.status[id]; ok && r.pending != nil {
			// Another prev event of this batch: its state is read back
			// once its write is in.
			if err := r.pending(); err != nil {
				return priorState{}, err
			}
		}
		e, err := rs.db.EventByID(ctx, id)
		if errors.Is(err, storage.ErrNotFound) || (err == nil && e.RoomID != r.id) {
			missing = append(missing, id)
			continue
		}
		if err != nil {
			return priorState{}, err
		}
		if e.Status == storage.EventOutlier {
			stateless = append(stateless, id)
			continue
		}
		st, base, err := rs.stateAfterHeld(ctx, r, e, batch, 0)
		var ms *MissingStateError
		if errors.As(err, &ms) {
			stateless = append(stateless, id)
			continue
		}
		if err != nil {
			return priorState{}, err
		}
		sets, bases = append(sets, st), append(bases, base)
	}
	if len(missing) > 0 {
		return priorState{}, &MissingPrevEventsError{EventID: pdu.EventID(), Missing: missing}
	}
	if len(stateless) > 0 {
		return priorState{}, &MissingStateError{EventID: pdu.EventID(), Events: stateless}
	}
	if len(sets) == 1 {
		return priorState{state: sets[0], base: bases[0]}, nil
	}
	resolved, err := rs.resolve(ctx, r, sets)
	return priorState{state: resolved}, err
}

// stateAfterWrite is the state after an event queued in this batch with
// its state before: that state, and the event itself when it is accepted
// or soft-failed state (as stateAfter).
func stateAfterWrite(w *eventWrite, status EventStatus) (stateMap, *stateBase) {
	base := &stateBase{write: w}
	sk := w.pdu.StateKey()
	if sk == nil || (status != StatusAccepted && status != StatusSoftFailed) {
		return w.stateBefore, base
	}
	st := cloneState(w.stateBefore)
	st[gomatrixserverlib.StateKeyTuple{EventType: w.pdu.Type(), StateKey: *sk}] = w.pdu
	base.added = w.pdu
	return st, base
}

// currentStateFor loads the part of the current state that checking and
// accepting pdu reads.
func (rs *Roomserver) currentStateFor(ctx context.Context, r *room, pdu gomatrixserverlib.PDU) (stateMap, error) {
	tuples := gomatrixserverlib.StateNeededForAuth([]gomatrixserverlib.PDU{pdu}).Tuples()
	tuples = append(tuples, gomatrixserverlib.StateKeyTuple{EventType: spec.MRoomCreate},
		gomatrixserverlib.StateKeyTuple{EventType: spec.MRoomPowerLevels})
	if sk := pdu.StateKey(); sk != nil {
		tuples = append(tuples, gomatrixserverlib.StateKeyTuple{EventType: pdu.Type(), StateKey: *sk})
	}
	st := make(stateMap, len(tuples))
	for _, t := range tuples {
		ref, ok := r.state[t]
		if !ok {
			continue
		}
		ev, err := rs.loadEvent(ctx, r, ref.id)
		if err != nil {
			return nil, err
		}
		st[t] = ev
	}
	return st, nil
}

// trustedState loads a state given as event IDs; each must be stored (as
// an outlier at least) and be a state event of the room.
func (rs *Roomserver) trustedState(ctx context.Context, r *room, eventID string, ids []string) (stateMap, error) {
	st := make(stateMap, len(ids))
	var missing []string
	for _, id := range ids {
		ev, status, err := rs.eventOfRoom(ctx, r, id)
		if errors.Is(err, storage.ErrNotFound) {
			missing = append(missing, id)
			continue
		}
		if err != nil {
			return nil, err
		}
		if status == StatusRejected || ev.StateKey() == nil {
			continue // not state: ignored, as a rejected event is
		}
		t := gomatrixserverlib.StateKeyTuple{EventType: ev.Type(), StateKey: *ev.StateKey()}
		if _, dup := st[t]; dup {
			return nil, fmt.Errorf("trusted state for %s names two events for (%s, %s)", eventID, t.EventType, t.StateKey)
		}
		st[t] = ev
	}
	if len(missing) > 0 {
		return nil, &MissingStateError{EventID: eventID, Events: missing}
	}
	return st, nil
}

// stateAfter loads the state after a stored event of the DAG (the map may
// be shared within the batch). A soft-failed event is part of it like any
// other: the state after it includes it (events that build on it are judged
// at their place in the DAG, and their own soft-fail check keeps the current
// state safe).
func (rs *Roomserver) stateAfter(ctx context.Context, r *room, e *storage.Event, batch *inputBatch) (stateMap, *stateBase, error) {
	var st stateMap
	ok := false
	if batch != nil {
		st, ok = batch.snapshots[e.StateBefore]
	}
	if !ok {
		var err error
		if st, err = rs.snapshotState(ctx, r, e.StateBefore); err != nil {
			return nil, nil, err
		}
		if batch != nil && !batch.redacted {
			batch.snapshots[e.StateBefore] = st
		}
	}
	base := &stateBase{snapshot: e.StateBefore}
	if e.StateKey != nil && (e.Status == storage.EventAccepted || e.Status == storage.EventSoftFailed) {
		pdu, err := rs.loadEvent(ctx, r, e.EventID)
		if err != nil {
			return nil, nil, err
		}
		st = cloneState(st)
		st[gomatrixserverlib.StateKeyTuple{EventType: e.Type, StateKey: *e.StateKey}] = pdu
		base.added = pdu
	}
	return st, base, nil
}

// maxRejectedChain bounds how many rejected events stateAfterHeld walks
// back through.
const maxRejectedChain = 16

// stateAfterHeld is the state after a stored timeline event. A rejected
// event changes no state, and is stored without one: the state after it is
// the state before it, the (resolved) state after its own prev events, as
// Synapse keeps it. Prev events held without state make it a
// MissingStateError.
func (rs *Roomserver) stateAfterHeld(ctx context.Context, r *room, e *storage.Event, batch *inputBatch, depth int) (stateMap, *stateBase, error) {
	if e.Status != storage.EventRejected {
		return rs.stateAfter(ctx, r, e, batch)
	}
	pdu, err := rs.loadEvent(ctx, r, e.EventID)
	if err != nil {
		return nil, nil, err
	}
	stateless := &MissingStateError{EventID: e.EventID}
	if depth >= maxRejectedChain {
		return nil, nil, stateless
	}
	var sets []stateMap
	var bases []*stateBase
	for _, id := range dedupe(pdu.PrevEventIDs()) {
		prev, err := rs.db.EventByID(ctx, id)
		if errors.Is(err, storage.ErrNotFound) || (err == nil && (prev.RoomID != r.id || prev.Status == storage.EventOutlier)) {
			stateless.Events = append(stateless.Events, id)
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		st, base, err := rs.stateAfterHeld(ctx, r, prev, batch, depth+1)
		if err != nil {
			return nil, nil, err
		}
		sets, bases = append(sets, st), append(bases, base)
	}
	if len(stateless.Events) > 0 || len(sets) == 0 {
		return nil, nil, stateless
	}
	if len(sets) == 1 {
		return sets[0], bases[0], nil
	}
	st, err := rs.resolve(ctx, r, sets)
	return st, nil, err
}

// snapshotState loads the events of a stored state snapshot.
func (rs *Roomserver) snapshotState(ctx context.Context, r *room, snapshot int64) (stateMap, error) {
	refs, err := rs.db.SnapshotRefs(ctx, snapshot)
	if err != nil {
		return nil, err
	}
	st := make(stateMap, len(refs)+1)
	for k, ref := range refs {
		pdu, err := rs.loadEvent(ctx, r, ref.EventID)
		if err != nil {
			return nil, err
		}
		st[gomatrixserverlib.StateKeyTuple{EventType: k.Type, StateKey: k.StateKey}] = pdu
	}
	return st, nil
}

// resolve runs the room version's state resolution over state sets.
func (rs *Roomserver) resolve(ctx context.Context, r *room, sets []stateMap) (stateMap, error) {
	stateSets := make([][]gomatrixserverlib.PDU, 0, len(sets))
	var all []gomatrixserverlib.PDU
	for _, set := range sets {
		list := make([]gomatrixserverlib.PDU, 0, len(set))
		for _, ev := range set {
			list = append(list, ev)
		}
		stateSets = append(stateSets, list)
		all = append(all, list...)
	}
	chain, err := rs.authChain(ctx, r, all)
	if err != nil {
		return nil, err
	}
	resolved, err := rs.resolveConflicts(ctx, r, stateSets, chain)
	if err != nil {
		return nil, fmt.Errorf("state resolution: %w", err)
	}
	out := make(stateMap, len(resolved))
	for _, ev := range resolved {
		out[gomatrixserverlib.StateKeyTuple{EventType: ev.Type(), StateKey: *ev.StateKey()}] = ev
	}
	return out, nil
}

// resolveConflicts runs the room version's state resolution (our own, in
// roomserver/stateres). Auth events it lacks are loaded from the room, and
// reported as missing when the room does not hold them, for the caller to
// fetch.
func (rs *Roomserver) resolveConflicts(ctx context.Context, r *room, stateSets [][]gomatrixserverlib.PDU, chain []gomatrixserverlib.PDU) ([]gomatrixserverlib.PDU, error) {
	resolved, err := stateres.Resolve(ctx, r.version, stateres.Input{StateSets: stateSets, AuthEvents: chain, Loader: roomLoader{rs, r}})
	var missing *stateres.MissingEventsError
	if errors.As(err, &missing) {
		return nil, &MissingAuthEventsError{Missing: missing.EventIDs}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStateResolution, err)
	}
	return resolved, nil
}

// roomLoader loads a room's events for state resolution.
type roomLoader struct {
	rs *Roomserver
	r  *room
}

func (l roomLoader) LoadEvents(ctx context.Context, ids []string) ([]gomatrixserverlib.PDU, error) {
	out := make([]gomatrixserverlib.PDU, 0, len(ids))
	var missing []string
	for _, id := range ids {
		pdu, _, err := l.rs.eventOfRoom(ctx, l.r, id)
		if errors.Is(err, storage.ErrNotFound) {
			missing = append(missing, id)
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, pdu)
	}
	if len(missing) > 0 {
		return nil, &stateres.MissingEventsError{EventIDs: missing}
	}
	return out, nil
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]bool{}
	for _, x := range a {
		m[x] = true
	}
	for _, x := range b {
		if !m[x] {
			return false
		}
	}
	return true
}
