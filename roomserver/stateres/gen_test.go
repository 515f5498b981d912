package stateres_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/roomserver/internal/dagtest"
)

// forkGen builds a room on several servers and then random forks of it:
// power level changes, kicks and bans racing joins and leaves, join rule
// changes, topic and name changes. Every event is allowed by the state of
// its own branch.
type forkGen struct {
	r       *testRoom
	rng     *rand.Rand
	gmslOK  bool // stay inside the forks gomatrixserverlib's v2 resolves as the spec does
	servers map[string]*dagtest.Server

	alice, bob, carol string   // alice created the room; bob and carol are moderators
	base              []string // joined before the fork
	fresh             []string // never in the room before the fork

	baseState dagtest.State
	baseHead  gomatrixserverlib.PDU
}

type branch struct {
	state   dagtest.State
	head    gomatrixserverlib.PDU
	changed map[string]bool // users whose membership changed on this branch
	powered bool            // the branch has a power event
}

// newForkGen builds the room before the fork. gmslOK limits forks to those gomatrixserverlib's v2 resolver gets
// right (see TestGMSLDeviations for what it gets wrong elsewhere):
//   - only alice changes power levels, and only on the first branch, so
//     every event's power levels lie on the resolved mainline;
//   - those who kick, ban or change power levels or join rules (alice, bob,
//     carol) never see their own membership change, and nobody kicks or
//     bans someone whose membership changed on that branch, so no power
//     event depends on a less powerful event in the sort;
//   - users joining during the fork have never been in the room, never
//     leave it again and send nothing else; nobody leaves of their own
//     accord; a branch has at most one power event; topics come from
//     members whose membership the branch left alone.
func newForkGen(tb testing.TB, version string, seed uint64, gmslOK bool) *forkGen {
	tb.Helper()
	g := &forkGen{
		r:       newTestRoomID(tb, version, seed),
		rng:     rand.New(rand.NewPCG(seed, seed^0x5eed)),
		gmslOK:  gmslOK,
		servers: map[string]*dagtest.Server{},
		alice:   "@alice:a.test", bob: "@bob:b.test", carol: "@carol:c.test",
		base:  []string{"@u1:b.test", "@u2:c.test", "@u3:d.test", "@u4:d.test"},
		fresh: []string{"@f1:b.test", "@f2:c.test", "@f3:d.test", "@f4:e.test"},
	}
	r := g.r
	create := map[string]any{"room_version": version}
	if r.Ver.CreatorInCreateEvent() {
		create["creator"] = g.alice
	}
	ev := r.ev(g.srv(g.alice), g.alice, spec.MRoomCreate, sk(""), create, dagtest.State{})
	ev = r.ev(g.srv(g.alice), g.alice, spec.MRoomMember, sk(g.alice), map[string]any{"membership": "join"}, r.After(ev), ev)
	users := map[string]any{g.bob: 50, g.carol: 50}
	if !r.Ver.PrivilegedCreators() {
		users[g.alice] = 100
	}
	ev = r.ev(g.srv(g.alice), g.alice, spec.MRoomPowerLevels, sk(""), map[string]any{
		"users": users, "events": map[string]any{spec.MRoomTopic: 0, "m.room.name": 50},
		"state_default": 50, "ban": 50, "kick": 50}, r.After(ev), ev)
	ev = r.ev(g.srv(g.alice), g.alice, spec.MRoomJoinRules, sk(""), map[string]any{"join_rule": "public"}, r.After(ev), ev)
	for _, u := range append([]string{g.bob, g.carol}, g.base...) {
		ev = r.ev(g.srv(u), u, spec.MRoomMember, sk(u), map[string]any{"membership": "join"}, r.After(ev), ev)
	}
	ev = r.ev(g.srv(g.alice), g.alice, spec.MRoomTopic, sk(""), map[string]any{"topic": "base"}, r.After(ev), ev)
	ev = r.ev(g.srv(g.alice), g.alice, "m.room.name", sk(""), map[string]any{"name": "base"}, r.After(ev), ev)
	g.baseHead, g.baseState = ev, r.After(ev)
	return g
}

