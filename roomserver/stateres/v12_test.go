package stateres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/roomserver/internal/dagtest"
	"matrixhs/roomserver/stateres"
)

// explicitRoom builds events with auth events named outright, as Synapse's
// tests/state/test_v21.py does. In rooms before v12 the create event is
// added to every event's auth events (v12 implies it).
type explicitRoom struct {
	*testRoom
	srv    *dagtest.Server
	create gomatrixserverlib.PDU
}

func newExplicitRoom(t *testing.T, version string) *explicitRoom {
	r := &explicitRoom{testRoom: newTestRoom(t, version), srv: dagtest.NewServer("example.com")}
	content := map[string]any{"room_version": version}
	if r.Ver.CreatorInCreateEvent() {
		content["creator"] = alice
	}
	r.create = r.build(r.srv, alice, spec.MRoomCreate, sk(""), content, nil)
	return r
}

func (r *explicitRoom) event(sender, typ, stateKey string, content map[string]any, auth ...gomatrixserverlib.PDU) gomatrixserverlib.PDU {
	var ids []string
	if !r.Ver.DomainlessRoomIDs() {
		ids = append(ids, r.create.EventID())
	}
	for _, a := range auth {
		ids = append(ids, a.EventID())
	}
	return r.build(r.srv, sender, typ, sk(stateKey), content, ids, r.create)
}

func stateOf(events ...gomatrixserverlib.PDU) dagtest.State { return dagtest.ByKey(events) }

// TestConflictedSubgraphReplayed is test_state_reset_replay_conflicted_subgraph
// (MSC4297 problem B): one state set cites old power levels although its
// events were authorised by newer ones. v2.1 replays the power levels
// between the conflicted ones, so Bob's promotion of Charlie survives.
func TestConflictedSubgraphReplayed(t *testing.T) {
	r := newExplicitRoom(t, "12")
	join := map[string]any{"membership": "join"}
	ma := r.event(alice, spec.MRoomMember, alice, join)
	power1 := r.event(alice, spec.MRoomPowerLevels, "", map[string]any{"users": map[string]any{}}, ma)
	jr := r.event(alice, spec.MRoomJoinRules, "", map[string]any{"join_rule": "public"}, ma, power1)
	mb := r.event(bob, spec.MRoomMember, bob, join, power1, jr)
	mc := r.event(charlie, spec.MRoomMember, charlie, join, power1, jr)
	power2 := r.event(alice, spec.MRoomPowerLevels, "", map[string]any{"users": map[string]any{bob: 50}}, ma, power1)
	power3 := r.event(bob, spec.MRoomPowerLevels, "", map[string]any{"users": map[string]any{bob: 50, charlie: 50}}, mb, power2)
	me1 := r.event(evelyn, spec.MRoomMember, evelyn, join, power3, jr)
	// Evelyn's rename cites the old power levels directly, the new ones
	// only through her join.
	me2 := r.event(evelyn, spec.MRoomMember, evelyn, join, power1, jr, me1)
	mz := r.event(zara, spec.MRoomMember, zara, join, power3, jr)

	dodgy := stateOf(r.create, ma, mb, mc, me2, power1, jr)
	sensible := stateOf(r.create, ma, mb, mc, mz, power3, jr)
	got := r.mustResolve(dodgy, sensible)
	want := stateOf(r.create, ma, mb, mc, me1, mz, power3, jr)
	if d := diffStates(got, want); d != "" {
		t.Fatalf("resolved state differs (got vs want): %s", d)
	}
}

