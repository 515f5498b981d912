package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// Fetcher gets what the pipeline reports missing from another server: the
// federation client in production, a fake in tests. Events come back as
// JSON; the pipeline parses them with the room's version (checking content
// hashes) and verifies their signatures like any input.
type Fetcher interface {
	// Event fetches one event (/event).
	Event(ctx context.Context, origin spec.ServerName, roomID, eventID string) (json.RawMessage, error)
	// EventAuth fetches an event's auth chain (/event_auth).
	EventAuth(ctx context.Context, origin spec.ServerName, roomID, eventID string) ([]json.RawMessage, error)
	// MissingEvents fetches events between earliest and latest
	// (/get_missing_events), at most limit of them.
	MissingEvents(ctx context.Context, origin spec.ServerName, roomID string, earliest, latest []string, limit int) ([]json.RawMessage, error)
	// StateIDs fetches the state before an event and that state's auth
	// chain, as event IDs (/state_ids).
	StateIDs(ctx context.Context, origin spec.ServerName, roomID, eventID string) (state, authChain []string, err error)
}

// StateFetcher is a Fetcher that can also fetch the state at an event as
// whole events (/state), which takes one request where many are missing.
type StateFetcher interface {
	// State fetches the state before an event and its auth chain.
	State(ctx context.Context, origin spec.ServerName, roomID, eventID string) (state, authChain []json.RawMessage, err error)
}

// missingEventsLimit bounds one /get_missing_events request.
const missingEventsLimit = 20

// maxFetchRounds bounds how often one event is retried after fetching.
const maxFetchRounds = 4

// InputFetching is Input that fills the gaps the pipeline reports by
// fetching from the events' origins: auth chains become outliers, missing
// prev events are fetched and input first, and where the DAG cannot be
// closed the state before the event is fetched and trusted.
func (rs *Roomserver) InputFetching(ctx context.Context, f Fetcher, events []InputEvent) ([]InputResult, error) {
	return rs.inputFetching(ctx, f, events, true)
}

// inputFetching is InputFetching; withMissing says whether missing prev
// events may be fetched (not for events that were themselves fetched as
// missing: their gaps are closed with the state before them, as fetching
// further back could go on and on).
func (rs *Roomserver) inputFetching(ctx context.Context, f Fetcher, events []InputEvent, withMissing bool) ([]InputResult, error) {
	results, err := rs.Input(ctx, events)
	if err != nil {
		return nil, err
	}
	filled := false
	for i := range events {
		if results[i].Err != nil && filled {
			// A gap closed for an earlier event may have closed this
			// one's and the following ones' too (a chain whose oldest
			// event was missing a prev): try them again, together (one
			// hold of the room, one write to wait for), before fetching
			// anything.
			if err := rs.inputAgain(ctx, events, results, i); err != nil {
				return nil, err
			}
			filled = false
		}
		for round := 0; results[i].Err != nil && round < maxFetchRounds; round++ {
			in, err := rs.fillGap(ctx, f, events[i], results[i].Err, withMissing)
			if err != nil {
				results[i].Err = err
				break
			}
			filled = true
			in.verified = lacking(results[i].Err)
			res, err := rs.Input(ctx, []InputEvent{in})
			if err != nil {
				return nil, err
			}
			events[i], results[i] = in, res[0]
		}
	}
	return results, nil
}

// inputAgain inputs the events from the i-th on that lacked something,
// again in one call, and updates their results.
func (rs *Roomserver) inputAgain(ctx context.Context, events []InputEvent, results []InputResult, from int) error {
	var idx []int
	var again []InputEvent
	for j := from; j < len(events); j++ {
		if results[j].Err != nil && lacking(results[j].Err) {
			events[j].verified = true
			idx, again = append(idx, j), append(again, events[j])
		}
	}
	if len(again) == 0 {
		return nil
	}
	res, err := rs.Input(ctx, again)
	if err != nil {
		return err
	}
	for k, j := range idx {
		results[j] = res[k]
	}
	return nil
}

