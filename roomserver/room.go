package roomserver

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// stateRef is one entry of a room head's state: the event, and the content
// field that decisions read without loading it (membership, join rule,
// history visibility).
type stateRef struct {
	id    string
	value string
}

// room is the in-memory head of a room. The head describes the room
// including events queued but not yet committed and is guarded by mu. It
// holds state as references; events are loaded (and cached) when needed,
// so a big room costs little memory.
type room struct {
	mu      sync.Mutex
	id      string
	version gomatrixserverlib.IRoomVersion
	// nid is the room's storage ID: 0 until the write of its create event
	// ran (on the storage writer goroutine).
	nid atomic.Int64

	// head (under mu)
	state       map[gomatrixserverlib.StateKeyTuple]stateRef
	extremities []string
	maxDepth    int64
	// creators are the privileged creators of a v12 room (MSC4289).
	creators []string
	// local maps the joined members of this server to their display names
	// (push rule evaluation); joined counts all joined members.
	local  map[string]string
	joined int

	// pending waits for the room's last queued write (under mu).
	pending func() error
	// queued counts writes not yet committed or failed; pinned holds their
	// events (and state redacted by them), which storage does not have yet.
	queued atomic.Int32
	pinMu  sync.Mutex
	pinned map[string]gomatrixserverlib.PDU

	// broken is set when a queued write failed (the head no longer matches
	// the database) or the head was dropped: the room must be reloaded.
	broken atomic.Bool
}

func newRoom(id string, ver gomatrixserverlib.IRoomVersion) *room {
	return &room{id: id, version: ver, state: map[gomatrixserverlib.StateKeyTuple]stateRef{}, local: map[string]string{}}
}

// retire marks an idle head as dropped and reports whether it was idle: a
// head with writes in flight, or in use, stays cached. The mark is made
// under the lock, so a holder that locks the room later sees it and reloads.
func (r *room) retire() bool {
	if !r.mu.TryLock() {
		return false
	}
	defer r.mu.Unlock()
	if r.queued.Load() > 0 {
		return false
	}
	r.broken.Store(true)
	return true
}

func (r *room) ref(typ, key string) (stateRef, bool) {
	ref, ok := r.state[gomatrixserverlib.StateKeyTuple{EventType: typ, StateKey: key}]
	return ref, ok
}

// setRef records a state entry and keeps the member counts in step.
func (r *room) setRef(t gomatrixserverlib.StateKeyTuple, ref stateRef) {
	if t.EventType == spec.MRoomMember {
		if old, ok := r.state[t]; ok && old.value == spec.Join {
			r.joined--
		}
		if ref.value == spec.Join {
			r.joined++
		}
	}
	r.state[t] = ref
}

// membership returns a user's current membership ("" when none).
func (r *room) membership(userID string) string {
	ref, _ := r.ref(spec.MRoomMember, userID)
	return ref.value
}

// isCreator reports whether a user is a privileged creator of the room
// (v12: unlimited power).
func (r *room) isCreator(userID string) bool {
	for _, c := range r.creators {
		if c == userID {
			return true
		}
	}
	return false
}

func (r *room) pin(pdus ...gomatrixserverlib.PDU) {
	r.pinMu.Lock()
	if r.pinned == nil {
		r.pinned = map[string]gomatrixserverlib.PDU{}
	}
	for _, p := range pdus {
		r.pinned[p.EventID()] = p
	}
	r.pinMu.Unlock()
}

func (r *room) unpin(ids ...string) {
	r.pinMu.Lock()
	for _, id := range ids {
		delete(r.pinned, id)
	}
	r.pinMu.Unlock()
}

func (r *room) pinnedEvent(id string) gomatrixserverlib.PDU {
	r.pinMu.Lock()
	defer r.pinMu.Unlock()
	return r.pinned[id]
}

// state values: the content field a stateRef carries.
func refValue(pdu gomatrixserverlib.PDU) string {
	var field string
	switch pdu.Type() {
	case spec.MRoomMember:
		m, _ := pdu.Membership()
		return m
	case spec.MRoomJoinRules:
		field = "join_rule"
	case spec.MRoomHistoryVisibility:
		field = "history_visibility"
	default:
		return ""
	}
	var c map[string]json.RawMessage
	if json.Unmarshal(pdu.Content(), &c) != nil {
		return ""
	}
	var v string
	json.Unmarshal(c[field], &v)
	return v
}

// applyToHead records a state event in the head (r.mu held).
func (rs *Roomserver) applyToHead(r *room, pdu gomatrixserverlib.PDU) {
	sk := pdu.StateKey()
	if sk == nil {
		return
	}
	t := gomatrixserverlib.StateKeyTuple{EventType: pdu.Type(), StateKey: *sk}
	ref := stateRef{id: pdu.EventID(), value: refValue(pdu)}
	r.setRef(t, ref)
	switch pdu.Type() {
	case spec.MRoomMember:
		if rs.isLocal(*sk) {
			if ref.value == spec.Join {
				r.local[*sk] = memberDisplayName(pdu)
			} else {
				delete(r.local, *sk)
			}
		}
	case spec.MRoomCreate:
		if *sk == "" {
			r.creators = creatorsOf(r.version, pdu)
		}
	}
}

