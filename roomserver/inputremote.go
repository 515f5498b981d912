package roomserver

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/roomserver/stateres"
	"matrixhs/storage"
)

// MissingEventsError names prev or auth events we do not hold; the caller
// (federation) fetches them and tries again.
type MissingEventsError struct{ EventIDs []string }

func (e *MissingEventsError) Error() string {
	return "missing events: " + strings.Join(e.EventIDs, ", ")
}

// InputOptions says how an event from elsewhere enters the room.
type InputOptions struct {
	// Outlier stores the event without state and outside the timeline
	// (auth chain and state events fetched over federation).
	Outlier bool
}

// InputResult is what became of an input event.
type InputResult struct {
	Status    int    // a storage.Event* status
	Reason    string // why it was rejected or soft-failed
	StreamPos int64  // for accepted events
}

// Input is the entry point for events that were not built here: federation
// transactions, joins and backfill. The caller has checked signatures and
// hashes. The event is authorised against its auth events, then against the
// state before it (resolved over its prev events), then against the current
// state (soft fail), as the spec's "Checks performed on receipt of a PDU"
// list them, and stored with its outcome.
func (rs *Roomserver) Input(ctx context.Context, pdu gomatrixserverlib.PDU, opts InputOptions) (InputResult, error) {
	roomID := pdu.RoomID().String()
	r, err := rs.room(ctx, roomID)
	if errors.Is(err, ErrRoomNotFound) && pdu.Type() == spec.MRoomCreate && pdu.StateKeyEquals("") {
		r, err = rs.newRoomFromCreate(pdu)
	}
	if err != nil {
		return InputResult{}, err
	}
	r.mu.Lock()
	if r.broken.Load() {
		r.mu.Unlock()
		return rs.Input(ctx, pdu, opts)
	}
	// Everything this room queued must be readable before we look events up.
	if r.pending != nil {
		if err := r.pending(); err != nil {
			r.mu.Unlock()
			return InputResult{}, err
		}
	}
	res, wait, err := rs.input(ctx, r, pdu, opts)
	r.mu.Unlock()
	if err != nil {
		return InputResult{}, err
	}
	if wait != nil {
		if err := wait(); err != nil {
			return InputResult{}, err
		}
	}
	return res, nil
}

func (rs *Roomserver) newRoomFromCreate(create gomatrixserverlib.PDU) (*room, error) {
	ver, err := gomatrixserverlib.GetRoomVersion(create.Version())
	if err != nil {
		return nil, ErrUnsupportedVersion
	}
	r := &room{id: create.RoomID().String(), version: ver, state: stateMap{}}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if cur, ok := rs.rooms[r.id]; ok {
		return cur, nil
	}
	rs.rooms[r.id] = r
	return r, nil
}

