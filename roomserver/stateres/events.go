package stateres

import (
	"context"
	"fmt"
	"slices"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// node is an event with the fields resolution reads, extracted once: the
// PDU accessors can panic on malformed events, and a node cannot.
type node struct {
	pdu      gomatrixserverlib.PDU
	id       string
	typ      string
	stateKey string
	isState  bool
	sender   string
	ts       spec.Timestamp
	auth     []string // auth event IDs, deduplicated; the create event included in v12
}

func (n *node) key() gomatrixserverlib.StateKeyTuple {
	return gomatrixserverlib.StateKeyTuple{EventType: n.typ, StateKey: n.stateKey}
}

func (n *node) is(typ, stateKey string) bool {
	return n.isState && n.typ == typ && n.stateKey == stateKey
}

// newNode reads an event's fields, turning a panicking accessor into an
// error. roomID is the event's room.
func newNode(p gomatrixserverlib.PDU) (n *node, roomID string, err error) {
	if p == nil {
		return nil, "", invalid("nil event")
	}
	defer func() {
		if r := recover(); r != nil {
			n, roomID, err = nil, "", invalid("malformed event: %v", r)
		}
	}()
	n = &node{pdu: p, id: p.EventID(), typ: p.Type(), sender: string(p.SenderID()), ts: p.OriginServerTS()}
	if n.id == "" {
		return nil, "", invalid("event without an ID")
	}
	if sk := p.StateKey(); sk != nil {
		n.isState, n.stateKey = true, *sk
	}
	for _, id := range p.AuthEventIDs() {
		if !slices.Contains(n.auth, id) { // a handful of IDs
			n.auth = append(n.auth, id)
		}
	}
	return n, p.RoomID().String(), nil
}

// store holds every event of the resolution by ID and fetches missing auth
// events through the loader.
type store struct {
	ctx      context.Context
	ver      gomatrixserverlib.IRoomVersion
	roomID   string
	loader   AuthEventLoader
	rejected func(string) bool
	nodes    map[string]*node
	supplied map[string]gomatrixserverlib.PDU // Input.AuthEvents, made nodes when first needed
	create   *node                            // found by findCreate
}

// newStore validates the input and indexes it. It returns the state sets as
// nodes, each deduplicated.
func newStore(ctx context.Context, ver gomatrixserverlib.IRoomVersion, in Input) (*store, [][]*node, error) {
	size := len(in.AuthEvents)
	if len(in.StateSets) > 0 {
		size += len(in.StateSets[0])
	}
	st := &store{ctx: ctx, ver: ver, loader: in.Loader, rejected: in.IsRejected,
		nodes: make(map[string]*node, size), supplied: make(map[string]gomatrixserverlib.PDU, len(in.AuthEvents))}
	sets := make([][]*node, len(in.StateSets))
	for i, set := range in.StateSets {
		seen := map[string]bool{}
		for _, p := range set {
			n, err := st.add(p)
			if err != nil {
				return nil, nil, err
			}
			if !n.isState {
				return nil, nil, invalid("state set %d holds non-state event %s", i, n.id)
			}
			if !seen[n.id] {
				seen[n.id] = true
				sets[i] = append(sets[i], n)
			}
		}
	}
	for _, p := range in.AuthEvents {
		if p == nil {
			return nil, nil, invalid("nil auth event")
		}
		st.supplied[p.EventID()] = p
	}
	return st, sets, nil
}

// add indexes an event, checking it belongs to the room and version of the
// others. The first event fixes the room.
func (st *store) add(p gomatrixserverlib.PDU) (*node, error) {
	if p != nil {
		if existing, ok := st.nodes[p.EventID()]; ok {
			return existing, nil
		}
	}
	n, roomID, err := newNode(p)
	if err != nil {
		return nil, err
	}
	if p.Version() != st.ver.Version() {
		return nil, invalid("event %s is of room version %q, not %q", n.id, p.Version(), st.ver.Version())
	}
	if st.roomID == "" {
		st.roomID = roomID
	} else if roomID != st.roomID {
		return nil, invalid("event %s is in room %s, not %s", n.id, roomID, st.roomID)
	}
	st.nodes[n.id] = n
	return n, nil
}

func (st *store) isRejected(eventID string) bool {
	return st.rejected != nil && st.rejected(eventID)
}

// ensure makes the named events available, from the supplied auth events
// or else the loader; any still missing is a MissingEventsError.
func (st *store) ensure(ids []string) error {
	var want []string
	wanted := map[string]bool{}
	for _, id := range ids {
		if _, ok := st.nodes[id]; ok || wanted[id] {
			continue
		}
		if p, ok := st.supplied[id]; ok {
			if _, err := st.add(p); err != nil {
				return err
			}
			continue
		}
		wanted[id] = true
		want = append(want, id)
	}
	if len(want) == 0 {
		return nil
	}
	if st.loader != nil {
		loaded, err := st.loader.LoadEvents(st.ctx, want)
		if err != nil {
			return fmt.Errorf("stateres: loading auth events: %w", err)
		}
		for _, p := range loaded {
			if _, err := st.add(p); err != nil {
				return err
			}
		}
	}
	var missing []string
	for _, id := range want {
		if _, ok := st.nodes[id]; !ok {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return &MissingEventsError{EventIDs: missing}
	}
	return nil
}

// ancestors walks auth_events breadth first from starts, loading a level at
// a time, and returns every event reached (starts only if reached again).
// The walk does not enter events for which skip is true. Cycles end the walk
// like any event already seen.
func (st *store) ancestors(starts []*node, skip func(*node) bool) (map[string]*node, error) {
	seen := map[string]*node{}
	visited := map[string]bool{}
	frontier := starts
	for len(frontier) > 0 {
		var ids []string
		for _, n := range frontier {
			for _, id := range n.auth {
				if !visited[id] {
					ids = append(ids, id)
				}
			}
		}
		if err := st.ensure(ids); err != nil {
			return nil, err
		}
		var next []*node
		for _, id := range ids {
			if visited[id] {
				continue
			}
			visited[id] = true
			n := st.nodes[id]
			if skip != nil && skip(n) {
				continue
			}
			seen[id] = n
			next = append(next, n)
		}
		frontier = next
	}
	return seen, nil
}

// findCreate finds the room's one create event among the events held,
// loading it by ID in v12 rooms (where the room ID names it).
func (st *store) findCreate() error {
	if st.ver.DomainlessRoomIDs() && len(st.roomID) > 1 {
		if err := st.ensure([]string{"$" + st.roomID[1:]}); err != nil {
			return err
		}
	}
	var found *node
	for _, n := range st.nodes {
		if !n.is(spec.MRoomCreate, "") {
			continue
		}
		if found != nil && found != n {
			return invalid("two create events: %s and %s", found.id, n.id)
		}
		found = n
	}
	if found == nil {
		return invalid("no create event for room %s", st.roomID)
	}
	st.create = found
	return nil
}