// lacking reports whether an input error says events were missing (which
// the pipeline finds only after the signatures checked out).
func lacking(err error) bool {
	var ma *MissingAuthEventsError
	var mp *MissingPrevEventsError
	var ms *MissingStateError
	return errors.As(err, &ma) || errors.As(err, &mp) || errors.As(err, &ms)
}

// fillGap fetches what err says is missing and returns the event to input
// again (with a trusted state when that is what it took).
func (rs *Roomserver) fillGap(ctx context.Context, f Fetcher, in InputEvent, cause error, withMissing bool) (InputEvent, error) {
	pdu := in.Event
	roomID := pdu.RoomID().String()
	var ma *MissingAuthEventsError
	var mp *MissingPrevEventsError
	var ms *MissingStateError
	switch {
	case errors.As(cause, &ma):
		raw, err := f.EventAuth(ctx, in.Origin, roomID, pdu.EventID())
		if err != nil {
			return in, fmt.Errorf("fetching auth chain of %s: %w", pdu.EventID(), err)
		}
		return in, rs.inputOutliers(ctx, in.Origin, pdu, raw)
	case errors.As(cause, &mp) && in.Kind == KindNew && withMissing:
		if filled, err := rs.fetchMissingPrevs(ctx, f, in, mp.Missing); err != nil || filled {
			return in, err
		}
		return rs.fetchStateBefore(ctx, f, in)
	case errors.As(cause, &mp), errors.As(cause, &ms):
		return rs.fetchStateBefore(ctx, f, in)
	}
	return in, cause
}

// fetchMissingPrevs fetches the events between the room's forward
// extremities and the event and inputs them oldest first; it reports
// whether every missing prev event is now held.
func (rs *Roomserver) fetchMissingPrevs(ctx context.Context, f Fetcher, in InputEvent, missing []string) (bool, error) {
	r, err := rs.room(ctx, in.Event.RoomID().String())
	if err != nil {
		return false, err
	}
	r.mu.Lock()
	earliest := append([]string(nil), r.extremities...)
	r.mu.Unlock()
	raw, err := f.MissingEvents(ctx, in.Origin, r.id, earliest, []string{in.Event.EventID()}, missingEventsLimit)
	if err != nil {
		return false, fmt.Errorf("fetching missing events before %s: %w", in.Event.EventID(), err)
	}
	pdus, err := rs.parseRemote(r.version, raw)
	if err != nil {
		return false, err
	}
	sort.SliceStable(pdus, func(i, j int) bool { return pdus[i].Depth() < pdus[j].Depth() })
	batch := make([]InputEvent, 0, len(pdus))
	for _, p := range pdus {
		batch = append(batch, InputEvent{Kind: KindNew, Event: p, Origin: in.Origin})
	}
	if _, err := rs.inputFetching(ctx, f, batch, false); err != nil {
		return false, err
	}
	for _, id := range missing {
		if _, _, err := rs.eventOfRoom(ctx, r, id); err != nil {
			return false, nil
		}
	}
	return true, nil
}

// fetchStateBefore fetches the state before the event (and its auth chain)
// from the origin, stores what is not held as outliers, and returns the
// event with that state as trusted.
func (rs *Roomserver) fetchStateBefore(ctx context.Context, f Fetcher, in InputEvent) (InputEvent, error) {
	roomID := in.Event.RoomID().String()
	state, chain, err := f.StateIDs(ctx, in.Origin, roomID, in.Event.EventID())
	if err != nil {
		return in, fmt.Errorf("fetching state before %s: %w", in.Event.EventID(), err)
	}
	r, err := rs.room(ctx, roomID)
	if err != nil {
		return in, err
	}
	all := dedupe(append(append([]string{}, chain...), state...))
	var missing []string
	for _, id := range all {
		if _, _, err := rs.eventOfRoom(ctx, r, id); err != nil {
			missing = append(missing, id)
		}
	}
	// Many events missing (a tenth or more, as Synapse reckons): one /state
	// request rather than an /event request each.
	if sf, ok := f.(StateFetcher); ok && len(missing) > 1 && len(missing)*10 >= len(all) {
		stateRaw, chainRaw, err := sf.State(ctx, in.Origin, roomID, in.Event.EventID())
		if err == nil {
			if err := rs.inputFetchedOutliers(ctx, in.Origin, in.Event, append(chainRaw, stateRaw...), missing); err != nil {
				return in, err
			}
			// What the answer lacked is fetched one by one.
			still := missing[:0]
			for _, id := range missing {
				if _, _, err := rs.eventOfRoom(ctx, r, id); err != nil {
					still = append(still, id)
				}
			}
			missing = still
		}
	}
	var raw []json.RawMessage
	for _, id := range missing {
		ev, err := f.Event(ctx, in.Origin, roomID, id)
		if err != nil {
			return in, fmt.Errorf("fetching state event %s: %w", id, err)
		}
		raw = append(raw, ev)
	}
	if err := rs.inputOutliers(ctx, in.Origin, in.Event, raw); err != nil {
		return in, err
	}
	in.StateBefore = state
	return in, nil
}