func (g *forkGen) srv(user string) *dagtest.Server {
	domain := user[strings.IndexByte(user, ':')+1:]
	s, ok := g.servers[domain]
	if !ok {
		s = dagtest.NewServer(domain)
		g.servers[domain] = s
	}
	return s
}

// fork grows n branches from the base, trying steps events spread over
// them at random, and returns the state at the end of each branch.
func (g *forkGen) fork(n, steps int) []dagtest.State {
	branches := make([]*branch, n)
	for i := range branches {
		branches[i] = &branch{state: g.baseState, head: g.baseHead, changed: map[string]bool{}}
	}
	for range steps {
		i := g.rng.IntN(n)
		g.step(i, branches[i])
	}
	out := make([]dagtest.State, n)
	for i, b := range branches {
		out[i] = b.state
	}
	return out
}

func (g *forkGen) pick(users []string) string {
	if len(users) == 0 {
		return ""
	}
	return users[g.rng.IntN(len(users))]
}

func (g *forkGen) membership(b *branch, user string) string {
	ev := b.state[gomatrixserverlib.StateKeyTuple{EventType: spec.MRoomMember, StateKey: user}]
	if ev == nil {
		return ""
	}
	m, _ := ev.Membership()
	return m
}

func (g *forkGen) joined(b *branch, users []string) []string {
	var out []string
	for _, u := range users {
		if g.membership(b, u) == spec.Join {
			out = append(out, u)
		}
	}
	return out
}

func (g *forkGen) acting() []string { return []string{g.alice, g.bob, g.carol} }

func (g *forkGen) everyone() []string {
	return slices.Concat(g.acting(), g.base, g.fresh)
}

// step tries one random event on branch i; it is kept only if the auth
// rules allow it against the branch's state.
func (g *forkGen) step(i int, b *branch) {
	var sender, typ, target string
	var content map[string]any
	kickOrBan := false
	stable := func(users []string) []string { // members whose membership the branch left alone
		var out []string
		for _, u := range g.joined(b, users) {
			if !b.changed[u] {
				out = append(out, u)
			}
		}
		return out
	}
	targets := stable(g.base)
	if !g.gmslOK {
		targets = g.joined(b, slices.Concat(g.acting()[1:], g.base, g.fresh))
	}
	switch g.rng.IntN(9) {
	case 0, 1:
		typ, sender = spec.MRoomTopic, g.pick(g.joined(b, g.everyone()))
		if g.gmslOK {
			sender = g.pick(append(stable(g.base), g.acting()...))
		}
		content = map[string]any{"topic": fmt.Sprintf("topic %d", g.rng.IntN(1000))}
	case 2:
		typ, sender = "m.room.name", g.pick(g.acting())
		content = map[string]any{"name": fmt.Sprintf("name %d", g.rng.IntN(1000))}
	case 3:
		if g.gmslOK && i != 0 {
			return
		}
		typ, sender = spec.MRoomPowerLevels, g.alice
		if !g.gmslOK {
			sender = g.pick(g.acting())
		}
		content = g.changedPowerLevels(b)
	case 4:
		typ, sender = spec.MRoomJoinRules, g.alice
		if !g.gmslOK {
			sender = g.pick(g.acting())
		}
		rule := "invite"
		if jr := b.state[gomatrixserverlib.StateKeyTuple{EventType: spec.MRoomJoinRules}]; jr != nil && strings.Contains(string(jr.Content()), "invite") {
			rule = "public"
		}
		content = map[string]any{"join_rule": rule}
	case 5:
		typ, sender, target = spec.MRoomMember, g.pick(g.acting()), g.pick(targets)
		content, kickOrBan = map[string]any{"membership": "leave"}, true
	case 6:
		typ, sender = spec.MRoomMember, g.pick(g.acting())
		var outsiders []string
		for _, u := range g.fresh {
			if g.membership(b, u) == "" || (!g.gmslOK && g.membership(b, u) != spec.Ban) {
				outsiders = append(outsiders, u)
			}
		}
		target = g.pick(append(slices.Clone(targets), outsiders...))
		content, kickOrBan = map[string]any{"membership": "ban"}, true
	case 7:
		var joinable []string
		for _, u := range g.fresh {
			if m := g.membership(b, u); m == "" || (!g.gmslOK && m == spec.Leave) {
				joinable = append(joinable, u)
			}
		}
		if !g.gmslOK {
			for _, u := range slices.Concat(g.acting()[1:], g.base) {
				if g.membership(b, u) == spec.Leave {
					joinable = append(joinable, u)
				}
			}
		}
		typ, sender = spec.MRoomMember, g.pick(joinable)
		target, content = sender, map[string]any{"membership": "join"}
	case 8:
		if g.gmslOK {
			return
		}
		leavers := g.joined(b, slices.Concat(g.acting()[1:], g.base, g.fresh))
		typ, sender = spec.MRoomMember, g.pick(leavers)
		target, content = sender, map[string]any{"membership": "leave"}
	}
	if sender == "" || (typ == spec.MRoomMember && target == "") || (kickOrBan && target == sender) {
		return
	}
	if g.gmslOK && typ == spec.MRoomMember && target != sender && slices.Contains(g.acting(), target) {
		return
	}
	stateKey := ""
	if typ == spec.MRoomMember {
		stateKey = target
	}
	power := typ == spec.MRoomPowerLevels || typ == spec.MRoomJoinRules || kickOrBan
	if g.gmslOK && power && b.powered {
		return
	}
	ev := g.r.ev(g.srv(sender), sender, typ, sk(stateKey), content, b.state, b.head)
	if allowedBy(ev, b.state) != nil {
		return
	}
	b.state, b.head = g.r.After(ev), ev
	b.powered = b.powered || power
	if typ == spec.MRoomMember {
		b.changed[target] = true
	}
}

