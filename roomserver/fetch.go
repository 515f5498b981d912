package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
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

// ErrPrevEventsWithheld: a pushed event whose prev events stay unknown
// after /get_missing_events. As Synapse, its state is not fetched instead:
// the event could become the room's only forward extremity and that state
// would then be trusted for the whole room.
var ErrPrevEventsWithheld = errors.New("the sending server did not divulge the prev events of this event")

// ErrAuthEventsUnavailable: an event's auth events could be found neither
// here nor through /event_auth.
var ErrAuthEventsUnavailable = errors.New("auth events could not be found")

// The gaps are filled as Synapse does. A *pushed* event (a transaction's
// PDU) that lacks prev events gets them through /get_missing_events; the
// events that returns are *pulled*, and so is backfilled history: a pulled
// event whose prev events are still unknown gets the state after each
// missing prev event from its origin (/state_ids at that event, plus the
// event itself), resolved with the state after the prev events held. An
// event's place in the DAG is settled before its auth events are fetched
// (/event_auth, once).

// InputFetching is Input that fills the gaps the pipeline reports by
// fetching from the events' origins. KindNew events are treated as pushed
// (from a transaction), KindBackfill ones as pulled.
func (rs *Roomserver) InputFetching(ctx context.Context, f Fetcher, events []InputEvent) ([]InputResult, error) {
	return rs.inputFetching(ctx, f, events, true)
}

// gapFill is what was already tried for one event.
type gapFill struct {
	pushed      bool
	missingDone bool // /get_missing_events was asked
	authFetched bool // /event_auth was asked
}

