package roomserver

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

// A room's history as other servers ask for it (/backfill,
// /get_missing_events, /state, /state_ids, /event_auth,
// /timestamp_to_event). The federation API checks first that the asking
// server may ask at all (in the room or the room world-readable, server
// ACL); here each event it gets is judged by ServerViewer, and those it may
// not see are sent redacted (as Synapse does: the DAG stays whole).
// Rejected events are never served as history.

// ErrEventNotFound is an event this server does not hold in the room (or
// holds without the state the request needs).
var ErrEventNotFound = errors.New("event not found")

// BackfillFor walks the room's DAG back from the events named in from
// (included), newest first by depth, and returns up to limit events for
// server, newest first.
func (rs *Roomserver) BackfillFor(ctx context.Context, fr *FederationRoom, server spec.ServerName, from []string, limit int) ([]json.RawMessage, error) {
	seeds, err := rs.historyEvents(ctx, fr, from, 0)
	if err != nil {
		return nil, err
	}
	queue := &byDepthDesc{}
	queued := map[string]bool{}
	for _, e := range seeds {
		queued[e.EventID] = true
		heap.Push(queue, e)
	}
	var out []*storage.Event
	for queue.Len() > 0 && len(out) < limit {
		e := heap.Pop(queue).(*storage.Event)
		out = append(out, e)
		prevs, err := rs.db.PrevEventIDs(ctx, e.NID)
		if err != nil {
			return nil, err
		}
		var fresh []string
		for _, id := range prevs {
			if !queued[id] {
				queued[id] = true
				fresh = append(fresh, id)
			}
		}
		loaded, err := rs.historyEvents(ctx, fr, fresh, 0)
		if err != nil {
			return nil, err
		}
		for _, p := range loaded {
			heap.Push(queue, p)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return topoLess(out[j], out[i]) })
	return rs.serveTo(ctx, fr, server, out)
}

// MissingEventsFor returns the events between earliest and latest (both
// excluded) for server, as /get_missing_events: walking back breadth-first
// from latest's prev events, stopping at earliest, at events below
// minDepth and after limit events; oldest first.
func (rs *Roomserver) MissingEventsFor(ctx context.Context, fr *FederationRoom, server spec.ServerName, earliest, latest []string, limit int, minDepth int64) ([]json.RawMessage, error) {
	seen := map[string]bool{}
	for _, id := range earliest {
		seen[id] = true
	}
	var frontIDs []string
	for _, id := range latest {
		if !seen[id] {
			seen[id] = true
			frontIDs = append(frontIDs, id)
		}
	}
	front, err := rs.historyEvents(ctx, fr, frontIDs, 0)
	if err != nil {
		return nil, err
	}
	var out []*storage.Event
	for len(front) > 0 && len(out) < limit {
		var fresh []string
		for _, e := range front {
			prevs, err := rs.db.PrevEventIDs(ctx, e.NID)
			if err != nil {
				return nil, err
			}
			for _, id := range prevs {
				if !seen[id] {
					seen[id] = true
					fresh = append(fresh, id)
				}
			}
		}
		if front, err = rs.historyEvents(ctx, fr, fresh, minDepth); err != nil {
			return nil, err
		}
		for _, e := range front {
			if len(out) == limit {
				break
			}
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return topoLess(out[i], out[j]) })
	return rs.serveTo(ctx, fr, server, out)
}

// StateBeforeEvent returns the state before an event of the room and
// that state's auth chain, as event IDs (what /state_ids answers; /state
// loads the events). Events held without state are ErrEventNotFound.
func (rs *Roomserver) StateBeforeEvent(ctx context.Context, fr *FederationRoom, eventID string) (state, authChain []string, err error) {
	e, err := rs.roomEvent(ctx, fr, eventID)
	if err != nil {
		return nil, nil, err
	}
	if e.Status == storage.EventOutlier {
		return nil, nil, fmt.Errorf("%w: state at %s is not known", ErrEventNotFound, eventID)
	}
	refs, err := rs.db.SnapshotRefs(ctx, e.StateBefore)
	if err != nil {
		return nil, nil, err
	}
	state = make([]string, 0, len(refs))
	for _, ref := range refs {
		state = append(state, ref.EventID)
	}
	sort.Strings(state)
	chain, err := rs.AuthChainIDs(ctx, fr.ID, state)
	return state, chain, err
}

// EventAuthChain returns the auth chain of an event of the room (its auth
// events, theirs, and so on) as event IDs.
func (rs *Roomserver) EventAuthChain(ctx context.Context, fr *FederationRoom, eventID string) ([]string, error) {
	if _, err := rs.roomEvent(ctx, fr, eventID); err != nil {
		return nil, err
	}
	return rs.AuthChainIDs(ctx, fr.ID, []string{eventID})
}

// AuthChainIDs is the union of the auth chains of events of a room (the
// events themselves only where one is in another's chain), sorted.
func (rs *Roomserver) AuthChainIDs(ctx context.Context, roomID string, eventIDs []string) ([]string, error) {
	r, err := rs.room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, id := range eventIDs {
		pdu, err := rs.loadEvent(ctx, r, id)
		if err != nil {
			return nil, fmt.Errorf("auth chain of %s: %w", id, err)
		}
		chain, err := rs.chainOf(ctx, r, pdu)
		if err != nil {
			return nil, err
		}
		for _, c := range chain {
			ids[c] = true
		}
	}
	if r.version.DomainlessRoomIDs() && len(eventIDs) > 0 {
		ids[createEventID(r)] = true // implied by every event of a v12 room
	}
	out := make([]string, 0, len(ids))
	for id := range ids {
		out = append(out, id)
	}
	sort.Strings(out)
	return out, nil
}