func (rs *Roomserver) input(ctx context.Context, r *room, pdu gomatrixserverlib.PDU, opts InputOptions) (InputResult, func() error, error) {
	if existing, err := rs.db.EventByID(ctx, pdu.EventID()); err == nil {
		return InputResult{Status: existing.Status, StreamPos: existing.StreamPos}, nil, nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return InputResult{}, nil, err
	}
	reject := func(status int, reason error) (InputResult, func() error, error) {
		w := &eventWrite{pdu: pdu, status: status}
		wait, _ := rs.enqueue(ctx, r, w)
		return InputResult{Status: status, Reason: reason.Error()}, wait, nil
	}

	// 1. Authorised by its own auth events?
	authEvents, err := rs.loadEvents(ctx, r, pdu.AuthEventIDs())
	if err != nil {
		return InputResult{}, nil, err
	}
	if create := rs.createEvent(ctx, r); create != nil {
		authEvents = append(authEvents, create)
	}
	provider, err := gomatrixserverlib.NewAuthEvents(authEvents)
	if err != nil {
		return reject(storage.EventRejected, err)
	}
	if err := gomatrixserverlib.Allowed(pdu, provider, userIDForSender); err != nil {
		return reject(storage.EventRejected, err)
	}
	if opts.Outlier {
		return reject(storage.EventOutlier, errors.New("stored as outlier"))
	}

	// 2. Authorised by the state before it?
	before, linear, err := rs.stateBefore(ctx, r, pdu)
	if err != nil {
		return InputResult{}, nil, err
	}
	if err := allowedBy(pdu, before); err != nil {
		return reject(storage.EventRejected, err)
	}
	// 3. Soft fail: refused by the room's current state.
	if !linear {
		if err := allowedBy(pdu, r.state); err != nil {
			w := &eventWrite{pdu: pdu, status: storage.EventSoftFailed, stateBefore: before}
			wait, _ := rs.enqueue(ctx, r, w)
			return InputResult{Status: storage.EventSoftFailed, Reason: err.Error()}, wait, nil
		}
	}

	// Accepted: work out the new head.
	w := &eventWrite{pdu: pdu, status: storage.EventAccepted}
	after := before
	if sk := pdu.StateKey(); sk != nil {
		w.extra = replacesState(before, pdu)
		after = cloneState(before)
		after[gomatrixserverlib.StateKeyTuple{EventType: pdu.Type(), StateKey: *sk}] = pdu
	}
	prevs := map[string]bool{}
	for _, id := range pdu.PrevEventIDs() {
		prevs[id] = true
	}
	var extremities []string
	for _, id := range r.extremities {
		if !prevs[id] {
			extremities = append(extremities, id)
		}
	}
	if linear {
		r.state = after
	} else {
		w.stateBefore = before
		current := after
		if len(extremities) > 0 {
			// Other forks remain: the room's state is the resolution of
			// the current state and this event's.
			if current, err = rs.resolve(ctx, r, []stateMap{r.state, after}); err != nil {
				return InputResult{}, nil, err
			}
		}
		w.newCurrent = current
		r.state = current
	}
	r.applyRedactionToState(pdu)
	r.extremities = append(extremities, pdu.EventID())
	if pdu.Depth() > r.maxDepth {
		r.maxDepth = pdu.Depth()
	}
	w.extremities, w.depth = r.extremities, r.maxDepth
	w.push = rs.pushActions(ctx, r, pdu)
	wait, pos := rs.enqueue(ctx, r, w)
	return InputResult{Status: storage.EventAccepted}, func() error {
		if err := wait(); err != nil {
			return err
		}
		_ = pos
		return nil
	}, nil
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

// createEvent returns the room's create event (needed for auth in v12
// rooms, where auth_events leave it out).
func (rs *Roomserver) createEvent(ctx context.Context, r *room) gomatrixserverlib.PDU {
	if c := r.stateEvent(spec.MRoomCreate, ""); c != nil {
		return c
	}
	if r.version.DomainlessRoomIDs() {
		evs, err := rs.loadEvents(ctx, r, []string{"$" + strings.TrimPrefix(r.id, "!")})
		if err == nil && len(evs) == 1 {
			return evs[0]
		}
	}
	return nil
}

// loadEvents loads stored events of the room by ID; any missing is a
// MissingEventsError.
func (rs *Roomserver) loadEvents(ctx context.Context, r *room, ids []string) ([]gomatrixserverlib.PDU, error) {
	stored, err := rs.db.EventsByID(ctx, ids)
	if err != nil {
		return nil, err
	}
	found := map[string]bool{}
	out := make([]gomatrixserverlib.PDU, 0, len(stored))
	for i := range stored {
		e := &stored[i]
		if e.RoomID != r.id || e.Status == storage.EventRejected {
			continue
		}
		pdu, err := parseStored(r.version, e)
		if err != nil {
			return nil, err
		}
		found[e.EventID] = true
		out = append(out, pdu)
	}
	var missing []string
	for _, id := range ids {
		if !found[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		return nil, &MissingEventsError{EventIDs: missing}
	}
	return out, nil
}

// stateBefore is the state before pdu: the current state when pdu extends
// exactly the room's forward extremities (linear), else the resolution of
// the states after each of its prev events.
func (rs *Roomserver) stateBefore(ctx context.Context, r *room, pdu gomatrixserverlib.PDU) (stateMap, bool, error) {
	prevs := pdu.PrevEventIDs()
	if sameSet(prevs, r.extremities) {
		return cloneState(r.state), true, nil
	}
	if len(prevs) == 0 {
		return stateMap{}, false, nil // only a create event has no prev events
	}
	stored, err := rs.db.EventsByID(ctx, prevs)
	if err != nil {
		return nil, false, err
	}
	if len(stored) != len(prevs) {
		have := map[string]bool{}
		for _, e := range stored {
			have[e.EventID] = true
		}
		var missing []string
		for _, id := range prevs {
			if !have[id] {
				missing = append(missing, id)
			}
		}
		return nil, false, &MissingEventsError{EventIDs: missing}
	}
	var sets []stateMap
	for i := range stored {
		e := &stored[i]
		if e.Status == storage.EventOutlier || e.Status == storage.EventRejected {
			return nil, false, &MissingEventsError{EventIDs: []string{e.EventID}}
		}
		st, err := rs.stateAfter(ctx, r, e)
		if err != nil {
			return nil, false, err
		}
		sets = append(sets, st)
	}
	if len(sets) == 1 {
		return sets[0], false, nil
	}
	resolved, err := rs.resolve(ctx, r, sets)
	return resolved, false, err
}

// stateAfter loads the state after a stored event.
func (rs *Roomserver) stateAfter(ctx context.Context, r *room, e *storage.Event) (stateMap, error) {
	nids, err := rs.db.Snapshot(ctx, e.StateBefore)
	if err != nil {
		return nil, err
	}
	ids := make([]int64, 0, len(nids))
	for _, n := range nids {
		ids = append(ids, n)
	}
	events, err := rs.db.EventsByNID(ctx, ids)
	if err != nil {
		return nil, err
	}
	st := make(stateMap, len(events)+1)
	for i := range events {
		pdu, err := parseStored(r.version, &events[i])
		if err != nil {
			return nil, err
		}
		st[gomatrixserverlib.StateKeyTuple{EventType: pdu.Type(), StateKey: *pdu.StateKey()}] = pdu
	}
	if e.StateKey != nil && e.Status == storage.EventAccepted {
		pdu, err := parseStored(r.version, e)
		if err != nil {
			return nil, err
		}
		st[gomatrixserverlib.StateKeyTuple{EventType: e.Type, StateKey: *e.StateKey}] = pdu
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
	resolved, err := resolveConflicts(ctx, r.version, stateSets, chain)
	if err != nil {
		return nil, fmt.Errorf("state resolution: %w", err)
	}
	out := make(stateMap, len(resolved))
	for _, ev := range resolved {
		out[gomatrixserverlib.StateKeyTuple{EventType: ev.Type(), StateKey: *ev.StateKey()}] = ev
	}
	return out, nil
}

// authChain collects the full auth chain of events (breadth first).
func (rs *Roomserver) authChain(ctx context.Context, r *room, events []gomatrixserverlib.PDU) ([]gomatrixserverlib.PDU, error) {
	seen := map[string]gomatrixserverlib.PDU{}
	queue := append([]gomatrixserverlib.PDU{}, events...)
	if create := rs.createEvent(ctx, r); create != nil {
		queue = append(queue, create)
	}
	for len(queue) > 0 {
		var want []string
		for _, ev := range queue {
			if _, ok := seen[ev.EventID()]; ok {
				continue
			}
			seen[ev.EventID()] = ev
			for _, id := range ev.AuthEventIDs() {
				if _, ok := seen[id]; !ok {
					want = append(want, id)
				}
			}
		}
		queue = nil
		if len(want) > 0 {
			loaded, err := rs.loadEvents(ctx, r, dedupe(want))
			if err != nil {
				return nil, err
			}
			queue = loaded
		}
	}
	out := make([]gomatrixserverlib.PDU, 0, len(seen))
	for _, ev := range seen {
		out = append(out, ev)
	}
	return out, nil
}

func dedupe(ids []string) []string {
	seen := map[string]bool{}
	out := ids[:0:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
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

// resolveConflicts runs the room version's state resolution (our own, in
// roomserver/stateres). Auth events it lacks are reported as missing, for
// the caller to fetch.
func resolveConflicts(ctx context.Context, ver gomatrixserverlib.IRoomVersion, stateSets [][]gomatrixserverlib.PDU, chain []gomatrixserverlib.PDU) ([]gomatrixserverlib.PDU, error) {
	resolved, err := stateres.Resolve(ctx, ver, stateres.Input{StateSets: stateSets, AuthEvents: chain})
	var missing *stateres.MissingEventsError
	if errors.As(err, &missing) {
		return nil, &MissingEventsError{EventIDs: missing.EventIDs}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStateResolution, err)
	}
	return resolved, nil
}
