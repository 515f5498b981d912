package fedsecurity

import (
	"fmt"
	"slices"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"

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

// split is what was written in one room while its servers were apart.
type split struct {
	checkpoint string                   // delivered everywhere before
	since      map[*fedtest.User]string // sync tokens taken then
	names      map[string]string        // the events written, by ID
	// losers are the events the resolved state refuses: servers that learn
	// of them after what beats them soft-fail them.
	losers []string
}

// start records the checkpoint (once every server holds it as the room's
// only head) and the users' sync tokens.
func (sp *split) start(t *testing.T, nw *network, p *people, roomID, checkpoint string) {
	t.Helper()
	quiesce(t, roomID, checkpoint, nw.servers()...)
	sp.checkpoint, sp.since, sp.names = checkpoint, map[*fedtest.User]string{}, map[string]string{}
	for _, u := range p.all {
		sp.since[u] = u.Since(t)
	}
}

// wrote records an event written apart and returns its ID.
func (sp *split) wrote(name, id string) string {
	sp.names[id] = name
	return id
}

// lost records an event written apart that the resolution refuses.
func (sp *split) lost(name, id string) string {
	sp.losers = append(sp.losers, id)
	return sp.wrote(name, id)
}

// forkRoom is one room of the partition test.
type forkRoom struct {
	version, id string
	one, three  split
	// events of the three-way split whose outcome depends on their order
	topicHS1, topicHS2 string
}

// setUp makes the room on hs1 with members of every server, bob as
// moderator, and waits until every server holds all of it.
func (r *forkRoom) setUp(t *testing.T, nw *network, p *people) {
	t.Helper()
	r.id = p.alice.CreateRoom(t, map[string]any{"preset": "public_chat", "room_version": r.version})
	members := []*fedtest.User{p.alice, p.bob, p.carol, p.dave, p.harry, p.erin}
	for _, u := range members[1:] {
		u.Join(t, r.id, nw.hs1)
	}
	// Everyone's join everywhere before the room moves on, so that the
	// checkpoint follows all of them.
	waitMembership(t, r.id, "join", members, nw.servers()...)
	setPower(t, p.alice, r.id, p.bob.ID, 50)
	r.one.start(t, nw, p, r.id, p.alice.Send(t, r.id, "everyone is here"))
}

// writeApart writes conflicting changes on both sides of the partition
// (hs2 cut off from hs1 and hs3): alice demotes bob, sets the topic, bans
// gina (who is not in the room yet); harry leaves; meanwhile bob, still a
// moderator on hs2, kicks carol, bans dave and sets the topic, gina joins
// and speaks, ivy joins and leaves; frank joins on hs3.
func (r *forkRoom) writeApart(t *testing.T, nw *network, p *people) {
	t.Helper()
	sp := &r.one
	sp.wrote("alice demotes bob", setPower(t, p.alice, r.id, p.bob.ID, 0))
	sp.wrote("alice's topic", p.alice.SetState(t, r.id, "m.room.topic", "", map[string]any{"topic": "from hs1"}))
	sp.wrote("alice bans gina", member(t, p.alice, r.id, p.gina.ID, "ban"))
	sp.wrote("harry leaves", member(t, p.harry, r.id, p.harry.ID, "leave"))
	sp.wrote("alice speaks", p.alice.Send(t, r.id, "hs1 during the partition"))

	sp.lost("bob kicks carol", member(t, p.bob, r.id, p.carol.ID, "leave"))
	sp.lost("bob bans dave", member(t, p.bob, r.id, p.dave.ID, "ban"))
	sp.lost("bob's topic", p.bob.SetState(t, r.id, "m.room.topic", "", map[string]any{"topic": "from hs2"}))
	p.gina.Join(t, r.id)
	sp.lost("gina joins", nw.hs2.StateID(t, r.id, "m.room.member", p.gina.ID))
	sp.lost("gina speaks", p.gina.Send(t, r.id, "gina was here"))
	p.ivy.Join(t, r.id)
	sp.wrote("ivy joins", nw.hs2.StateID(t, r.id, "m.room.member", p.ivy.ID))
	sp.wrote("ivy leaves", member(t, p.ivy, r.id, p.ivy.ID, "leave"))
	sp.wrote("bob speaks", p.bob.Send(t, r.id, "hs2 during the partition"))

	p.frank.Join(t, r.id)
	sp.wrote("frank joins", nw.hs3.StateID(t, r.id, "m.room.member", p.frank.ID))
	sp.wrote("carol speaks", p.carol.Send(t, r.id, "hs3 during the partition"))
}

// expectAfterOne checks the state after the first split as u's server
// serves it: alice's demotion of bob beats bob's kick, ban and topic,
// alice's ban beats gina's join; the unconflicted joins and leaves stand.
func (r *forkRoom) expectAfterOne(t *testing.T, p *people, u *fedtest.User) {
	t.Helper()
	if level := powerOf(t, u, r.id, p.bob.ID); level != 0 {
		t.Errorf("%s: bob's power level is %v, want 0", u.S.Name, level)
	}
	if topic := stateContent(t, u, r.id, "m.room.topic", ""); topic["topic"] != "from hs1" {
		t.Errorf("%s: topic %v, want alice's", u.S.Name, topic)
	}
	wantMembers(t, u, r.id, map[*fedtest.User]string{
		p.alice: "join", p.bob: "join", p.carol: "join", p.dave: "join", p.erin: "join", p.frank: "join",
		p.gina: "ban", p.harry: "leave", p.ivy: "leave",
	})
}

// prepareThree makes erin (hs2) and frank (hs3) moderators and starts the
// three-way split from there.
func (r *forkRoom) prepareThree(t *testing.T, nw *network, p *people) {
	t.Helper()
	var pl map[string]any
	p.alice.MustDo(t, "GET", fedtest.RoomPath(r.id, "/state/m.room.power_levels/"), nil, &pl)
	users := pl["users"].(map[string]any)
	users[p.erin.ID], users[p.frank.ID] = 50, 50
	p.alice.SetState(t, r.id, "m.room.power_levels", "", pl)
	r.three.start(t, nw, p, r.id, p.alice.Send(t, r.id, "erin and frank moderate"))
}

// writeThreeWays writes on three servers cut off from each other: alice
// sets the topic and demotes frank; erin sets the topic and kicks dave;
// frank names the room and bans ivy.
func (r *forkRoom) writeThreeWays(t *testing.T, p *people) {
	t.Helper()
	sp := &r.three
	r.topicHS1 = sp.wrote("alice's topic", p.alice.SetState(t, r.id, "m.room.topic", "", map[string]any{"topic": "three ways: hs1"}))
	sp.wrote("alice demotes frank", setPower(t, p.alice, r.id, p.frank.ID, 0))
	sp.wrote("alice speaks", p.alice.Send(t, r.id, "hs1 on its own"))

	r.topicHS2 = sp.wrote("erin's topic", p.erin.SetState(t, r.id, "m.room.topic", "", map[string]any{"topic": "three ways: hs2"}))
	sp.wrote("erin kicks dave", member(t, p.erin, r.id, p.dave.ID, "leave"))
	sp.wrote("erin speaks", p.erin.Send(t, r.id, "hs2 on its own"))

	sp.lost("frank names the room", p.frank.SetState(t, r.id, "m.room.name", "", map[string]any{"name": "frank's room"}))
	sp.lost("frank bans ivy", member(t, p.frank, r.id, p.ivy.ID, "ban"))
	sp.wrote("carol speaks", p.carol.Send(t, r.id, "hs3 on its own"))
}

// expectAfterThree checks the state after the three-way split: alice's
// demotion of frank beats his name and ban; erin's kick stands; of the two
// topics (both allowed, citing the same power levels) the later wins.
func (r *forkRoom) expectAfterThree(t *testing.T, nw *network, p *people, u *fedtest.User) {
	t.Helper()
	if lf, le := powerOf(t, u, r.id, p.frank.ID), powerOf(t, u, r.id, p.erin.ID); lf != 0 || le != 50 {
		t.Errorf("%s: frank's power level is %v, erin's %v, want 0 and 50", u.S.Name, lf, le)
	}
	if name := stateContent(t, u, r.id, "m.room.name", ""); name != nil {
		t.Errorf("%s: room name %v, want none", u.S.Name, name)
	}
	winner := later(nw.hs1.PDU(t, r.topicHS1), nw.hs2.PDU(t, r.topicHS2))
	if id := u.S.StateID(t, r.id, "m.room.topic", ""); id != winner.EventID() {
		t.Errorf("%s: topic %s, want the later %s", u.S.Name, id, winner.EventID())
	}
	wantMembers(t, u, r.id, map[*fedtest.User]string{p.dave: "leave", p.ivy: "leave", p.frank: "join", p.erin: "join"})
}

// later is, of two state events of the same mainline position, the one
// the resolution applies last: by origin_server_ts, then event ID.
func later(a, b gomatrixserverlib.PDU) gomatrixserverlib.PDU {
	if a.OriginServerTS() != b.OriginServerTS() {
		if a.OriginServerTS() > b.OriginServerTS() {
			return a
		}
		return b
	}
	if a.EventID() > b.EventID() {
		return a
	}
	return b
}

// TestPartitionedServersConverge: in rooms of versions 10, 11 and 12 with
// members on three servers, first hs2 is cut off from the others (and
// restarts meanwhile, its queue kept on disk), then all three are cut off
// from each other, while each side changes power levels, membership and
// state in conflicting ways. Each time, once the network heals (and each
// server said something, which is how a server learns of a branch it was
// not sent), every server holds the same DAG and serves the same current
// state — the one state resolution gives — and shows its clients every
// event of the DAG but those it soft-failed, which are only the losers of
// the resolution and which it never builds on.
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
	for _, r := range rooms {
		t.Run("v"+r.version+"/hs2 apart", func(t *testing.T) {
			// hs3 may not hear of hs2's branch until hs2 speaks again.
			r.one.converged(t, nw, p, r.id, nw.hs1, nw.hs2)
			for _, u := range p.all {
				r.expectAfterOne(t, p, u)
			}
		})
	}
	if t.Failed() {
		return
	}

	for _, r := range rooms {
		r.prepareThree(t, nw, p)
	}
	heal1, heal2 := nw.n.Isolate(nw.hs1), nw.n.Isolate(nw.hs2)
	for _, r := range rooms {
		r.writeThreeWays(t, p)
	}
	heal1()
	heal2()
	for _, r := range rooms {
		t.Run("v"+r.version+"/three ways", func(t *testing.T) {
			r.three.converged(t, nw, p, r.id, nw.servers()...)
			for _, u := range p.all {
				r.expectAfterThree(t, nw, p, u)
			}
		})
	}
}

