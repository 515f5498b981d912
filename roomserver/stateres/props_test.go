package stateres_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/roomserver/internal/dagtest"
	"matrixhs/roomserver/stateres"
)

// TestOrderIndependence resolves random forks (any shape) with the state
// sets permuted and the events in them and the auth events shuffled, and
// with every auth event left to the loader: the result is the same, sorted
// by type and state key.
func TestOrderIndependence(t *testing.T) {
	ctx := context.Background()
	seeds := 40
	if testing.Short() {
		seeds = 10
	}
	for _, version := range []string{"1", "2", "10", "11", "12"} {
		t.Run("v"+version, func(t *testing.T) {
			for seed := range seeds {
				g := newForkGen(t, version, uint64(seed), false)
				states := g.fork(2+seed%3, 10+seed%20)
				want, err := g.r.resolve(states...)
				if err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				rng := rand.New(rand.NewPCG(uint64(seed), 7))
				for trial := range 4 {
					in := stateres.Input{StateSets: sets(states...), AuthEvents: g.r.chain(states...)}
					rng.Shuffle(len(in.StateSets), func(i, j int) { in.StateSets[i], in.StateSets[j] = in.StateSets[j], in.StateSets[i] })
					for _, s := range in.StateSets {
						rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
					}
					rng.Shuffle(len(in.AuthEvents), func(i, j int) {
						in.AuthEvents[i], in.AuthEvents[j] = in.AuthEvents[j], in.AuthEvents[i]
					})
					if trial == 3 {
						in.AuthEvents, in.Loader = nil, &mapLoader{events: g.r.all}
					}
					out, err := stateres.Resolve(ctx, g.r.Ver, in)
					if err != nil {
						t.Fatalf("seed %d trial %d: %v", seed, trial, err)
					}
					if !slices.IsSortedFunc(out, func(a, b gomatrixserverlib.PDU) int {
						if c := strings.Compare(a.Type(), b.Type()); c != 0 {
							return c
						}
						return strings.Compare(*a.StateKey(), *b.StateKey())
					}) {
						t.Fatalf("seed %d: result not sorted by type and state key", seed)
					}
					if d := diffStates(dagtest.ByKey(out), want); d != "" {
						t.Fatalf("seed %d trial %d: result depends on input order: %s", seed, trial, d)
					}
				}
			}
		})
	}
}

// TestLoaderBatches: the loader is asked for each missing event once, a
// level of the auth graph per call, and never for events it was given.
func TestLoaderBatches(t *testing.T) {
	g := newForkGen(t, "11", 3, false)
	states := g.fork(3, 30)
	loader := &countingLoader{mapLoader: mapLoader{events: g.r.all}, times: map[string]int{}}
	if _, err := stateres.Resolve(context.Background(), g.r.Ver, stateres.Input{StateSets: sets(states...), Loader: loader}); err != nil {
		t.Fatal(err)
	}
	if loader.calls == 0 {
		t.Fatal("the fork needed no auth events from the loader; pick another seed")
	}
	for id, n := range loader.times {
		if n > 1 {
			t.Errorf("%s asked for %d times", id, n)
		}
		for _, s := range states {
			for _, ev := range s {
				if ev.EventID() == id {
					t.Errorf("%s, in a state set, asked of the loader", id)
				}
			}
		}
	}
	if loader.calls > 10 {
		t.Errorf("%d loader calls for %d events", loader.calls, len(loader.times))
	}
}

type countingLoader struct {
	mapLoader
	times map[string]int
}

func (l *countingLoader) LoadEvents(ctx context.Context, ids []string) ([]gomatrixserverlib.PDU, error) {
	for _, id := range ids {
		l.times[id]++
	}
	return l.mapLoader.LoadEvents(ctx, ids)
}