// TestResolutionStartsFromEmptyState is test_state_reset_start_empty_set
// (MSC4297 problem A): the join rules conflict and alice, who set both, has
// left in the unconflicted state. v2 starts from that state and loses the
// join rules; v2.1 starts from nothing and keeps the newer ones.
func TestResolutionStartsFromEmptyState(t *testing.T) {
	for _, version := range []string{"11", "12"} {
		t.Run("v"+version, func(t *testing.T) {
			r := newExplicitRoom(t, version)
			ma1 := r.event(alice, spec.MRoomMember, alice, map[string]any{"membership": "join"})
			users := map[string]any{bob: 100}
			if !r.Ver.PrivilegedCreators() {
				users[alice] = 100
			}
			power := r.event(alice, spec.MRoomPowerLevels, "", map[string]any{"users": users}, ma1)
			jr1 := r.event(alice, spec.MRoomJoinRules, "", map[string]any{"join_rule": "public"}, ma1, power)
			mb := r.event(bob, spec.MRoomMember, bob, map[string]any{"membership": "join"}, power, jr1)
			jr2 := r.event(alice, spec.MRoomJoinRules, "", map[string]any{"join_rule": "invite"}, ma1, power)
			ma2 := r.event(alice, spec.MRoomMember, alice, map[string]any{"membership": "leave"}, power, ma1)

			correct := stateOf(r.create, ma2, mb, power, jr2)
			incorrect := stateOf(r.create, ma2, mb, power, jr1)
			got := r.mustResolve(correct, incorrect)
			jrKey := gomatrixserverlib.StateKeyTuple{EventType: spec.MRoomJoinRules}
			if r.Ver.StateResAlgorithm() == gomatrixserverlib.StateResV2 {
				if jr := got[jrKey]; jr != nil {
					t.Fatalf("v2 kept join rules %s; the algorithm drops both (alice has left)", jr.EventID())
				}
				return
			}
			if d := diffStates(got, correct); d != "" {
				t.Fatalf("resolved state differs (got vs want): %s", d)
			}
		})
	}
}

// creatorRoom is a v12 room by alice (with carol as an additional creator
// when asked), bob an admin at 100, zara a member.
type creatorRoom struct {
	*testRoom
	srv  *dagtest.Server
	head gomatrixserverlib.PDU
	pl   gomatrixserverlib.PDU
}

func newCreatorRoom(t *testing.T, additional ...string) *creatorRoom {
	r := &creatorRoom{testRoom: newTestRoom(t, "12"), srv: dagtest.NewServer("example.com")}
	content := map[string]any{"room_version": "12"}
	if len(additional) > 0 {
		content["additional_creators"] = additional
	}
	ev := r.ev(r.srv, alice, spec.MRoomCreate, sk(""), content, dagtest.State{})
	ev = r.ev(r.srv, alice, spec.MRoomMember, sk(alice), map[string]any{"membership": "join"}, r.After(ev), ev)
	r.pl = r.ev(r.srv, alice, spec.MRoomPowerLevels, sk(""), map[string]any{"users": map[string]any{bob: 100}}, r.After(ev), ev)
	ev = r.ev(r.srv, alice, spec.MRoomJoinRules, sk(""), map[string]any{"join_rule": "public"}, r.After(r.pl), r.pl)
	for _, u := range append([]string{bob, zara}, additional...) {
		ev = r.ev(r.srv, u, spec.MRoomMember, sk(u), map[string]any{"membership": "join"}, r.After(ev), ev)
	}
	r.head = ev
	return r
}

func (r *creatorRoom) on(prev gomatrixserverlib.PDU, sender, typ, stateKey string, content map[string]any) gomatrixserverlib.PDU {
	return r.ev(r.srv, sender, typ, sk(stateKey), content, r.After(prev), prev)
}

// TestPrivilegedCreatorSortsFirst: the creator's power is infinite in the
// ordering of power events (MSC4289), so of two concurrent power level
// changes by the creator and an admin at 100, the creator's is applied
// first whatever the timestamps, and the admin's is then checked against
// it. Here the creator demotes bob, so bob's concurrent promotion of zara
// fails even though it was sent after the demotion.
func TestPrivilegedCreatorSortsFirst(t *testing.T) {
	r := newCreatorRoom(t)
	demote := r.on(r.head, alice, spec.MRoomPowerLevels, "", map[string]any{"users": map[string]any{bob: 50}})
	promote := r.on(r.head, bob, spec.MRoomPowerLevels, "", map[string]any{"users": map[string]any{bob: 100, zara: 100}})
	if demote.OriginServerTS() >= promote.OriginServerTS() {
		t.Fatal("the test needs the creator's change to be the older one")
	}
	for _, states := range [][]dagtest.State{{r.After(demote), r.After(promote)}, {r.After(promote), r.After(demote)}} {
		wantEvent(t, r.mustResolve(states...), demote, "the creator's power levels")
	}

	// Both allowed in either order: the admin's, applied last, wins.
	topicLevel := r.on(r.head, alice, spec.MRoomPowerLevels, "", map[string]any{"users": map[string]any{bob: 100}, "events": map[string]any{spec.MRoomTopic: 100}})
	zaraMod := r.on(r.head, bob, spec.MRoomPowerLevels, "", map[string]any{"users": map[string]any{bob: 100, zara: 50}})
	wantEvent(t, r.mustResolve(r.After(zaraMod), r.After(topicLevel)), zaraMod, "the admin's power levels, applied after the creator's")
}