// converged has every server speak once the servers heard hold what each
// wrote apart, then waits until the servers agree on the room's DAG and
// state, and checks what clients see.
func (sp *split) converged(t *testing.T, nw *network, p *people, roomID string, heard ...*fedtest.Server) {
	t.Helper()
	// What each server wrote, the others hear of from its sender, unless
	// it believed them gone from the room (hs2 had kicked hs3's last
	// member): they learn of that from the next event built on it.
	waitHeld(t, roomID, lastOfEach(t, sp, nw), heard...)
	for _, u := range p.all {
		sp.wrote("said after the heal", u.Send(t, roomID, "after the heal"))
	}
	var dag map[string]bool
	fedtest.WaitFor(t, converge, "the servers to agree", func() error {
		dag = dagSince(t, roomID, sp.checkpoint, p.all...)
		for id := range sp.names {
			dag[id] = true
		}
		for _, s := range nw.servers() {
			for _, id := range sortedKeys(dag) {
				if st := s.Status(id); !inDAG(st) {
					return fmt.Errorf("%s holds %s (%s) with status %d", s.Name, id, sp.names[id], st)
				}
			}
		}
		want := stateIDs(t, p.alice, roomID)
		for _, u := range p.all[1:] {
			if d := diffState(want, stateIDs(t, u, roomID), sp.names); d != "" {
				return fmt.Errorf("state of %s and %s differ: %s", p.alice.S.Name, u.S.Name, d)
			}
		}
		return nil
	})
	for _, u := range p.all {
		sp.checkView(t, u, roomID, dag)
	}
}