// inputOutliers parses fetched events and stores them as outliers, each
// after its auth events.
func (rs *Roomserver) inputOutliers(ctx context.Context, origin spec.ServerName, of gomatrixserverlib.PDU, raw []json.RawMessage) error {
	return rs.inputFetchedOutliers(ctx, origin, of, raw, nil)
}

// inputFetchedOutliers is inputOutliers keeping only the events named in
// want (all of them when want is nil).
func (rs *Roomserver) inputFetchedOutliers(ctx context.Context, origin spec.ServerName, of gomatrixserverlib.PDU, raw []json.RawMessage, want []string) error {
	ver, err := gomatrixserverlib.GetRoomVersion(of.Version())
	if err != nil {
		return ErrUnsupportedVersion
	}
	pdus, err := rs.parseRemote(ver, raw)
	if err != nil {
		return err
	}
	wanted := map[string]bool{}
	for _, id := range want {
		wanted[id] = true
	}
	var batch []InputEvent
	for _, p := range authOrder(pdus) {
		if p.RoomID().String() != of.RoomID().String() || (want != nil && !wanted[p.EventID()]) {
			continue
		}
		batch = append(batch, InputEvent{Kind: KindOutlier, Event: p, Origin: origin})
	}
	res, err := rs.Input(ctx, batch)
	if err != nil {
		return err
	}
	for _, r := range res {
		if r.Err != nil && !errors.Is(r.Err, errUnverified) {
			return fmt.Errorf("storing fetched event %s: %w", r.EventID, r.Err)
		}
	}
	return nil
}

// parseRemote parses events from another server with the room's version:
// an event whose content hash does not match is redacted.
func (rs *Roomserver) parseRemote(ver gomatrixserverlib.IRoomVersion, raw []json.RawMessage) ([]gomatrixserverlib.PDU, error) {
	out := make([]gomatrixserverlib.PDU, 0, len(raw))
	for _, js := range raw {
		pdu, err := ver.NewEventFromUntrustedJSON(js)
		if err != nil {
			continue // not a valid event: dropped (step 1)
		}
		out = append(out, pdu)
	}
	return out, nil
}

// authOrder sorts events so each comes after the auth events among them
// (by depth, then ID, where the auth graph leaves a choice).
func authOrder(pdus []gomatrixserverlib.PDU) []gomatrixserverlib.PDU {
	byID := map[string]gomatrixserverlib.PDU{}
	for _, p := range pdus {
		byID[p.EventID()] = p
	}
	sorted := append([]gomatrixserverlib.PDU(nil), pdus...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].Depth() != sorted[j].Depth() {
			return sorted[i].Depth() < sorted[j].Depth()
		}
		return sorted[i].EventID() < sorted[j].EventID()
	})
	done := map[string]bool{}
	out := make([]gomatrixserverlib.PDU, 0, len(pdus))
	var visit func(p gomatrixserverlib.PDU, depth int)
	visit = func(p gomatrixserverlib.PDU, depth int) {
		if done[p.EventID()] || depth > len(pdus) {
			return
		}
		done[p.EventID()] = true
		for _, id := range p.AuthEventIDs() {
			if a, ok := byID[id]; ok {
				visit(a, depth+1)
			}
		}
		out = append(out, p)
	}
	for _, p := range sorted {
		visit(p, 0)
	}
	return out
}
