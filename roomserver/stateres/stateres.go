// Package stateres resolves conflicting room states: state resolution v2
// (room versions 2–11), v2.1 (room version 12, MSC4297) and, by delegation
// to gomatrixserverlib, v1.
//
// It exists because the pinned gomatrixserverlib's v2.1 resolver panics when
// power events conflict, and its v2 resolver departs from the spec (and from
// Synapse) in a few corners: see the package tests. The algorithm here
// follows the spec's "Room Version 2" state resolution and, where the spec
// leaves room, Synapse (synapse/state/v2.py): events rejected earlier are
// never re-admitted, each state set's auth chain includes its own events,
// and an event's power in the tiebreak falls back to 100 for the room
// creator when it cites no power levels.
//
// Resolve never panics: malformed input (events of other rooms, missing
// auth events, cycles in auth_events, no create event, unparseable power
// levels) is an error.
package stateres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// AuthEventLoader fetches events the resolver needs and was not given: the
// auth events of the state events, theirs in turn, and (room version 12)
// the create event. A batch per call keeps database round trips few; an
// auth-chain cache slots in here.
type AuthEventLoader interface {
	// LoadEvents returns those of the named events it holds, in any order.
	// IDs it does not hold are left out; that is not an error.
	LoadEvents(ctx context.Context, eventIDs []string) ([]gomatrixserverlib.PDU, error)
}

// Input is what a resolution works on.
type Input struct {
	// StateSets are the states to resolve, one list of state events per
	// fork. Their order does not matter.
	StateSets [][]gomatrixserverlib.PDU
	// AuthEvents are events already in hand, typically the union of the auth
	// chains of the state events. Anything else needed comes from Loader.
	AuthEvents []gomatrixserverlib.PDU
	// Loader fetches what AuthEvents lacks. Nil: AuthEvents must be complete.
	Loader AuthEventLoader
	// IsRejected reports events that were rejected. They are never used as
	// auth events nor admitted into the resolved state. Nil: none are.
	IsRejected func(eventID string) bool
}

// ErrInvalidInput is wrapped by every error about malformed input.
var ErrInvalidInput = errors.New("stateres: invalid input")

// MissingEventsError names auth events neither supplied nor loadable; the
// caller may fetch them and try again.
type MissingEventsError struct{ EventIDs []string }

func (e *MissingEventsError) Error() string {
	return "stateres: missing auth events: " + strings.Join(e.EventIDs, ", ")
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidInput, fmt.Sprintf(format, args...))
}

// Resolve resolves the state sets with the algorithm of the room version and
// returns the resolved state, one event per (type, state_key), sorted by
// type then state key. The result does not depend on the order of the state
// sets or of the events in them.
func Resolve(ctx context.Context, ver gomatrixserverlib.IRoomVersion, in Input) ([]gomatrixserverlib.PDU, error) {
	if ver == nil {
		return nil, invalid("no room version")
	}
	st, sets, err := newStore(ctx, ver, in)
	if err != nil {
		return nil, err
	}
	sp, err := splitStateSets(sets)
	if err != nil {
		return nil, err
	}
	switch ver.StateResAlgorithm() {
	case gomatrixserverlib.StateResV1:
		return resolveV1(st, sets)
	case gomatrixserverlib.StateResV2, gomatrixserverlib.StateResV2_1:
	default:
		return nil, invalid("unsupported state resolution algorithm %v", ver.StateResAlgorithm())
	}
	if len(sp.conflicted) == 0 {
		return sortedState(sp.unconflicted), nil
	}
	r := &resolver{st: st, v21: ver.StateResAlgorithm() == gomatrixserverlib.StateResV2_1, plContent: map[string]*gomatrixserverlib.PowerLevelContent{}}
	resolved, err := r.resolve(sp)
	if err != nil {
		return nil, err
	}
	return sortedState(resolved), nil
}

// userIDForSender maps sender IDs to user IDs: they are equal outside
// pseudonymous-ID rooms.
func userIDForSender(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) {
	return spec.NewUserID(string(s), true)
}

