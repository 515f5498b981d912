package fedsecurity

import (
	"fmt"
	"slices"
	"testing"

	"matrixhs/storage"
	"matrixhs/tests/fedtest"
)

// people are the users of the convergence rooms: alice (hs1) made the
// rooms (their creator in v12, power 100 before); bob (hs2) moderates
// (50); the others are members or join while the servers are apart.
type people struct {
	alice, dave, harry   *fedtest.User // hs1
	bob, erin, gina, ivy *fedtest.User // hs2
	carol, frank         *fedtest.User // hs3
	// all has one user of each server, who sees the room through it.
	all []*fedtest.User
}

func newPeople(t *testing.T, nw *network) *people {
	p := &people{
		alice: nw.hs1.Register(t, "alice"), dave: nw.hs1.Register(t, "dave"), harry: nw.hs1.Register(t, "harry"),
		bob: nw.hs2.Register(t, "bob"), erin: nw.hs2.Register(t, "erin"), gina: nw.hs2.Register(t, "gina"), ivy: nw.hs2.Register(t, "ivy"),
		carol: nw.hs3.Register(t, "carol"), frank: nw.hs3.Register(t, "frank"),
	}
	p.all = []*fedtest.User{p.alice, p.bob, p.carol}
	return p
}

// forkRoom is one room of the partition test and what was written in it on
// each side.
type forkRoom struct {
	version, id string
	checkpoint  string // delivered everywhere before the partition
	since       map[*fedtest.User]string

	// hs1's side
	demote, topic1, banGina, harryLeaves, hs1Says string
	// hs2's side
	kickCarol, banDave, topic2, ginaJoins, ginaSays, ivyJoins, ivyLeaves, hs2Says string
	// hs3's side
	frankJoins, hs3Says string
	// after the heal, once hs1 and hs2 heard from each other
	after []string
}

// setUp makes the room on hs1 with members of every server, bob as
// moderator, and waits until every server holds all of it.
func (r *forkRoom) setUp(t *testing.T, nw *network, p *people) {
	t.Helper()
	r.id = p.alice.CreateRoom(t, map[string]any{"preset": "public_chat", "room_version": r.version})
	p.bob.Join(t, r.id, nw.hs1)
	p.carol.Join(t, r.id, nw.hs1)
	members := []*fedtest.User{p.alice, p.bob, p.carol, p.dave, p.harry, p.erin}
	for _, u := range members[3:] {
		u.Join(t, r.id, nw.hs1)
	}
	// Everyone's join everywhere before the room moves on, so that the
	// checkpoint follows all of them.
	waitMembership(t, r.id, "join", members, nw.servers()...)
	setPower(t, p.alice, r.id, p.bob.ID, 50)
	r.checkpoint = p.alice.Send(t, r.id, "everyone is here")
	quiesce(t, r.id, r.checkpoint, nw.servers()...)
	r.since = map[*fedtest.User]string{}
	for _, u := range p.all {
		r.since[u] = u.Since(t)
	}
}

// writeApart writes conflicting changes on both sides of the partition
// (hs2 cut off from hs1 and hs3): alice demotes bob, sets the topic, bans
// gina (who is not in the room yet); harry leaves; meanwhile bob, still a
// moderator on hs2, kicks carol, bans dave and sets the topic, gina joins
// and speaks, ivy joins and leaves; frank joins on hs3.
func (r *forkRoom) writeApart(t *testing.T, nw *network, p *people) {
	t.Helper()
	r.demote = setPower(t, p.alice, r.id, p.bob.ID, 0)
	r.topic1 = p.alice.SetState(t, r.id, "m.room.topic", "", map[string]any{"topic": "from hs1"})
	r.banGina = member(t, p.alice, r.id, p.gina.ID, "ban")
	r.harryLeaves = member(t, p.harry, r.id, p.harry.ID, "leave")
	r.hs1Says = p.alice.Send(t, r.id, "hs1 during the partition")

	r.kickCarol = member(t, p.bob, r.id, p.carol.ID, "leave")
	r.banDave = member(t, p.bob, r.id, p.dave.ID, "ban")
	r.topic2 = p.bob.SetState(t, r.id, "m.room.topic", "", map[string]any{"topic": "from hs2"})
	p.gina.Join(t, r.id)
	r.ginaJoins = nw.hs2.StateID(t, r.id, "m.room.member", p.gina.ID)
	r.ginaSays = p.gina.Send(t, r.id, "gina was here")
	p.ivy.Join(t, r.id)
	r.ivyJoins = nw.hs2.StateID(t, r.id, "m.room.member", p.ivy.ID)
	r.ivyLeaves = member(t, p.ivy, r.id, p.ivy.ID, "leave")
	r.hs2Says = p.bob.Send(t, r.id, "hs2 during the partition")

	p.frank.Join(t, r.id)
	r.frankJoins = nw.hs3.StateID(t, r.id, "m.room.member", p.frank.ID)
	r.hs3Says = p.carol.Send(t, r.id, "hs3 during the partition")
}

// losers are the events the resolved state refuses: bob's moderation after
// his demotion, gina's join after her ban and what she said. Servers that
// learn of them after the winning side soft-fail them.
func (r *forkRoom) losers() []string {
	return []string{r.kickCarol, r.banDave, r.topic2, r.ginaJoins, r.ginaSays}
}

// names are the events written apart, by ID, for messages.
func (r *forkRoom) names() map[string]string {
	names := map[string]string{
		r.demote: "alice demotes bob", r.topic1: "alice's topic", r.banGina: "alice bans gina", r.harryLeaves: "harry leaves",
		r.hs1Says: "alice speaks", r.kickCarol: "bob kicks carol", r.banDave: "bob bans dave", r.topic2: "bob's topic",
		r.ginaJoins: "gina joins", r.ginaSays: "gina speaks", r.ivyJoins: "ivy joins", r.ivyLeaves: "ivy leaves",
		r.hs2Says: "bob speaks", r.frankJoins: "frank joins", r.hs3Says: "carol speaks",
	}
	for _, id := range r.after {
		names[id] = "said after the heal"
	}
	return names
}