// TestAdditionalCreatorsArePrivileged: carol, an additional creator, also
// sorts before bob, and bob cannot kick her.
func TestAdditionalCreatorsArePrivileged(t *testing.T) {
	r := newCreatorRoom(t, charlie)
	demote := r.on(r.head, charlie, spec.MRoomPowerLevels, "", map[string]any{"users": map[string]any{bob: 0}})
	ban := r.on(r.head, bob, spec.MRoomMember, zara, map[string]any{"membership": "ban"})
	if demote.OriginServerTS() >= ban.OriginServerTS() {
		t.Fatal("the test needs the creator's change to be the older one")
	}
	got := r.mustResolve(r.After(ban), r.After(demote))
	wantEvent(t, got, demote, "the additional creator's power levels")
	if m, _ := got[gomatrixserverlib.StateKeyTuple{EventType: spec.MRoomMember, StateKey: zara}].Membership(); m != spec.Join {
		t.Fatalf("zara's membership = %q: bob's ban must fail once charlie demoted him", m)
	}
}

// TestGMSLPanicsWhereWeResolve is the fork that makes the pinned
// gomatrixserverlib's v2.1 resolver panic ("missing resolved create
// event"): a ban racing a topic change by the banned user. We resolve it:
// the ban wins and the topic stays. If a gomatrixserverlib upgrade stops
// the panic, turn the first half into a comparison of the two resolvers.
func TestGMSLPanicsWhereWeResolve(t *testing.T) {
	r := newCreatorRoom(t)
	topic0 := r.on(r.head, alice, spec.MRoomTopic, "", map[string]any{"topic": "original"})
	ban := r.on(topic0, alice, spec.MRoomMember, bob, map[string]any{"membership": "ban"})
	bobTopic := r.on(topic0, bob, spec.MRoomTopic, "", map[string]any{"topic": "bob was here"})

	_, err := r.gmslResolve(r.After(ban), r.After(bobTopic))
	if err == nil || !strings.Contains(err.Error(), "missing resolved create event") {
		t.Fatalf("gomatrixserverlib: err = %v, want its panic over the missing create event", err)
	}
	got := r.mustResolve(r.After(ban), r.After(bobTopic))
	wantEvent(t, got, ban, "the ban")
	wantEvent(t, got, topic0, "the original topic")
}

// TestCreateEventFromLoader: in v12 no event cites the create event, and
// here no state set holds it either; the resolver fetches it by ID through
// the loader and uses it for the auth checks.
func TestCreateEventFromLoader(t *testing.T) {
	r := newCreatorRoom(t)
	ban := r.on(r.head, alice, spec.MRoomMember, bob, map[string]any{"membership": "ban"})
	bobTopic := r.on(r.head, bob, spec.MRoomTopic, "", map[string]any{"topic": "bob was here"})
	createKey := gomatrixserverlib.StateKeyTuple{EventType: spec.MRoomCreate}
	var stateSets [][]gomatrixserverlib.PDU
	for _, s := range []dagtest.State{r.After(ban), r.After(bobTopic)} {
		s = dagtest.Clone(s)
		delete(s, createKey)
		stateSets = append(stateSets, dagtest.Events(s))
	}
	loader := &mapLoader{events: r.all}
	out, err := stateres.Resolve(context.Background(), r.Ver, stateres.Input{StateSets: stateSets, Loader: loader})
	if err != nil {
		t.Fatal(err)
	}
	got := dagtest.ByKey(out)
	wantEvent(t, got, ban, "the ban")
	if _, ok := got[createKey]; ok {
		t.Error("the create event, in no state set, appeared in the result")
	}
	if !loader.asked["$"+strings.TrimPrefix(r.ID, "!")] {
		t.Error("the create event was not asked of the loader")
	}
}

// mapLoader serves events from a map and remembers what it was asked.
type mapLoader struct {
	events map[string]gomatrixserverlib.PDU
	asked  map[string]bool
	calls  int
}

func (l *mapLoader) LoadEvents(_ context.Context, ids []string) ([]gomatrixserverlib.PDU, error) {
	if l.asked == nil {
		l.asked = map[string]bool{}
	}
	l.calls++
	var out []gomatrixserverlib.PDU
	for _, id := range ids {
		l.asked[id] = true
		if ev, ok := l.events[id]; ok {
			out = append(out, ev)
		}
	}
	return out, nil
}