// resolveV1 hands room version 1 to gomatrixserverlib, whose v1 resolver
// works; its panics (it has some on malformed input) become errors. As in
// Synapse, the conflicted events are checked against the unconflicted state
// (v1 counts a key as conflicted only when two events differ for it): the
// library keys the auth events it is given by type and state key, so
// handing it auth chains would make the answer depend on their order.
func resolveV1(st *store, sets [][]*node) (resolved []gomatrixserverlib.PDU, err error) {
	if len(sets) == 0 {
		return nil, nil
	}
	byKey := map[gomatrixserverlib.StateKeyTuple]map[string]*node{}
	var stateSets [][]gomatrixserverlib.PDU
	for _, set := range sets {
		var pdus []gomatrixserverlib.PDU
		for _, n := range set {
			if byKey[n.key()] == nil {
				byKey[n.key()] = map[string]*node{}
			}
			byKey[n.key()][n.id] = n
			pdus = append(pdus, n.pdu)
		}
		stateSets = append(stateSets, pdus)
	}
	unconflicted := stateMap{}
	for k, events := range byKey {
		for _, n := range events {
			if len(events) == 1 {
				unconflicted[k] = n
			}
		}
	}
	defer func() {
		if p := recover(); p != nil {
			resolved, err = nil, invalid("v1 state resolution: %v", p)
		}
	}()
	out, err := gomatrixserverlib.ResolveConflictsNew(st.ver.Version(), stateSets, sortedState(unconflicted), userIDForSender, st.isRejected)
	if err != nil {
		return nil, fmt.Errorf("v1 state resolution: %w", err)
	}
	result := make(stateMap, len(out))
	for _, p := range out {
		n := st.nodes[p.EventID()]
		if n == nil {
			return nil, invalid("v1 state resolution returned unknown event %s", p.EventID())
		}
		result[n.key()] = n
	}
	return sortedState(result), nil
}

// split is the state sets divided per the spec: the unconflicted state map
// and the conflicted state set.
type split struct {
	sets         [][]*node
	unconflicted map[gomatrixserverlib.StateKeyTuple]*node
	conflicted   map[string]*node
}

// splitStateSets divides the state sets. A key missing from any set is
// conflicted, as in Synapse.
func splitStateSets(sets [][]*node) (split, error) {
	size := 0
	if len(sets) > 0 {
		size = len(sets[0])
	}
	sp := split{sets: sets, unconflicted: make(map[gomatrixserverlib.StateKeyTuple]*node, size), conflicted: map[string]*node{}}
	maps := make([]map[gomatrixserverlib.StateKeyTuple]*node, len(sets))
	keys := make(map[gomatrixserverlib.StateKeyTuple]struct{}, size)
	for i, set := range sets {
		m := make(map[gomatrixserverlib.StateKeyTuple]*node, len(set))
		for _, n := range set {
			k := n.key()
			if prev, ok := m[k]; ok && prev != n {
				return split{}, invalid("state set %d holds both %s and %s for (%s, %q)", i, prev.id, n.id, k.EventType, k.StateKey)
			}
			m[k] = n
			keys[k] = struct{}{}
		}
		maps[i] = m
	}
	for k := range keys {
		first, same := maps[0][k], true
		for _, m := range maps[1:] {
			if m[k] != first {
				same = false
				break
			}
		}
		if same && first != nil {
			sp.unconflicted[k] = first
			continue
		}
		for _, m := range maps {
			if n := m[k]; n != nil {
				sp.conflicted[n.id] = n
			}
		}
	}
	return sp, nil
}

func sortedState(state map[gomatrixserverlib.StateKeyTuple]*node) []gomatrixserverlib.PDU {
	nodes := make([]*node, 0, len(state))
	for _, n := range state {
		nodes = append(nodes, n)
	}
	slices.SortFunc(nodes, func(a, b *node) int {
		if c := strings.Compare(a.typ, b.typ); c != 0 {
			return c
		}
		return strings.Compare(a.stateKey, b.stateKey)
	})
	out := make([]gomatrixserverlib.PDU, len(nodes))
	for i, n := range nodes {
		out[i] = n.pdu
	}
	return out
}