// EventJSONs returns the stored JSON of events of the room, in the order
// of ids (events not held are left out).
func (rs *Roomserver) EventJSONs(ctx context.Context, fr *FederationRoom, ids []string) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, 0, len(ids))
	for start := 0; start < len(ids); start += 500 {
		batch := ids[start:min(start+500, len(ids))]
		events, err := rs.db.EventsByID(ctx, batch)
		if err != nil {
			return nil, err
		}
		byID := make(map[string]*storage.Event, len(events))
		for i := range events {
			byID[events[i].EventID] = &events[i]
		}
		for _, id := range batch {
			if e, ok := byID[id]; ok && e.RoomNID == fr.NID {
				out = append(out, e.JSON)
			}
		}
	}
	return out, nil
}

// EventFor returns an event for server as /event serves it: redacted when
// the server may not see it. The caller checks the server may ask about
// the event's room (EventRoomID).
func (rs *Roomserver) EventFor(ctx context.Context, fr *FederationRoom, server spec.ServerName, eventID string) (json.RawMessage, error) {
	e, err := rs.db.EventByID(ctx, eventID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && e.RoomNID != fr.NID) {
		return nil, ErrEventNotFound
	}
	if err != nil {
		return nil, err
	}
	out, err := rs.serveTo(ctx, fr, server, []*storage.Event{e})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// EventRoomID is the room of an event this server holds.
func (rs *Roomserver) EventRoomID(ctx context.Context, eventID string) (string, error) {
	e, err := rs.db.EventByID(ctx, eventID)
	if errors.Is(err, storage.ErrNotFound) {
		return "", ErrEventNotFound
	}
	if err != nil {
		return "", err
	}
	return e.RoomID, nil
}

// TimestampEventFor finds the room's event nearest to ts in a direction
// that server may see (/timestamp_to_event): forwards, the first at or
// after ts; else the last at or before it.
func (rs *Roomserver) TimestampEventFor(ctx context.Context, fr *FederationRoom, server spec.ServerName, ts int64, forwards bool) (*storage.Event, error) {
	candidates, err := rs.db.EventsNearTimestamp(ctx, fr.NID, ts, forwards, 50)
	if err != nil {
		return nil, err
	}
	v := rs.ServerViewer(ctx, server)
	for i := range candidates {
		if v.CanSee(&candidates[i]) {
			return &candidates[i], nil
		}
	}
	if v.Err() != nil {
		return nil, v.Err()
	}
	return nil, ErrEventNotFound
}

// roomEvent loads an event of the room that is not rejected.
func (rs *Roomserver) roomEvent(ctx context.Context, fr *FederationRoom, eventID string) (*storage.Event, error) {
	e, err := rs.db.EventByID(ctx, eventID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && (e.RoomNID != fr.NID || e.Status == storage.EventRejected)) {
		return nil, fmt.Errorf("%w: %s", ErrEventNotFound, eventID)
	}
	return e, err
}

// historyEvents loads the named events of the room that may be served as
// history (held, not rejected, at least minDepth deep), in the order of
// ids.
func (rs *Roomserver) historyEvents(ctx context.Context, fr *FederationRoom, ids []string, minDepth int64) ([]*storage.Event, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	events, err := rs.db.EventsByID(ctx, ids)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]*storage.Event, len(events))
	for i := range events {
		e := &events[i]
		if e.RoomNID == fr.NID && e.Status != storage.EventRejected && e.Depth >= minDepth {
			byID[e.EventID] = e
		}
	}
	out := make([]*storage.Event, 0, len(byID))
	for _, id := range ids {
		if e, ok := byID[id]; ok {
			out = append(out, e)
			delete(byID, id)
		}
	}
	return out, nil
}

// serveTo is the events' JSON for server: as stored where it may see them,
// redacted elsewhere.
func (rs *Roomserver) serveTo(ctx context.Context, fr *FederationRoom, server spec.ServerName, events []*storage.Event) ([]json.RawMessage, error) {
	v := rs.ServerViewer(ctx, server)
	out := make([]json.RawMessage, 0, len(events))
	for _, e := range events {
		if v.CanSee(e) {
			out = append(out, e.JSON)
			continue
		}
		if v.Err() != nil {
			return nil, v.Err()
		}
		redacted, err := redactedJSON(fr.Version, e)
		if err != nil {
			return nil, err
		}
		out = append(out, redacted)
	}
	return out, nil
}

// redactedJSON is a stored event's JSON redacted by the room version's
// rules (signatures and hashes kept, so it still verifies).
func redactedJSON(ver gomatrixserverlib.IRoomVersion, e *storage.Event) (json.RawMessage, error) {
	if e.RedactedBy != "" {
		return e.JSON, nil
	}
	out, err := ver.RedactEventJSON(e.JSON)
	if err != nil {
		return nil, fmt.Errorf("redacting %s: %w", e.EventID, err)
	}
	return out, nil
}

// topoLess orders events by depth, then arrival.
func topoLess(a, b *storage.Event) bool {
	if a.Depth != b.Depth {
		return a.Depth < b.Depth
	}
	return a.NID < b.NID
}

// byDepthDesc is a heap of events, deepest (then latest to arrive) first.
type byDepthDesc []*storage.Event

func (h byDepthDesc) Len() int           { return len(h) }
func (h byDepthDesc) Less(i, j int) bool { return topoLess(h[j], h[i]) }
func (h byDepthDesc) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *byDepthDesc) Push(x any)        { *h = append(*h, x.(*storage.Event)) }
func (h *byDepthDesc) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
