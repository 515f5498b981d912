package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

// stateAtMissingPrevs is the state before a pulled event whose prev events
// are not all in the timeline, as Synapse computes it: the state after each
// prev event held, and for each other one the state after it as the origin
// tells (stateAfterRemote), resolved together. It is returned as event IDs,
// for InputEvent.StateBefore. The event does not become the room's only
// forward extremity on this state alone: accepting it resolves it with the
// room's current state.
func (rs *Roomserver) stateAtMissingPrevs(ctx context.Context, f Fetcher, in InputEvent) ([]string, error) {
	pdu := in.Event
	r, err := rs.room(ctx, pdu.RoomID().String())
	if err != nil {
		return nil, err
	}
	var sets []stateMap
	for _, id := range dedupe(pdu.PrevEventIDs()) {
		st, err := rs.stateAfterPrev(ctx, f, in.Origin, r, pdu, id)
		if err != nil {
			return nil, err
		}
		sets = append(sets, st)
	}
	if len(sets) == 0 {
		return nil, fmt.Errorf("event %s has no prev events", pdu.EventID())
	}
	state := sets[0]
	if len(sets) > 1 {
		if state, err = rs.resolve(ctx, r, sets); err != nil {
			return nil, err
		}
	}
	ids := make([]string, 0, len(state))
	for _, ev := range state {
		ids = append(ids, ev.EventID())
	}
	sort.Strings(ids)
	return ids, nil
}

// stateAfterPrev is the state after one prev event: from what the room
// holds when it is in the timeline, else from the origin.
func (rs *Roomserver) stateAfterPrev(ctx context.Context, f Fetcher, origin spec.ServerName, r *room, of gomatrixserverlib.PDU, id string) (stateMap, error) {
	e, err := rs.db.EventByID(ctx, id)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	if err == nil && e.RoomID == r.id && e.Status != storage.EventOutlier {
		st, _, err := rs.stateAfterHeld(ctx, r, e, nil, 0)
		var ms *MissingStateError
		if !errors.As(err, &ms) {
			return st, err
		}
	}
	return rs.stateAfterRemote(ctx, f, origin, r, of, id)
}

// stateAfterRemote asks origin for the state at a prev event this server
// lacks (/state_ids: the state before it), fetches what of that state, its
// auth chain and the event itself is not held (one /state request when a
// tenth or more is missing, else /event for each), and returns the state
// after the event: that state plus the event when it is a state event.
// State events that could not be fetched are left out, as Synapse does; the
// prev event itself must be had.
func (rs *Roomserver) stateAfterRemote(ctx context.Context, f Fetcher, origin spec.ServerName, r *room, of gomatrixserverlib.PDU, prevID string) (stateMap, error) {
	stateIDs, chain, err := f.StateIDs(ctx, origin, r.id, prevID)
	if err != nil {
		return nil, fmt.Errorf("fetching the state at %s: %w", prevID, err)
	}
	all := dedupe(append(append(append([]string{}, chain...), stateIDs...), prevID))
	var missing []string
	for _, id := range all {
		if _, _, err := rs.eventOfRoom(ctx, r, id); errors.Is(err, storage.ErrNotFound) {
			missing = append(missing, id)
		} else if err != nil {
			return nil, err
		}
	}
	if err := rs.fetchOutliers(ctx, f, origin, r, of, prevID, missing, len(stateIDs)+len(chain)); err != nil {
		return nil, err
	}
	st := make(stateMap, len(stateIDs)+1)
	add := func(id string) (bool, error) {
		ev, status, err := rs.eventOfRoom(ctx, r, id)
		if errors.Is(err, storage.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if sk := ev.StateKey(); sk != nil && status != StatusRejected {
			st[gomatrixserverlib.StateKeyTuple{EventType: ev.Type(), StateKey: *sk}] = ev
		}
		return true, nil
	}
	for _, id := range stateIDs {
		if _, err := add(id); err != nil {
			return nil, err
		}
	}
	held, err := add(prevID)
	if err != nil {
		return nil, err
	}
	if !held {
		return nil, fmt.Errorf("unable to get missing prev event %s", prevID)
	}
	return st, nil
}

// fetchOutliers fetches the missing events of the state at an event (of
// total state and auth chain events) from origin and stores them as
// outliers of of's room. Events that cannot be fetched are left out.
func (rs *Roomserver) fetchOutliers(ctx context.Context, f Fetcher, origin spec.ServerName, r *room, of gomatrixserverlib.PDU, at string, missing []string, total int) error {
	if len(missing) == 0 {
		return nil
	}
	// Many events missing (a tenth or more, as Synapse reckons): one /state
	// request rather than an /event request each.
	if sf, ok := f.(StateFetcher); ok && len(missing) > 1 && len(missing)*10 >= total {
		stateRaw, chainRaw, err := sf.State(ctx, origin, r.id, at)
		if err == nil {
			if err := rs.inputFetchedOutliers(ctx, origin, of, append(chainRaw, stateRaw...), missing); err != nil {
				return err
			}
			still := missing[:0]
			for _, id := range missing {
				if _, _, err := rs.eventOfRoom(ctx, r, id); errors.Is(err, storage.ErrNotFound) {
					still = append(still, id)
				}
			}
			missing = still
		}
	}
	var raw []json.RawMessage
	for _, id := range missing {
		ev, err := f.Event(ctx, origin, r.id, id)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			continue // as Synapse: what could not be fetched is left out
		}
		raw = append(raw, ev)
	}
	return rs.inputOutliers(ctx, origin, of, raw)
}