// TestPartitionedServersConverge: in rooms of versions 10, 11 and 12 with
// members on three servers, hs2 is cut off from the others while both
// sides change power levels, membership and the topic in conflicting ways
// (and hs2 restarts meanwhile, its queue kept on disk). Once the network
// heals, every server holds the same DAG, serves the same current state —
// the one state resolution gives: alice's demotion of bob beats bob's
// kick, ban and topic, alice's ban beats gina's join, the unconflicted
// joins and leaves of both sides stand — and shows its clients every event
// of the DAG but those it soft-failed, which it never builds on.
func TestPartitionedServersConverge(t *testing.T) {
	nw := newNetwork(t)
	p := newPeople(t, nw)
	rooms := []*forkRoom{{version: "10"}, {version: "11"}, {version: "12"}}
	for _, r := range rooms {
		r.setUp(t, nw, p)
	}

	heal := nw.n.Isolate(nw.hs2)
	for _, r := range rooms {
		r.writeApart(t, nw, p)
	}
	nw.hs2.Restart() // still cut off: what it queued for the others waits on disk
	heal()
	// Each server speaks once hs1 and hs2 heard from each other: a server
	// learns of a branch it was not sent (hs2 had kicked hs3's last
	// member) from the next event built on it.
	for _, r := range rooms {
		waitHeld(t, r.id, []string{r.hs1Says, r.hs2Says}, nw.hs1, nw.hs2)
		for _, u := range p.all {
			r.after = append(r.after, u.Send(t, r.id, "after the heal"))
		}
	}

	for _, r := range rooms {
		t.Run("v"+r.version, func(t *testing.T) {
			r.checkConverged(t, nw, p)
		})
	}
}

// checkConverged waits until the servers agree on the room's DAG and state,
// then checks that state and what clients see.
func (r *forkRoom) checkConverged(t *testing.T, nw *network, p *people) {
	t.Helper()
	names := r.names()
	var dag map[string]bool
	fedtest.WaitFor(t, converge, "the servers to agree on room v"+r.version, func() error {
		dag = dagSince(t, r.id, r.checkpoint, p.all...)
		for id := range names {
			dag[id] = true
		}
		for _, s := range nw.servers() {
			for _, id := range sortedKeys(dag) {
				if st := s.Status(id); !inDAG(st) {
					return fmt.Errorf("%s holds %s (%s) with status %d", s.Name, id, names[id], st)
				}
			}
		}
		want := stateIDs(t, p.alice, r.id)
		for _, u := range p.all[1:] {
			if d := diffState(want, stateIDs(t, u, r.id), names); d != "" {
				return fmt.Errorf("state of %s and %s differ: %s", p.alice.S.Name, u.S.Name, d)
			}
		}
		return nil
	})

	// The state is the one resolution gives.
	for _, u := range p.all {
		pl := stateContent(t, u, r.id, "m.room.power_levels", "")
		if level, _ := pl["users"].(map[string]any)[p.bob.ID].(float64); level != 0 {
			t.Errorf("%s: bob's power level is %v, want 0", u.S.Name, level)
		}
		if topic := stateContent(t, u, r.id, "m.room.topic", ""); topic["topic"] != "from hs1" {
			t.Errorf("%s: topic %v, want alice's", u.S.Name, topic)
		}
		for who, want := range map[*fedtest.User]string{
			p.alice: "join", p.bob: "join", p.carol: "join", p.dave: "join", p.erin: "join", p.frank: "join",
			p.gina: "ban", p.harry: "leave", p.ivy: "leave",
		} {
			if m := stateContent(t, u, r.id, "m.room.member", who.ID); m["membership"] != want {
				t.Errorf("%s: %s is %v, want %s", u.S.Name, who.ID, m["membership"], want)
			}
		}
	}

	// Clients see the DAG but what their server soft-failed; only the
	// losers of the resolution are soft-failed, and never built on.
	for _, u := range p.all {
		s := u.S
		var softFailed []string
		for id := range dag {
			if s.Status(id) == storage.EventSoftFailed {
				softFailed = append(softFailed, id)
				if !slices.Contains(r.losers(), id) {
					t.Errorf("%s soft-failed %s (%s), which the resolved state allows", s.Name, id, names[id])
				}
			}
		}
		shown := map[string]bool{}
		for _, e := range u.MessagesAfter(t, r.id, r.checkpoint) {
			shown[e.EventID] = true
		}
		for id := range dag {
			if shown[id] == slices.Contains(softFailed, id) {
				t.Errorf("%s's /messages: %s shown %v, soft-failed there %v", s.Name, id, shown[id], !shown[id])
			}
		}
		for _, e := range u.SyncUntil(t, r.since[u], r.id) {
			if slices.Contains(softFailed, e.EventID) {
				t.Errorf("%s's /sync delivered %s, which it soft-failed", s.Name, e.EventID)
			}
		}
		for id := range dag {
			pdu := s.PDU(t, id)
			if sender := string(pdu.SenderID()); !isUserOf(sender, s) {
				continue
			}
			for _, prev := range pdu.PrevEventIDs() {
				if slices.Contains(softFailed, prev) {
					t.Errorf("%s built %s on %s, which it soft-failed", s.Name, id, prev)
				}
			}
		}
	}
}

func isUserOf(userID string, s *fedtest.Server) bool {
	return len(userID) > len(s.Name) && userID[len(userID)-len(s.Name)-1:] == ":"+string(s.Name)
}