// inputFetching is InputFetching; pushed says whether KindNew events were
// pushed (false for the events /get_missing_events returned).
func (rs *Roomserver) inputFetching(ctx context.Context, f Fetcher, events []InputEvent, pushed bool) ([]InputResult, error) {
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
		g := &gapFill{pushed: pushed && events[i].Kind == KindNew}
		for round := 0; results[i].Err != nil && round < maxFetchRounds; round++ {
			in, err := rs.fillGap(ctx, f, events[i], results[i].Err, g)
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
func (rs *Roomserver) fillGap(ctx context.Context, f Fetcher, in InputEvent, cause error, g *gapFill) (InputEvent, error) {
	var ma *MissingAuthEventsError
	var mp *MissingPrevEventsError
	var ms *MissingStateError
	switch {
	case errors.As(cause, &ma):
		if in.Kind != KindOutlier && in.StateBefore == nil {
			missing, err := rs.prevsOutsideTimeline(ctx, in.Event)
			if err != nil {
				return in, err
			}
			if len(missing) > 0 {
				return rs.fillPrevs(ctx, f, in, missing, g)
			}
		}
		return in, rs.fetchAuthChain(ctx, f, in, ma, g)
	case errors.As(cause, &mp):
		return rs.fillPrevs(ctx, f, in, mp.Missing, g)
	case errors.As(cause, &ms) && in.StateBefore == nil:
		return rs.fillPrevs(ctx, f, in, ms.Events, g)
	}
	return in, cause
}

// fillPrevs closes the gap before an event whose prev events (missing) are
// unknown or held without state: through /get_missing_events for a pushed
// event, through the state at the missing prev events for a pulled one.
func (rs *Roomserver) fillPrevs(ctx context.Context, f Fetcher, in InputEvent, missing []string, g *gapFill) (InputEvent, error) {
	if !g.pushed {
		state, err := rs.stateAtMissingPrevs(ctx, f, in)
		if err != nil {
			return in, fmt.Errorf("no valid state history for %s: %w", in.Event.EventID(), err)
		}
		in.StateBefore = state
		return in, nil
	}
	if g.missingDone {
		return in, fmt.Errorf("%w (%s)", ErrPrevEventsWithheld, strings.Join(missing, ", "))
	}
	g.missingDone = true
	filled, err := rs.fetchMissingPrevs(ctx, f, in, missing)
	if err != nil {
		return in, fmt.Errorf("%w (%s): %w", ErrPrevEventsWithheld, strings.Join(missing, ", "), err)
	}
	if !filled {
		return in, fmt.Errorf("%w (%s)", ErrPrevEventsWithheld, strings.Join(missing, ", "))
	}
	return in, nil
}

// fetchAuthChain fetches an event's auth chain (once) and stores what it
// can of it as outliers.
func (rs *Roomserver) fetchAuthChain(ctx context.Context, f Fetcher, in InputEvent, cause *MissingAuthEventsError, g *gapFill) error {
	if g.authFetched {
		return fmt.Errorf("%w: %s", ErrAuthEventsUnavailable, strings.Join(cause.Missing, ", "))
	}
	g.authFetched = true
	raw, err := f.EventAuth(ctx, in.Origin, in.Event.RoomID().String(), in.Event.EventID())
	if err != nil {
		return fmt.Errorf("%w: %s (fetching the auth chain: %w)", ErrAuthEventsUnavailable, strings.Join(cause.Missing, ", "), err)
	}
	return rs.inputOutliers(ctx, in.Origin, in.Event, raw)
}

// prevsOutsideTimeline lists an event's prev events the room does not hold
// in its timeline (unknown, or outliers).
func (rs *Roomserver) prevsOutsideTimeline(ctx context.Context, pdu gomatrixserverlib.PDU) ([]string, error) {
	var out []string
	for _, id := range dedupe(pdu.PrevEventIDs()) {
		e, err := rs.db.EventByID(ctx, id)
		if errors.Is(err, storage.ErrNotFound) || (err == nil && (e.RoomID != pdu.RoomID().String() || e.Status == storage.EventOutlier)) {
			out = append(out, id)
			continue
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// fetchMissingPrevs fetches the events between the room's forward
// extremities and the event and inputs them, oldest first, as pulled
// events; it reports whether every missing prev event is now held in the
// timeline.
func (rs *Roomserver) fetchMissingPrevs(ctx context.Context, f Fetcher, in InputEvent, missing []string) (bool, error) {
	r, err := rs.room(ctx, in.Event.RoomID().String())
	if err != nil {
		return false, err
	}
	r.mu.Lock()
	earliest := append([]string(nil), r.extremities...)
	r.mu.Unlock()
	// The prev events held are no news to us either (as Synapse).
	missingSet := map[string]bool{}
	for _, id := range missing {
		missingSet[id] = true
	}
	for _, id := range in.Event.PrevEventIDs() {
		if !missingSet[id] && !slices.Contains(earliest, id) {
			earliest = append(earliest, id)
		}
	}
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
		if p.RoomID().String() == r.id {
			batch = append(batch, InputEvent{Kind: KindNew, Event: p, Origin: in.Origin})
		}
	}
	if _, err := rs.inputFetching(ctx, f, batch, false); err != nil {
		return false, err
	}
	still, err := rs.prevsOutsideTimeline(ctx, in.Event)
	return len(still) == 0, err
}

// inputOutliers parses fetched events and stores them as outliers, each
// after its auth events.
func (rs *Roomserver) inputOutliers(ctx context.Context, origin spec.ServerName, of gomatrixserverlib.PDU, raw []json.RawMessage) error {
	return rs.inputFetchedOutliers(ctx, origin, of, raw, nil)
}

// inputFetchedOutliers is inputOutliers keeping only the events named in
// want (all of them when want is nil). An event that cannot be stored (its
// signatures fail, its own auth events are missing) is dropped, as Synapse
// does: the events that need it fail in their turn.
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
	_, err = rs.Input(ctx, batch)
	return err
}

// parseRemote parses events from another server with the room's version
// (ParseRemoteEvent); events that do not parse are dropped (step 1).
func (rs *Roomserver) parseRemote(ver gomatrixserverlib.IRoomVersion, raw []json.RawMessage) ([]gomatrixserverlib.PDU, error) {
	out := make([]gomatrixserverlib.PDU, 0, len(raw))
	for _, js := range raw {
		pdu, err := ParseRemoteEvent(ver, js)
		if err != nil {
			continue
		}
		out = append(out, pdu)
	}
	return out, nil
}

// ParseRemoteEvent parses an event from another server with the room's
// version: an event whose content hash does not match is redacted. An
// event over the byte limits of a type or state key that room versions
// before 11 did not enforce is kept (Input stores it rejected, as Synapse
// does, so that the rooms it is in do not break).
func ParseRemoteEvent(ver gomatrixserverlib.IRoomVersion, raw []byte) (gomatrixserverlib.PDU, error) {
	pdu, err := ver.NewEventFromUntrustedJSON(raw)
	var ve gomatrixserverlib.EventValidationError
	if err != nil && errors.As(err, &ve) && ve.Persistable && pdu != nil {
		return pdu, nil
	}
	return pdu, err
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
