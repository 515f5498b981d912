package stateres

import (
	"container/heap"
	"encoding/json"
	"slices"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// resolver runs state resolution v2 and v2.1 over one set of inputs.
type resolver struct {
	st        *store
	v21       bool
	plContent map[string]*gomatrixserverlib.PowerLevelContent // parsed power levels by event ID
	creators  map[string]bool                                 // privileged creators (MSC4289), v12
}

type stateMap = map[gomatrixserverlib.StateKeyTuple]*node

var powerLevelsKey = gomatrixserverlib.StateKeyTuple{EventType: spec.MRoomPowerLevels}

// resolve runs the spec's five steps over split state sets with at least
// one conflict.
func (r *resolver) resolve(sp split) (stateMap, error) {
	full, err := r.fullConflictedSet(sp)
	if err != nil {
		return nil, err
	}
	if err := r.st.findCreate(); err != nil {
		return nil, err
	}
	if err := r.loadCreators(); err != nil {
		return nil, err
	}

	// 1. The power events of the full conflicted set and the events of the
	// set in their auth chains, in reverse topological power ordering.
	powerSet := r.powerSet(full)
	powerOrder, err := r.powerSort(powerSet)
	if err != nil {
		return nil, err
	}
	// 2. Iterative auth checks over them, from the unconflicted state (v2)
	// or from nothing (v2.1, MSC4297).
	state := stateMap{}
	if !r.v21 {
		for k, n := range sp.unconflicted {
			state[k] = n
		}
	}
	r.iterate(state, powerOrder)

	// 3 and 4. The rest in mainline order of the power levels so far.
	rest := make([]*node, 0, len(full)-len(powerSet))
	for id, n := range full {
		if _, ok := powerSet[id]; !ok {
			rest = append(rest, n)
		}
	}
	rest, err = r.mainlineSort(rest, state[powerLevelsKey])
	if err != nil {
		return nil, err
	}
	r.iterate(state, rest)

	// 5. The unconflicted state wins over whatever was replayed.
	for k, n := range sp.unconflicted {
		state[k] = n
	}
	return state, nil
}

// fullConflictedSet is the conflicted state set, the auth difference and,
// in v2.1, the conflicted state subgraph.
//
// Each state set's full auth chain holds its own events too (as Synapse
// computes it): the chain of set i is U ∪ A(i), where U is the unconflicted
// events with their auth chains and A(i) the set's conflicted events with
// theirs. So the auth difference is ∪A(i) − ∩A(i) − U, and walking A(i) can
// stop at events of U.
func (r *resolver) fullConflictedSet(sp split) (map[string]*node, error) {
	unconflicted := make([]*node, 0, len(sp.unconflicted))
	for _, n := range sp.unconflicted {
		unconflicted = append(unconflicted, n)
	}
	inU, err := r.st.ancestors(unconflicted, nil)
	if err != nil {
		return nil, err
	}
	for _, n := range unconflicted {
		inU[n.id] = n
	}
	skipU := func(n *node) bool { _, ok := inU[n.id]; return ok }

	count := map[string]int{} // in how many A(i)
	union := map[string]*node{}
	for _, set := range sp.sets {
		var starts []*node
		for _, n := range set {
			if _, ok := sp.conflicted[n.id]; ok {
				starts = append(starts, n)
			}
		}
		chain, err := r.st.ancestors(starts, skipU)
		if err != nil {
			return nil, err
		}
		for _, n := range starts {
			if !skipU(n) {
				chain[n.id] = n
			}
		}
		for id, n := range chain {
			count[id]++
			union[id] = n
		}
	}
	full := make(map[string]*node, len(sp.conflicted)+len(union))
	for id, n := range sp.conflicted {
		full[id] = n
	}
	for id, n := range union {
		if count[id] < len(sp.sets) {
			full[id] = n
		}
	}
	if r.v21 {
		sub, err := r.conflictedSubgraph(sp.conflicted)
		if err != nil {
			return nil, err
		}
		for id, n := range sub {
			full[id] = n
		}
	}
	return full, nil
}

// conflictedSubgraph (MSC4297) is every event on an auth_events path from
// one conflicted event to another: an ancestor of a conflicted event that
// has a conflicted event among its own ancestors.
func (r *resolver) conflictedSubgraph(conflicted map[string]*node) (map[string]*node, error) {
	starts := make([]*node, 0, len(conflicted))
	for _, n := range conflicted {
		starts = append(starts, n)
	}
	anc, err := r.st.ancestors(starts, nil)
	if err != nil {
		return nil, err
	}
	const (
		active = 1
		done   = 2
	)
	mark := map[string]uint8{}
	reaches := map[string]bool{}
	type frame struct {
		n    *node
		next int
	}
	for id, root := range anc {
		if mark[id] != 0 {
			continue
		}
		mark[id] = active
		stack := []frame{{n: root}}
		for len(stack) > 0 {
			f := &stack[len(stack)-1]
			if f.next == len(f.n.auth) {
				mark[f.n.id] = done
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && reaches[f.n.id] {
					reaches[stack[len(stack)-1].n.id] = true
				}
				continue
			}
			aid := f.n.auth[f.next]
			f.next++
			if _, ok := conflicted[aid]; ok {
				reaches[f.n.id] = true
			}
			child, ok := anc[aid]
			if !ok {
				continue
			}
			switch mark[aid] {
			case active:
				return nil, invalid("auth events form a cycle through %s", aid)
			case done:
				if reaches[aid] {
					reaches[f.n.id] = true
				}
			default:
				mark[aid] = active
				stack = append(stack, frame{n: child})
			}
		}
	}
	sub := map[string]*node{}
	for id, n := range anc {
		if reaches[id] {
			sub[id] = n
		}
	}
	return sub, nil
}

// isPowerEvent: power levels, join rules and create events, and kicks and
// bans (a leave or ban of someone else).
func isPowerEvent(n *node) bool {
	if !n.isState {
		return false
	}
	switch n.typ {
	case spec.MRoomPowerLevels, spec.MRoomJoinRules, spec.MRoomCreate:
		return n.stateKey == ""
	case spec.MRoomMember:
		if n.stateKey == n.sender {
			return false
		}
		var c struct {
			Membership any `json:"membership"`
		}
		if json.Unmarshal(n.pdu.Content(), &c) != nil {
			return false
		}
		return c.Membership == spec.Leave || c.Membership == spec.Ban
	}
	return false
}

// powerSet is the power events of the full conflicted set together with
// the events of the set in their auth chains (reached, as in Synapse,
// through events of the set: every event between a power event and an
// auth-difference event is itself in the auth difference).
func (r *resolver) powerSet(full map[string]*node) map[string]*node {
	set := map[string]*node{}
	var stack []*node
	for id, n := range full {
		if isPowerEvent(n) {
			set[id] = n
			stack = append(stack, n)
		}
	}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, aid := range n.auth {
			if a, ok := full[aid]; ok {
				if _, seen := set[aid]; !seen {
					set[aid] = a
					stack = append(stack, a)
				}
			}
		}
	}
	return set
}