// replaceHeadState sets the whole head state (after a fork was resolved).
func (rs *Roomserver) replaceHeadState(r *room, state stateMap) {
	r.state = make(map[gomatrixserverlib.StateKeyTuple]stateRef, len(state))
	r.local = map[string]string{}
	r.joined = 0
	for _, pdu := range state {
		rs.applyToHead(r, pdu)
	}
}

func memberDisplayName(pdu gomatrixserverlib.PDU) string {
	var c struct {
		DisplayName string `json:"displayname"`
	}
	json.Unmarshal(pdu.Content(), &c)
	return c.DisplayName
}

// creatorsOf lists a v12 room's privileged creators: the create event's
// sender and its additional_creators.
func creatorsOf(ver gomatrixserverlib.IRoomVersion, create gomatrixserverlib.PDU) []string {
	if !ver.PrivilegedCreators() {
		return nil
	}
	out := []string{string(create.SenderID())}
	var c struct {
		AdditionalCreators []string `json:"additional_creators"`
	}
	json.Unmarshal(create.Content(), &c)
	return append(out, c.AdditionalCreators...)
}

// authEvents gives the auth rules the room's current state for the tuples
// they need (r.mu held).
func (rs *Roomserver) authEvents(ctx context.Context, r *room, needed gomatrixserverlib.StateNeeded) (*gomatrixserverlib.AuthEvents, error) {
	var events []gomatrixserverlib.PDU
	tuples := append(needed.Tuples(), gomatrixserverlib.StateKeyTuple{EventType: spec.MRoomCreate})
	seen := map[gomatrixserverlib.StateKeyTuple]bool{}
	for _, t := range tuples {
		if seen[t] {
			continue
		}
		seen[t] = true
		ref, ok := r.state[t]
		if !ok {
			continue
		}
		ev, err := rs.loadEvent(ctx, r, ref.id)
		if err != nil {
			return nil, err
		}
		events = append(events, ev)
	}
	return gomatrixserverlib.NewAuthEvents(events)
}

// powerLevels returns the room's power levels (defaults when unset).
func (rs *Roomserver) powerLevels(ctx context.Context, r *room) (*gomatrixserverlib.PowerLevelContent, error) {
	ev, err := rs.stateEvent(ctx, r, spec.MRoomPowerLevels, "")
	if err != nil {
		return nil, err
	}
	if ev != nil {
		pl, err := gomatrixserverlib.NewPowerLevelContentFromEvent(ev)
		return &pl, err
	}
	pl := gomatrixserverlib.PowerLevelContent{}
	pl.Defaults()
	if create, err := rs.stateEvent(ctx, r, spec.MRoomCreate, ""); err != nil {
		return nil, err
	} else if create != nil {
		pl.Users = map[string]int64{string(create.SenderID()): 100}
	}
	return &pl, nil
}

// currentState loads the room's whole current state (r.mu held): for state
// resolution and the few callers that need every event.
func (rs *Roomserver) currentState(ctx context.Context, r *room) (stateMap, error) {
	out := make(stateMap, len(r.state))
	for t, ref := range r.state {
		ev, err := rs.loadEvent(ctx, r, ref.id)
		if err != nil {
			return nil, err
		}
		out[t] = ev
	}
	return out, nil
}

// stateEvents loads the current state events of the given types with an
// empty state key (r.mu held), by type; unset types are absent.
func (rs *Roomserver) stateEvents(ctx context.Context, r *room, types []string) (map[string]gomatrixserverlib.PDU, error) {
	out := map[string]gomatrixserverlib.PDU{}
	for _, typ := range types {
		ev, err := rs.stateEvent(ctx, r, typ, "")
		if err != nil {
			return nil, err
		}
		if ev != nil {
			out[typ] = ev
		}
	}
	return out, nil
}

type stateMap = map[gomatrixserverlib.StateKeyTuple]gomatrixserverlib.PDU

// isLocal reports whether a user belongs to this server.
func (rs *Roomserver) isLocal(userID string) bool {
	_, domain, ok := strings.Cut(userID, ":")
	return ok && domain == string(rs.origin)
}

// currentEvent is stateEvent for callers that do not hold r.mu.
func (rs *Roomserver) currentEvent(ctx context.Context, r *room, typ, key string) (gomatrixserverlib.PDU, error) {
	r.mu.Lock()
	ref, ok := r.ref(typ, key)
	r.mu.Unlock()
	if !ok {
		return nil, nil
	}
	return rs.loadEvent(ctx, r, ref.id)
}
