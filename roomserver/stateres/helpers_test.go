package stateres_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/roomserver/internal/dagtest"
	"matrixhs/roomserver/stateres"
)

var sk = dagtest.StateKey

// testRoom is a dagtest room that keeps every event it built, so tests can
// hand the resolvers auth chains.
type testRoom struct {
	*dagtest.Room
	tb  testing.TB
	all map[string]gomatrixserverlib.PDU
}

func newTestRoom(tb testing.TB, version string) *testRoom {
	return newTestRoomID(tb, version, 0)
}

// newTestRoomID makes room number n: its room ID (and, in v12, its create
// event's timestamp) differs from other numbers'.
func newTestRoomID(tb testing.TB, version string, n uint64) *testRoom {
	r := &testRoom{Room: dagtest.NewRoom(tb, version, fmt.Sprintf("!room%d:a.test", n)), tb: tb, all: map[string]gomatrixserverlib.PDU{}}
	r.SetTime(r.Time() + int64(n)*1_000_000)
	return r
}

func (r *testRoom) ev(srv *dagtest.Server, sender, typ string, stateKey *string, content any, before dagtest.State, prev ...gomatrixserverlib.PDU) gomatrixserverlib.PDU {
	r.tb.Helper()
	p := r.Event(srv, sender, typ, stateKey, content, before, prev...)
	r.all[p.EventID()] = p
	return p
}

func (r *testRoom) build(srv *dagtest.Server, sender, typ string, stateKey *string, content any, authIDs []string, prev ...gomatrixserverlib.PDU) gomatrixserverlib.PDU {
	r.tb.Helper()
	p := r.Build(srv, sender, typ, stateKey, content, authIDs, prev...)
	r.all[p.EventID()] = p
	return p
}

// chain is the union of the auth chains of the events of the states, sorted
// by event ID.
func (r *testRoom) chain(states ...dagtest.State) []gomatrixserverlib.PDU {
	seen := map[string]gomatrixserverlib.PDU{}
	var queue []gomatrixserverlib.PDU
	for _, s := range states {
		queue = append(queue, dagtest.Events(s)...)
	}
	for len(queue) > 0 {
		p := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		for _, id := range p.AuthEventIDs() {
			if _, ok := seen[id]; ok {
				continue
			}
			a, ok := r.all[id]
			if !ok {
				r.tb.Fatalf("auth event %s of %s was not built here", id, p.EventID())
			}
			seen[id] = a
			queue = append(queue, a)
		}
	}
	out := make([]gomatrixserverlib.PDU, 0, len(seen))
	for _, p := range seen {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b gomatrixserverlib.PDU) int { return strings.Compare(a.EventID(), b.EventID()) })
	return out
}

func sets(states ...dagtest.State) [][]gomatrixserverlib.PDU {
	out := make([][]gomatrixserverlib.PDU, len(states))
	for i, s := range states {
		out[i] = dagtest.Events(s)
	}
	return out
}

// resolve runs our resolver with the auth chains supplied up front.
func (r *testRoom) resolve(states ...dagtest.State) (dagtest.State, error) {
	out, err := stateres.Resolve(context.Background(), r.Ver, stateres.Input{StateSets: sets(states...), AuthEvents: r.chain(states...)})
	if err != nil {
		return nil, err
	}
	return dagtest.ByKey(out), nil
}

func (r *testRoom) mustResolve(states ...dagtest.State) dagtest.State {
	r.tb.Helper()
	s, err := r.resolve(states...)
	if err != nil {
		r.tb.Fatalf("resolve: %v", err)
	}
	return s
}

// gmslResolve runs gomatrixserverlib's resolver as the roomserver did, the
// state events themselves among the auth events; a panic is an error.
func (r *testRoom) gmslResolve(states ...dagtest.State) (out dagtest.State, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, fmt.Errorf("gomatrixserverlib panicked: %v", p)
		}
	}()
	auth := r.chain(states...)
	for _, s := range states {
		auth = append(auth, dagtest.Events(s)...)
	}
	res, err := gomatrixserverlib.ResolveConflictsNew(r.Ver.Version(), sets(states...), auth,
		func(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) { return spec.NewUserID(string(s), true) },
		func(string) bool { return false })
	if err != nil {
		return nil, err
	}
	return dagtest.ByKey(res), nil
}

// diffStates describes where two states differ ("" if they do not).
func diffStates(a, b dagtest.State) string {
	var out []string
	keys := map[gomatrixserverlib.StateKeyTuple]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	for k := range keys {
		x, y := describe(a[k]), describe(b[k])
		if x != y {
			out = append(out, fmt.Sprintf("(%s, %q): %s vs %s", k.EventType, k.StateKey, x, y))
		}
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

func describe(p gomatrixserverlib.PDU) string {
	if p == nil {
		return "<none>"
	}
	return fmt.Sprintf("%s %s", p.EventID(), string(p.Content()))
}

// wantEvent fails unless state holds ev under its key.
func wantEvent(t *testing.T, state dagtest.State, ev gomatrixserverlib.PDU, name string) {
	t.Helper()
	k := gomatrixserverlib.StateKeyTuple{EventType: ev.Type(), StateKey: *ev.StateKey()}
	if got := state[k]; got == nil || got.EventID() != ev.EventID() {
		t.Errorf("(%s, %q) = %s, want %s (%s)", k.EventType, k.StateKey, describe(got), name, describe(ev))
	}
}