// ranked is an event with its sender's power for the topological sort.
type ranked struct {
	n     *node
	power int64
}

// before is the reverse topological power ordering's comparison: greater
// power first, then earlier origin_server_ts, then smaller event ID.
func (a ranked) before(b ranked) bool {
	if a.power != b.power {
		return a.power > b.power
	}
	if a.n.ts != b.n.ts {
		return a.n.ts < b.n.ts
	}
	return a.n.id < b.n.id
}

type rankedHeap []ranked

func (h rankedHeap) Len() int           { return len(h) }
func (h rankedHeap) Less(i, j int) bool { return h[i].before(h[j]) }
func (h rankedHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *rankedHeap) Push(x any)        { *h = append(*h, x.(ranked)) }
func (h *rankedHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// powerSort is the lexicographically smallest topological ordering of the
// events by their auth events among them (Kahn's algorithm, taking the
// smallest ready event each step): auth events come first.
func (r *resolver) powerSort(events map[string]*node) ([]*node, error) {
	pending := make(map[string]int, len(events)) // auth events among the set not yet output
	dependents := map[string][]ranked{}
	var ready rankedHeap
	for _, n := range events {
		p, err := r.senderPower(n)
		if err != nil {
			return nil, err
		}
		rn := ranked{n: n, power: p}
		for _, aid := range n.auth {
			if _, ok := events[aid]; ok {
				pending[n.id]++
				dependents[aid] = append(dependents[aid], rn)
			}
		}
		if pending[n.id] == 0 {
			ready = append(ready, rn)
		}
	}
	heap.Init(&ready)
	out := make([]*node, 0, len(events))
	for ready.Len() > 0 {
		rn := heap.Pop(&ready).(ranked)
		out = append(out, rn.n)
		for _, d := range dependents[rn.n.id] {
			pending[d.n.id]--
			if pending[d.n.id] == 0 {
				heap.Push(&ready, d)
			}
		}
	}
	if len(out) != len(events) {
		return nil, invalid("auth events of the conflicted power events form a cycle")
	}
	return out, nil
}

// loadCreators reads the privileged creators of v12 rooms: the create
// event's sender and its additional_creators.
func (r *resolver) loadCreators() error {
	if !r.st.ver.PrivilegedCreators() {
		return nil
	}
	var c struct {
		AdditionalCreators []string `json:"additional_creators"`
	}
	if err := json.Unmarshal(r.st.create.pdu.Content(), &c); err != nil {
		return invalid("create event %s: additional_creators: %v", r.st.create.id, err)
	}
	r.creators = map[string]bool{r.st.create.sender: true}
	for _, u := range c.AdditionalCreators {
		r.creators[u] = true
	}
	return nil
}

// senderPower is the power of an event's sender according to its auth
// events: infinite for a privileged creator, else from the power levels it
// cites, else 100 for the room's creator and 0 for anyone else.
func (r *resolver) senderPower(n *node) (int64, error) {
	if r.creators[n.sender] {
		return gomatrixserverlib.CreatorPowerLevel, nil
	}
	pl := r.authEvent(n, spec.MRoomPowerLevels)
	if pl == nil {
		if n.sender == r.creator() {
			return 100, nil
		}
		return 0, nil
	}
	content, err := r.powerLevels(pl)
	if err != nil {
		return 0, err
	}
	return content.UserLevel(spec.SenderID(n.sender)), nil
}

// creator is the room creator of versions without privileged creators:
// the create event's "creator" up to v10, its sender from v11.
func (r *resolver) creator() string {
	create := r.st.create
	if !r.st.ver.CreatorInCreateEvent() {
		return create.sender
	}
	var c struct {
		Creator any `json:"creator"`
	}
	if json.Unmarshal(create.pdu.Content(), &c) != nil {
		return ""
	}
	s, _ := c.Creator.(string)
	return s
}

func (r *resolver) powerLevels(pl *node) (*gomatrixserverlib.PowerLevelContent, error) {
	if c, ok := r.plContent[pl.id]; ok {
		return c, nil
	}
	c, err := gomatrixserverlib.NewPowerLevelContentFromEvent(pl.pdu)
	if err != nil {
		return nil, invalid("power levels %s: %v", pl.id, err)
	}
	r.plContent[pl.id] = &c
	return &c, nil
}

// authEvent is the first of n's auth events with the type and an empty
// state key, or nil.
func (r *resolver) authEvent(n *node, typ string) *node {
	for _, aid := range n.auth {
		if a := r.st.nodes[aid]; a != nil && a.is(typ, "") {
			return a
		}
	}
	return nil
}

// mainlineSort orders events by the mainline of pl: those whose closest
// mainline power levels are older first (events citing none at all before
// every other), then by origin_server_ts, then by event ID.
func (r *resolver) mainlineSort(events []*node, pl *node) ([]*node, error) {
	if len(events) == 0 {
		return events, nil
	}
	// depth: 1 for the oldest power levels of the mainline, counting up.
	var mainline []*node
	onMainline := map[string]bool{}
	for p := pl; p != nil; p = r.authEvent(p, spec.MRoomPowerLevels) {
		if onMainline[p.id] {
			return nil, invalid("power levels %s cite themselves through their auth events", p.id)
		}
		onMainline[p.id] = true
		mainline = append(mainline, p)
	}
	depth := make(map[string]int, len(mainline))
	for i, p := range mainline {
		depth[p.id] = len(mainline) - i
	}
	type sortKey struct {
		depth int
		n     *node
	}
	keys := make([]sortKey, len(events))
	for i, n := range events {
		d, err := r.mainlineDepth(n, depth)
		if err != nil {
			return nil, err
		}
		keys[i] = sortKey{depth: d, n: n}
	}
	slices.SortFunc(keys, func(a, b sortKey) int {
		if a.depth != b.depth {
			return a.depth - b.depth
		}
		if a.n.ts != b.n.ts {
			if a.n.ts < b.n.ts {
				return -1
			}
			return 1
		}
		return strings.Compare(a.n.id, b.n.id)
	})
	out := make([]*node, len(keys))
	for i, k := range keys {
		out[i] = k.n
	}
	return out, nil
}

// mainlineDepth follows the power levels in the auth events from n until
// one is on the mainline, caching what it learns in depth; 0 if none is.
func (r *resolver) mainlineDepth(n *node, depth map[string]int) (int, error) {
	var path []string
	seen := map[string]bool{}
	d := 0
	for p := n; p != nil; p = r.authEvent(p, spec.MRoomPowerLevels) {
		if v, ok := depth[p.id]; ok {
			d = v
			break
		}
		if seen[p.id] {
			return 0, invalid("power levels %s cite themselves through their auth events", p.id)
		}
		seen[p.id] = true
		if p != n {
			path = append(path, p.id)
		}
	}
	for _, id := range path {
		depth[id] = d
	}
	return d, nil
}

// iterate is the iterative auth checks: each event in order that the auth
// rules allow, against the state so far with gaps filled from its own
// non-rejected auth events, replaces its key in state. Rejected events are
// skipped, as Synapse does.
func (r *resolver) iterate(state stateMap, order []*node) {
	for _, n := range order {
		if r.st.isRejected(n.id) {
			continue
		}
		if r.allowed(n, state) {
			state[n.key()] = n
		}
	}
}

func (r *resolver) allowed(n *node, state stateMap) (ok bool) {
	defer func() {
		// A malformed event can panic inside the auth rules; it is not allowed.
		if recover() != nil {
			ok = false
		}
	}()
	auth := map[gomatrixserverlib.StateKeyTuple]gomatrixserverlib.PDU{}
	for _, aid := range n.auth {
		if a := r.st.nodes[aid]; a != nil && a.isState && !r.st.isRejected(aid) {
			auth[a.key()] = a.pdu
		}
	}
	for _, k := range gomatrixserverlib.StateNeededForAuth([]gomatrixserverlib.PDU{n.pdu}).Tuples() {
		if s, ok := state[k]; ok && !r.st.isRejected(s.id) {
			auth[k] = s.pdu
		}
	}
	events := make([]gomatrixserverlib.PDU, 0, len(auth))
	for _, p := range auth {
		events = append(events, p)
	}
	provider, err := gomatrixserverlib.NewAuthEvents(events)
	if err != nil {
		return false
	}
	return gomatrixserverlib.Allowed(n.pdu, provider, userIDForSender) == nil
}