// TestV1DelegatesToGMSL: room version 1 resolves as gomatrixserverlib's v1
// resolver does when given, as Synapse gives its v1 resolver, the
// unconflicted state for the auth checks.
func TestV1DelegatesToGMSL(t *testing.T) {
	for seed := range 20 {
		g := newForkGen(t, "1", uint64(seed), false)
		states := g.fork(2+seed%2, 12)
		ours := g.r.mustResolve(states...)
		var unconflicted []gomatrixserverlib.PDU
		for k, ev := range states[0] {
			same := true
			for _, s := range states[1:] {
				same = same && (s[k] == nil || s[k] == ev)
			}
			if same {
				unconflicted = append(unconflicted, ev)
			}
		}
		res, err := gomatrixserverlib.ResolveConflictsNew("1", sets(states...), unconflicted,
			func(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) { return spec.NewUserID(string(s), true) },
			func(string) bool { return false })
		if err != nil {
			t.Fatal(err)
		}
		if d := diffStates(ours, dagtest.ByKey(res)); d != "" {
			t.Fatalf("seed %d: %s", seed, d)
		}
	}
}

// FuzzResolve feeds random forks, some of them damaged (auth events
// dropped, events of another room or messages slipped in, the create event
// removed, a key doubled in a set), and checks the resolver never panics,
// resolves every undamaged fork, and returns only events of the room, one
// per key.
func FuzzResolve(f *testing.F) {
	for i := range uint8(12) {
		f.Add(uint64(i), i%5, i%4, 5+i*3, i%3, i%7)
	}
	versions := []string{"1", "2", "10", "11", "12"}
	f.Fuzz(func(t *testing.T, seed uint64, version, branches, steps, drop, damage uint8) {
		ver := versions[int(version)%len(versions)]
		g := newForkGen(t, ver, seed, false)
		states := g.fork(1+int(branches%4), int(steps%40))
		in := stateres.Input{StateSets: sets(states...), AuthEvents: g.r.chain(states...)}
		rng := rand.New(rand.NewPCG(seed, uint64(damage)))
		for range drop % 8 {
			if len(in.AuthEvents) > 0 {
				i := rng.IntN(len(in.AuthEvents))
				in.AuthEvents = slices.Delete(in.AuthEvents, i, i+1)
			}
		}
		switch damage % 7 {
		case 1:
			other := newForkGen(t, ver, seed+1000, false)
			in.StateSets[0] = append(in.StateSets[0], other.baseHead)
		case 2:
			msg := g.r.ev(g.srv(g.bob), g.bob, "m.room.message", nil, map[string]any{}, g.baseState, g.baseHead)
			in.StateSets[0] = append(in.StateSets[0], msg)
		case 3:
			for i, s := range in.StateSets {
				in.StateSets[i] = slices.DeleteFunc(slices.Clone(s), func(p gomatrixserverlib.PDU) bool { return p.Type() == spec.MRoomCreate })
			}
		case 4:
			topic := g.r.ev(g.srv(g.bob), g.bob, spec.MRoomTopic, sk(""), map[string]any{"topic": "dup"}, g.baseState, g.baseHead)
			in.StateSets[0] = append(in.StateSets[0], topic)
		case 5:
			in.Loader, in.AuthEvents = &mapLoader{events: g.r.all}, in.AuthEvents[:len(in.AuthEvents)/2]
		case 6:
			in.StateSets = append(in.StateSets, nil, in.StateSets[0])
		}
		out, err := stateres.Resolve(context.Background(), g.r.Ver, in)
		if err != nil {
			if drop%8 == 0 && damage%7 != 1 && damage%7 != 2 && damage%7 != 4 {
				t.Fatalf("undamaged fork failed: %v", err)
			}
			return
		}
		keys := map[gomatrixserverlib.StateKeyTuple]bool{}
		for _, p := range out {
			k := gomatrixserverlib.StateKeyTuple{EventType: p.Type(), StateKey: *p.StateKey()}
			if keys[k] {
				t.Fatalf("two events for (%s, %q)", k.EventType, k.StateKey)
			}
			keys[k] = true
			if _, ok := g.r.all[p.EventID()]; !ok {
				t.Fatalf("resolved to %s, not an event of the room", p.EventID())
			}
		}
	})
}
