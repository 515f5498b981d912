package stateres_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/roomserver/internal/dagtest"
	"matrixhs/roomserver/stateres"
)

// craftV2 makes an event of room version 2 (whose event IDs are free text)
// straight from JSON, so auth_events can form cycles.
func craftV2(t *testing.T, id, typ, stateKey string, content any, auth ...string) gomatrixserverlib.PDU {
	t.Helper()
	return craftV2In(t, "!cycle:example.com", id, typ, stateKey, content, auth...)
}

func craftV2In(t *testing.T, roomID, id, typ, stateKey string, content any, auth ...string) gomatrixserverlib.PDU {
	t.Helper()
	refs := [][]any{}
	for _, a := range auth {
		refs = append(refs, []any{a, map[string]string{"sha256": "AAAA"}})
	}
	raw, err := json.Marshal(map[string]any{
		"event_id": id, "room_id": roomID, "type": typ, "state_key": stateKey, "sender": alice,
		"content": content, "auth_events": refs, "prev_events": [][]any{}, "depth": 1, "origin_server_ts": 1,
		"hashes": map[string]string{"sha256": "AAAA"}, "signatures": map[string]any{},
	})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := gomatrixserverlib.MustGetRoomVersion("2").NewEventFromTrustedJSON(raw, false)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

type failingLoader struct{}

func (failingLoader) LoadEvents(context.Context, []string) ([]gomatrixserverlib.PDU, error) {
	return nil, errors.New("database on fire")
}

// TestInvalidInputIsAnError: malformed input of every kind is an error (of
// the right kind), never a panic.
func TestInvalidInputIsAnError(t *testing.T) {
	ctx := context.Background()
	g := newForkGen(t, "11", 1, false)
	states := g.fork(2, 12)
	other := newForkGen(t, "11", 2, false) // another room
	v10 := newForkGen(t, "10", 3, false)
	chain := g.r.chain(states...)
	v11 := g.r.Ver

	withExtra := func(ev gomatrixserverlib.PDU) [][]gomatrixserverlib.PDU {
		s := sets(states...)
		s[0] = append(s[0], ev)
		return s
	}
	baseTopic := g.baseState[gomatrixserverlib.StateKeyTuple{EventType: spec.MRoomTopic}]
	otherTopic := g.r.ev(g.srv(g.bob), g.bob, spec.MRoomTopic, sk(""), map[string]any{"topic": "x"}, g.baseState, g.baseHead)
	message := g.r.ev(g.srv(g.bob), g.bob, "m.room.message", nil, map[string]any{"body": "x"}, g.baseState, g.baseHead)

	// Cycles through auth_events (room version 2 event IDs are free text).
	create := craftV2(t, "$c:example.com", spec.MRoomCreate, "", map[string]any{"creator": alice})
	join := craftV2(t, "$j:example.com", spec.MRoomMember, alice, map[string]any{"membership": "join"}, "$c:example.com")
	plA := craftV2(t, "$a:example.com", spec.MRoomPowerLevels, "", map[string]any{"users": map[string]any{alice: 100}}, "$c:example.com", "$j:example.com", "$b:example.com")
	plB := craftV2(t, "$b:example.com", spec.MRoomPowerLevels, "", map[string]any{"users": map[string]any{alice: 100}}, "$c:example.com", "$j:example.com", "$a:example.com")
	self := craftV2(t, "$s:example.com", spec.MRoomPowerLevels, "", map[string]any{"users": map[string]any{alice: 100}}, "$c:example.com", "$j:example.com", "$s:example.com")
	// No create event anywhere: a room whose events do not cite one.
	orphanJoin := craftV2(t, "$oj:example.com", spec.MRoomMember, alice, map[string]any{"membership": "join"})
	orphanA := craftV2(t, "$oa:example.com", spec.MRoomTopic, "", map[string]any{"topic": "a"}, "$oj:example.com")
	orphanB := craftV2(t, "$ob:example.com", spec.MRoomTopic, "", map[string]any{"topic": "b"}, "$oj:example.com")
	secondCreate := craftV2(t, "$c2:example.com", spec.MRoomCreate, "", map[string]any{"creator": bob})
	// An auth event of another room under the ID an event here cites.
	foreignJoin := craftV2In(t, "!elsewhere:example.com", "$j:example.com", spec.MRoomMember, alice, map[string]any{"membership": "join"}, "$c:example.com")
	v2 := gomatrixserverlib.MustGetRoomVersion("2")

	cases := []struct {
		name  string
		ver   gomatrixserverlib.IRoomVersion
		in    stateres.Input
		check func(error) bool
	}{
		{"no room version", nil, stateres.Input{StateSets: sets(states...)}, isInvalid},
		{"nil event", v11, stateres.Input{StateSets: [][]gomatrixserverlib.PDU{{nil}}}, isInvalid},
		{"message in a state set", v11, stateres.Input{StateSets: withExtra(message), AuthEvents: chain}, isInvalid},
		{"two events for one key in a set", v11, stateres.Input{StateSets: withExtra(otherTopic), AuthEvents: chain}, func(err error) bool {
			return isInvalid(err) && baseTopic != nil
		}},
		{"event of another room", v11, stateres.Input{StateSets: withExtra(other.baseState[gomatrixserverlib.StateKeyTuple{EventType: spec.MRoomMember, StateKey: other.bob}]), AuthEvents: chain}, isInvalid},
		{"auth event of another room", v2, stateres.Input{
			StateSets:  [][]gomatrixserverlib.PDU{{create, plA}, {create, plB}},
			AuthEvents: []gomatrixserverlib.PDU{foreignJoin},
		}, isInvalid},
		{"event of another room version", v11, stateres.Input{StateSets: withExtra(v10.baseHead)}, isInvalid},
		{"missing auth events", v11, stateres.Input{StateSets: sets(states...)}, func(err error) bool {
			var missing *stateres.MissingEventsError
			return errors.As(err, &missing) && len(missing.EventIDs) > 0 && slices.IsSorted(missing.EventIDs)
		}},
		{"loader fails", v11, stateres.Input{StateSets: sets(states...), Loader: failingLoader{}}, func(err error) bool {
			return err != nil && strings.Contains(err.Error(), "database on fire")
		}},
		{"loader returns another room's events", v11, stateres.Input{StateSets: sets(states...), Loader: &mapLoader{events: other.r.all}}, func(err error) bool {
			var missing *stateres.MissingEventsError
			return isInvalid(err) || errors.As(err, &missing)
		}},
		{"cycle through conflicted power levels", v2, stateres.Input{
			StateSets: [][]gomatrixserverlib.PDU{{create, join, plA}, {create, join, plB}},
		}, isInvalid},
		{"power levels citing themselves", v2, stateres.Input{
			StateSets: [][]gomatrixserverlib.PDU{{create, join, self}, {create, join}},
		}, isInvalid},
		{"no create event", v2, stateres.Input{
			StateSets: [][]gomatrixserverlib.PDU{{orphanJoin, orphanA}, {orphanJoin, orphanB}},
		}, isInvalid},
		{"two create events", v2, stateres.Input{
			StateSets: [][]gomatrixserverlib.PDU{{create, join, plA}, {secondCreate, join, plB}},
		}, isInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := stateres.Resolve(ctx, c.ver, c.in)
			if !c.check(err) {
				t.Fatalf("err = %v (result %d events)", err, len(out))
			}
		})
	}
}

