// Package dagtest builds rooms of real, signed events as other homeservers
// would, for tests: events on any fork, with auth events picked from the
// state before them or given outright.
package dagtest

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// Server signs events as a homeserver.
type Server struct {
	Name  spec.ServerName
	KeyID gomatrixserverlib.KeyID
	Key   ed25519.PrivateKey
}

// NewServer makes a server whose key derives from its name, so that events
// (and their IDs) are the same on every run.
func NewServer(name string) *Server {
	seed := sha256.Sum256([]byte("dagtest " + name))
	return &Server{Name: spec.ServerName(name), KeyID: "ed25519:test", Key: ed25519.NewKeyFromSeed(seed[:])}
}

// State is a room state by (type, state_key).
type State = map[gomatrixserverlib.StateKeyTuple]gomatrixserverlib.PDU

// Room builds the events of one room and remembers the state after each.
type Room struct {
	tb    testing.TB
	Ver   gomatrixserverlib.IRoomVersion
	ID    string // the room ID; set by the create event in v12
	ts    int64  // origin_server_ts of the next event, in ms
	after map[string]State
}

// NewRoom starts a room of the version. roomID is used up to v11; v12 room
// IDs come from the create event.
func NewRoom(tb testing.TB, version, roomID string) *Room {
	tb.Helper()
	ver, err := gomatrixserverlib.GetRoomVersion(gomatrixserverlib.RoomVersion(version))
	if err != nil {
		tb.Fatal(err)
	}
	r := &Room{tb: tb, Ver: ver, ts: 1_700_000_000_000, after: map[string]State{}}
	if !ver.DomainlessRoomIDs() {
		r.ID = roomID
	}
	return r
}

// SetTime sets the origin_server_ts (ms) of the next event; each event
// built moves it on by one.
func (r *Room) SetTime(ms int64) { r.ts = ms }

// Time is the origin_server_ts the next event gets.
func (r *Room) Time() int64 { return r.ts }

// Event builds an event by sender (of srv) on top of prev, citing the auth
// events it needs from before, the state before it, and records the state
// after it.
func (r *Room) Event(srv *Server, sender, typ string, stateKey *string, content any, before State, prev ...gomatrixserverlib.PDU) gomatrixserverlib.PDU {
	r.tb.Helper()
	b := r.builder(sender, typ, stateKey, content, prev)
	provider, err := gomatrixserverlib.NewAuthEvents(Events(before))
	if err != nil {
		r.tb.Fatal(err)
	}
	if err := b.AddAuthEvents(provider); err != nil {
		r.tb.Fatal(err)
	}
	pdu := r.build(srv, b)
	after := Clone(before)
	if pdu.StateKey() != nil {
		after[gomatrixserverlib.StateKeyTuple{EventType: typ, StateKey: *pdu.StateKey()}] = pdu
	}
	r.after[pdu.EventID()] = after
	return pdu
}

// Build builds an event citing exactly authIDs (in v12 leave out the create
// event: it is implied) and prevs. It records no state.
func (r *Room) Build(srv *Server, sender, typ string, stateKey *string, content any, authIDs []string, prev ...gomatrixserverlib.PDU) gomatrixserverlib.PDU {
	r.tb.Helper()
	b := r.builder(sender, typ, stateKey, content, prev)
	if authIDs == nil {
		authIDs = []string{}
	}
	b.AuthEvents = authIDs
	return r.build(srv, b)
}

func (r *Room) builder(sender, typ string, stateKey *string, content any, prev []gomatrixserverlib.PDU) *gomatrixserverlib.EventBuilder {
	raw, err := json.Marshal(content)
	if err != nil {
		r.tb.Fatal(err)
	}
	prevIDs := []string{}
	depth := int64(1)
	for _, p := range prev {
		prevIDs = append(prevIDs, p.EventID())
		depth = max(depth, p.Depth()+1)
	}
	proto := gomatrixserverlib.ProtoEvent{SenderID: sender, RoomID: r.ID, Type: typ, StateKey: stateKey,
		Content: raw, PrevEvents: prevIDs, Depth: depth}
	if typ == spec.MRoomCreate && r.Ver.DomainlessRoomIDs() {
		proto.RoomID = ""
	}
	return r.Ver.NewEventBuilderFromProtoEvent(&proto)
}

func (r *Room) build(srv *Server, b *gomatrixserverlib.EventBuilder) gomatrixserverlib.PDU {
	pdu, err := b.Build(time.UnixMilli(r.ts), srv.Name, srv.KeyID, srv.Key)
	if err != nil {
		r.tb.Fatalf("building %s: %v", b.Type, err)
	}
	r.ts++
	if pdu.Type() == spec.MRoomCreate && r.ID == "" {
		r.ID = pdu.RoomID().String()
	}
	return pdu
}

// After is the state after an event built with Event.
func (r *Room) After(ev gomatrixserverlib.PDU) State {
	s, ok := r.after[ev.EventID()]
	if !ok {
		r.tb.Fatalf("no state recorded after %s", ev.EventID())
	}
	return s
}

// SetAfter records the state after an event (for events made with Build).
func (r *Room) SetAfter(ev gomatrixserverlib.PDU, s State) { r.after[ev.EventID()] = s }

// StateKey returns a pointer to s.
func StateKey(s string) *string { return &s }

// Clone copies a state.
func Clone(s State) State {
	out := make(State, len(s)+1)
	for k, v := range s {
		out[k] = v
	}
	return out
}

// Events lists a state's events sorted by type, then state key.
func Events(s State) []gomatrixserverlib.PDU {
	keys := make([]gomatrixserverlib.StateKeyTuple, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b gomatrixserverlib.StateKeyTuple) int {
		if c := strings.Compare(a.EventType, b.EventType); c != 0 {
			return c
		}
		return strings.Compare(a.StateKey, b.StateKey)
	})
	out := make([]gomatrixserverlib.PDU, len(keys))
	for i, k := range keys {
		out[i] = s[k]
	}
	return out
}

// ByKey indexes events by (type, state_key).
func ByKey(events []gomatrixserverlib.PDU) State {
	out := make(State, len(events))
	for _, ev := range events {
		if sk := ev.StateKey(); sk != nil {
			out[gomatrixserverlib.StateKeyTuple{EventType: ev.Type(), StateKey: *sk}] = ev
		}
	}
	return out
}