// lastOfEach is, for each server, the last event its users wrote apart
// that its sender sends to every other server.
func lastOfEach(t *testing.T, sp *split, nw *network) []string {
	t.Helper()
	var out []string
	for _, s := range nw.servers() {
		var last gomatrixserverlib.PDU
		for id := range sp.names {
			if s.Status(id) == -1 {
				continue // another's
			}
			if pdu := s.PDU(t, id); isUserOf(string(pdu.SenderID()), s) && pdu.Type() == "m.room.message" &&
				(last == nil || pdu.Depth() > last.Depth()) {
				last = pdu
			}
		}
		if last != nil {
			out = append(out, last.EventID())
		}
	}
	return out
}

// checkView checks what u's server shows: every event of the DAG but those
// it soft-failed (only losers of the resolution), in /messages; none of
// those in /sync; and none of them built on by the server's own events.
func (sp *split) checkView(t *testing.T, u *fedtest.User, roomID string, dag map[string]bool) {
	t.Helper()
	s := u.S
	var softFailed []string
	for id := range dag {
		if s.Status(id) == storage.EventSoftFailed {
			softFailed = append(softFailed, id)
			if !slices.Contains(sp.losers, id) {
				t.Errorf("%s soft-failed %s (%s), which the resolved state allows", s.Name, id, sp.names[id])
			}
		}
	}
	shown := map[string]bool{}
	for _, e := range u.MessagesAfter(t, roomID, sp.checkpoint) {
		shown[e.EventID] = true
	}
	for id := range dag {
		if shown[id] == slices.Contains(softFailed, id) {
			t.Errorf("%s's /messages: %s (%s) shown %v, soft-failed there %v", s.Name, id, sp.names[id], shown[id], !shown[id])
		}
	}
	for _, e := range u.SyncUntil(t, sp.since[u], roomID) {
		if slices.Contains(softFailed, e.EventID) {
			t.Errorf("%s's /sync delivered %s (%s), which it soft-failed", s.Name, e.EventID, sp.names[e.EventID])
		}
	}
	for id := range dag {
		pdu := s.PDU(t, id)
		if !isUserOf(string(pdu.SenderID()), s) {
			continue
		}
		for _, prev := range pdu.PrevEventIDs() {
			if slices.Contains(softFailed, prev) {
				t.Errorf("%s built %s on %s (%s), which it soft-failed", s.Name, id, prev, sp.names[prev])
			}
		}
	}
}

func isUserOf(userID string, s *fedtest.Server) bool {
	return len(userID) > len(s.Name) && userID[len(userID)-len(s.Name)-1:] == ":"+string(s.Name)
}
