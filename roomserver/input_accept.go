package roomserver

import (
	"context"
	"errors"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

// An event that passed the checks is stored where its kind puts it:
//   - a new event that the current state refuses is soft-failed (step 6),
//     also when it arrives late;
//   - backfilled history, and "late" new events (one already named as a
//     prev event by an event we hold), get backfill positions: /messages
//     pages through them, /sync never sees them, and neither the forward
//     extremities nor the current state move;
//   - a new event that extends the forward extremities exactly moves the
//     head as a local event does; any other new event (a fork) leaves the
//     extremities it does not name in place, and the room's current state
//     becomes the resolution of the current state and the state after it.

func (rs *Roomserver) accept(ctx context.Context, r *room, in InputEvent, prior priorState, promote bool, batch *inputBatch) (InputResult, *eventWrite, error) {
	pdu := in.Event
	before, linear := prior.state, prior.linear
	w := &eventWrite{pdu: pdu, promote: promote, base: prior.base, sentByResident: in.remoteJoin}
	if sk := pdu.StateKey(); sk != nil {
		if old := before[gomatrixserverlib.StateKeyTuple{EventType: pdu.Type(), StateKey: *sk}]; old != nil {
			w.extra = replacesStateOf(old)
		}
	}
	if err := rs.remoteRedaction(ctx, r, pdu, before, w); err != nil {
		return InputResult{}, nil, err
	}
	pending, err := rs.pendingRedactionsFor(ctx, r, pdu)
	if err != nil {
		return InputResult{}, nil, err
	}
	w.pendingRedactions = pending

	// A room with no current state yet (joined with a trusted state, as
	// after send_join) has nothing to soft-fail against. A new event that
	// arrives late (another already names it as a prev event) is checked
	// too: how an event reaches us must not spare it the check.
	if _, hasState := r.ref(spec.MRoomCreate, ""); in.Kind == KindNew && !linear && hasState && !in.remoteJoin {
		refused, err := rs.softFailed(ctx, r, pdu)
		if err != nil {
			return InputResult{}, nil, err
		}
		if refused != nil {
			w.placement, w.stateBefore = storage.SoftFailed, before
			w.pendingRedactions, w.redacts = nil, ""
			return InputResult{Status: StatusSoftFailed, Reason: refused.Error()}, w, nil
		}
	}
	late := false
	if in.Kind == KindNew {
		if late, err = rs.db.IsReferenced(ctx, pdu.EventID()); err != nil {
			return InputResult{}, nil, err
		}
	}
	if in.Kind == KindBackfill || late {
		w.placement, w.stateBefore = storage.Backfill, before
		return InputResult{Status: StatusAccepted}, w, nil
	}
	w.placement = storage.Timeline
	if in.StateBefore != nil && !in.remoteJoin {
		// Its state came from elsewhere: a gap before it in the timeline?
		if w.gap, err = rs.opensGap(ctx, pdu, batch); err != nil {
			return InputResult{}, nil, err
		}
	}
	if linear {
		w.extends = pdu.StateKey() != nil
		rs.applyToHead(r, pdu)
		r.extremities = []string{pdu.EventID()}
	} else if err := rs.acceptFork(ctx, r, pdu, before, w); err != nil {
		return InputResult{}, nil, err
	}
	if pdu.Depth() > r.maxDepth {
		r.maxDepth = pdu.Depth()
	}
	w.head = &storage.RoomHead{Extremities: r.extremities, MaxDepth: r.maxDepth}
	if w.push, err = rs.pushActions(ctx, r, pdu); err != nil {
		return InputResult{}, nil, err
	}
	return InputResult{Status: StatusAccepted}, w, nil
}

// acceptFork moves the head past an event that does not extend the forward
// extremities exactly (r.mu held).
func (rs *Roomserver) acceptFork(ctx context.Context, r *room, pdu gomatrixserverlib.PDU, before stateMap, w *eventWrite) error {
	w.stateBefore = before
	after := before
	if sk := pdu.StateKey(); sk != nil {
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
	current := after
	if len(extremities) > 0 {
		// Other forks remain: the room's state is the resolution of the
		// current state and this event's.
		cur, err := rs.currentState(ctx, r)
		if err != nil {
			return err
		}
		if current, err = rs.resolve(ctx, r, []stateMap{cur, after}); err != nil {
			return err
		}
	}
	w.resolved = current
	rs.replaceHeadState(r, current)
	r.extremities = append(extremities, pdu.EventID())
	return nil
}

// opensGap reports whether an event's prev events are not all in the
// timeline (held as outliers, or not at all; events of this batch count as
// held): the timeline has a gap before it.
func (rs *Roomserver) opensGap(ctx context.Context, pdu gomatrixserverlib.PDU, batch *inputBatch) (bool, error) {
	for _, id := range pdu.PrevEventIDs() {
		if st, ok := batch.status[id]; ok {
			if st == StatusOutlier {
				return true, nil
			}
			continue
		}
		e, err := rs.db.EventByID(ctx, id)
		if errors.Is(err, storage.ErrNotFound) || (err == nil && (e.RoomID != pdu.RoomID().String() || e.Status == storage.EventOutlier)) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
	return false, nil
}