func isInvalid(err error) bool { return errors.Is(err, stateres.ErrInvalidInput) }

// TestMalformedPowerLevels: power levels the auth rules cannot parse make
// resolution fail when the ordering needs them, and are simply not applied
// when replayed.
func TestMalformedPowerLevels(t *testing.T) {
	g := newForkGen(t, "11", 4, false)
	r := g.r
	plKey := gomatrixserverlib.StateKeyTuple{EventType: spec.MRoomPowerLevels}
	content := map[string]any{"users": map[string]any{g.alice: 100, g.bob: "fifty"}}
	bad := r.ev(g.srv(g.alice), g.alice, spec.MRoomPowerLevels, sk(""), content, g.baseState, g.baseHead)
	if allowedBy(bad, g.baseState) == nil {
		t.Fatal("the auth rules allowed unparseable power levels")
	}
	// Only the bad power levels conflict: replaying them fails auth.
	out := r.mustResolve(r.After(bad), g.baseState)
	if out[plKey].EventID() != g.baseState[plKey].EventID() {
		t.Fatalf("power levels = %s, want the base ones", out[plKey].EventID())
	}
	// A ban citing them must be ordered by its sender's power in them.
	ban := r.ev(g.srv(g.alice), g.alice, spec.MRoomMember, sk(g.base[0]), map[string]any{"membership": "ban"}, r.After(bad), bad)
	if _, err := r.resolve(r.After(ban), g.baseState); !isInvalid(err) {
		t.Fatalf("err = %v, want invalid input", err)
	}
}

// TestUnparseableEventIsAnError: an event whose room ID the library parses
// but its accessor then panics on is refused.
func TestUnparseableEventIsAnError(t *testing.T) {
	raw := []byte(`{"room_id":"!","type":"m.room.topic","state_key":"","sender":"@a:example.com",` +
		`"content":{},"auth_events":[],"prev_events":[],"depth":1,"origin_server_ts":1,"hashes":{"sha256":"AAAA"},"signatures":{}}`)
	ver := gomatrixserverlib.MustGetRoomVersion("12")
	ev, err := ver.NewEventFromTrustedJSON(raw, false)
	if err != nil {
		t.Fatalf("the library refuses the event already (pick another): %v", err)
	}
	_, err = stateres.Resolve(context.Background(), ver, stateres.Input{StateSets: [][]gomatrixserverlib.PDU{{ev}}})
	if !isInvalid(err) {
		t.Fatalf("err = %v, want invalid input", err)
	}
}

// TestTrivialInputs: no state sets, one, and sets that agree need no auth
// events at all.
func TestTrivialInputs(t *testing.T) {
	ctx := context.Background()
	g := newForkGen(t, "12", 5, false)
	ver := g.r.Ver
	out, err := stateres.Resolve(ctx, ver, stateres.Input{})
	if err != nil || len(out) != 0 {
		t.Fatalf("no state sets: %d events, %v", len(out), err)
	}
	for _, n := range []int{1, 3} {
		var in [][]gomatrixserverlib.PDU
		for range n {
			in = append(in, dagtest.Events(g.baseState))
		}
		out, err := stateres.Resolve(ctx, ver, stateres.Input{StateSets: in})
		if err != nil {
			t.Fatal(err)
		}
		if d := diffStates(dagtest.ByKey(out), g.baseState); d != "" {
			t.Fatalf("%d equal sets: %s", n, d)
		}
	}
}