// changedPowerLevels is the branch's power levels with one change: a user's
// level, the ban level or the topic level.
func (g *forkGen) changedPowerLevels(b *branch) map[string]any {
	var content map[string]any
	_ = json.Unmarshal(b.state[gomatrixserverlib.StateKeyTuple{EventType: spec.MRoomPowerLevels}].Content(), &content)
	switch g.rng.IntN(4) {
	case 0:
		content["ban"] = []int{50, 75}[g.rng.IntN(2)]
	case 1:
		events, _ := content["events"].(map[string]any)
		events[spec.MRoomTopic] = []int{0, 50}[g.rng.IntN(2)]
	default:
		users, _ := content["users"].(map[string]any)
		users[g.pick(slices.Concat(g.acting()[1:], g.base))] = []int{0, 50, 75}[g.rng.IntN(3)]
	}
	return content
}

// allowedBy runs the auth rules for ev against a state.
func allowedBy(ev gomatrixserverlib.PDU, state dagtest.State) error {
	var events []gomatrixserverlib.PDU
	for _, t := range gomatrixserverlib.StateNeededForAuth([]gomatrixserverlib.PDU{ev}).Tuples() {
		if e, ok := state[t]; ok {
			events = append(events, e)
		}
	}
	provider, err := gomatrixserverlib.NewAuthEvents(events)
	if err != nil {
		return err
	}
	return gomatrixserverlib.Allowed(ev, provider, func(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) {
		return spec.NewUserID(string(s), true)
	})
}

// conflicts names the kinds of state the states disagree on.
func conflicts(states []dagtest.State) map[string]bool {
	out := map[string]bool{}
	keys := map[gomatrixserverlib.StateKeyTuple]bool{}
	for _, s := range states {
		for k := range s {
			keys[k] = true
		}
	}
	for k := range keys {
		first := states[0][k]
		for _, s := range states[1:] {
			if s[k] != first {
				out[k.EventType] = true
				if k.EventType == spec.MRoomMember {
					for _, s := range states {
						if ev := s[k]; ev != nil {
							m, _ := ev.Membership()
							out["membership "+m] = true
						}
					}
				}
			}
		}
	}
	return out
}
