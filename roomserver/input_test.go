package roomserver

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"matrixhs/internal/dbtest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

// fakeServer builds signed events as another homeserver would.
type fakeServer struct {
	name  spec.ServerName
	keyID gomatrixserverlib.KeyID
	key   ed25519.PrivateKey
}

func newFakeServer(t *testing.T, name string) *fakeServer {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeServer{name: spec.ServerName(name), keyID: "ed25519:test", key: key}
}

// dag tracks the state after each event of a test room, so events can be
// built on any fork.
type dag struct {
	t        *testing.T
	ver      gomatrixserverlib.IRoomVersion
	roomID   string
	stateOf  map[string]stateMap // state after each event
	beforeOf map[string]stateMap // state each event was built on
	events   map[string]gomatrixserverlib.PDU
	clock    time.Time
}

func newDAG(t *testing.T, version string) *dag {
	return &dag{t: t, ver: gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersion(version)),
		stateOf: map[string]stateMap{}, beforeOf: map[string]stateMap{}, events: map[string]gomatrixserverlib.PDU{}, clock: time.Now()}
}

// event builds an event by srv on top of prev (state taken from the state
// after the first prev, or resolved by the test beforehand via after).
func (d *dag) event(srv *fakeServer, sender, typ string, stateKey *string, content any, before stateMap, prev ...gomatrixserverlib.PDU) gomatrixserverlib.PDU {
	d.t.Helper()
	raw, _ := json.Marshal(content)
	prevIDs := []string{}
	depth := int64(1)
	for _, p := range prev {
		prevIDs = append(prevIDs, p.EventID())
		if p.Depth()+1 > depth {
			depth = p.Depth() + 1
		}
	}
	proto := gomatrixserverlib.ProtoEvent{SenderID: sender, RoomID: d.roomID, Type: typ, StateKey: stateKey,
		Content: raw, PrevEvents: prevIDs, Depth: depth}
	if typ == spec.MRoomCreate && d.ver.DomainlessRoomIDs() {
		proto.RoomID = ""
	}
	b := d.ver.NewEventBuilderFromProtoEvent(&proto)
	var evs []gomatrixserverlib.PDU
	for _, ev := range before {
		evs = append(evs, ev)
	}
	provider, err := gomatrixserverlib.NewAuthEvents(evs)
	if err != nil {
		d.t.Fatal(err)
	}
	if err := b.AddAuthEvents(provider); err != nil {
		d.t.Fatal(err)
	}
	d.clock = d.clock.Add(time.Millisecond)
	pdu, err := b.Build(d.clock, srv.name, srv.keyID, srv.key)
	if err != nil {
		d.t.Fatalf("building %s: %v", typ, err)
	}
	if typ == spec.MRoomCreate {
		d.roomID = pdu.RoomID().String()
	}
	after := cloneState(before)
	if pdu.StateKey() != nil {
		after[gomatrixserverlib.StateKeyTuple{EventType: typ, StateKey: *pdu.StateKey()}] = pdu
	}
	d.stateOf[pdu.EventID()] = after
	d.beforeOf[pdu.EventID()] = before
	d.events[pdu.EventID()] = pdu
	return pdu
}

// eventRedacting builds a redaction of target (the redacts key sits at the
// top level before v11, in the content from v11).
func (d *dag) eventRedacting(srv *fakeServer, sender, target string, content map[string]any, before stateMap, prev ...gomatrixserverlib.PDU) gomatrixserverlib.PDU {
	d.t.Helper()
	raw, _ := json.Marshal(content)
	depth := int64(1)
	var prevIDs []string
	for _, p := range prev {
		prevIDs = append(prevIDs, p.EventID())
		depth = max(depth, p.Depth()+1)
	}
	proto := gomatrixserverlib.ProtoEvent{SenderID: sender, RoomID: d.roomID, Type: spec.MRoomRedaction, Redacts: target,
		Content: raw, PrevEvents: prevIDs, Depth: depth}
	b := d.ver.NewEventBuilderFromProtoEvent(&proto)
	var evs []gomatrixserverlib.PDU
	for _, ev := range before {
		evs = append(evs, ev)
	}
	provider, _ := gomatrixserverlib.NewAuthEvents(evs)
	if err := b.AddAuthEvents(provider); err != nil {
		d.t.Fatal(err)
	}
	d.clock = d.clock.Add(time.Millisecond)
	pdu, err := b.Build(d.clock, srv.name, srv.keyID, srv.key)
	if err != nil {
		d.t.Fatal(err)
	}
	d.stateOf[pdu.EventID()] = before
	d.beforeOf[pdu.EventID()] = before
	d.events[pdu.EventID()] = pdu
	return pdu
}

func (d *dag) after(ev gomatrixserverlib.PDU) stateMap { return d.stateOf[ev.EventID()] }

func openRoomserver(t testing.TB) (*Roomserver, *storage.DB) {
	t.Helper()
	db, err := dbtest.Open(t, context.Background(), filepath.Join(t.TempDir(), "rs.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	return New(db, Options{ServerName: "a.test", KeyID: "ed25519:a", PrivateKey: key}), db
}

func sk(s string) *string { return &s }

// inputOne inputs one event and returns its result (server errors fail the test).
func inputOne(t *testing.T, rs *Roomserver, in InputEvent) InputResult {
	t.Helper()
	res, err := rs.Input(context.Background(), []InputEvent{in})
	if err != nil {
		t.Fatalf("input %s: %v", in.Event.EventID(), err)
	}
	return res[0]
}

func mustInput(t *testing.T, rs *Roomserver, pdu gomatrixserverlib.PDU, want EventStatus) InputResult {
	t.Helper()
	res := inputOne(t, rs, InputEvent{Kind: KindNew, Event: pdu})
	if res.Err != nil {
		t.Fatalf("input %s %s: %v", pdu.Type(), pdu.EventID(), res.Err)
	}
	if res.Status != want {
		t.Fatalf("input %s %s: status %d (%s), want %d", pdu.Type(), pdu.EventID(), res.Status, res.Reason, want)
	}
	return res
}

// TestForkResolvedByStateResolution builds a room on two other servers,
// forks it with a ban on one branch and a topic change by the banned user on
// the other, and checks that state resolution lets the ban win and drops the
// banned user's topic, that a later event on the stale branch soft-fails,
// and that unauthorised and dangling events are refused.
func TestForkResolvedByStateResolution(t *testing.T) {
	for _, version := range []string{"10", "11"} {
		t.Run("v"+version, func(t *testing.T) {
			ctx := context.Background()
			rs, db := openRoomserver(t)
			b, c := newFakeServer(t, "b.test"), newFakeServer(t, "c.test")
			alice, bob, eve := "@alice:b.test", "@bob:c.test", "@eve:c.test"
			d := newDAG(t, version)
			if !d.ver.DomainlessRoomIDs() {
				d.roomID = "!fork:b.test"
			}

			createContent := map[string]any{"room_version": version}
			if d.ver.CreatorInCreateEvent() {
				createContent["creator"] = alice
			}
			create := d.event(b, alice, spec.MRoomCreate, sk(""), createContent, stateMap{})
			join := d.event(b, alice, spec.MRoomMember, sk(alice), map[string]any{"membership": "join"}, d.after(create), create)
			users := map[string]int{bob: 50}
			if !d.ver.PrivilegedCreators() {
				users[alice] = 100
			}
			pl := d.event(b, alice, spec.MRoomPowerLevels, sk(""), map[string]any{"users": users, "state_default": 50, "ban": 50}, d.after(join), join)
			jr := d.event(b, alice, spec.MRoomJoinRules, sk(""), map[string]any{"join_rule": "public"}, d.after(pl), pl)
			topic0 := d.event(b, alice, spec.MRoomTopic, sk(""), map[string]any{"topic": "original"}, d.after(jr), jr)
			bobJoin := d.event(c, bob, spec.MRoomMember, sk(bob), map[string]any{"membership": "join"}, d.after(topic0), topic0)
			for _, ev := range []gomatrixserverlib.PDU{create, join, pl, jr, topic0, bobJoin} {
				mustInput(t, rs, ev, StatusAccepted)
			}

			// The fork: alice bans bob while bob changes the topic.
			ban := d.event(b, alice, spec.MRoomMember, sk(bob), map[string]any{"membership": "ban"}, d.after(bobJoin), bobJoin)
			topicB := d.event(c, bob, spec.MRoomTopic, sk(""), map[string]any{"topic": "bob was here"}, d.after(bobJoin), bobJoin)
			mustInput(t, rs, ban, StatusAccepted)
			// Bob's topic is allowed by the state before it, but the room's
			// current state (bob banned) refuses it: soft fail.
			mustInput(t, rs, topicB, StatusSoftFailed)

			// A merge event by alice naming both branches.
			resolved, err := rs.resolve(ctx, mustRoom(t, rs, d.roomID), []stateMap{d.after(ban), d.after(topicB)})
			if err != nil {
				t.Fatal(err)
			}
			if got := resolved[gomatrixserverlib.StateKeyTuple{EventType: spec.MRoomTopic}]; got.EventID() != topic0.EventID() {
				t.Fatalf("resolved topic = %s, want the original %s (bob's change must lose to the ban)", got.EventID(), topic0.EventID())
			}
			if m, _ := resolved[gomatrixserverlib.StateKeyTuple{EventType: spec.MRoomMember, StateKey: bob}].Membership(); m != spec.Ban {
				t.Fatalf("resolved membership of bob = %q, want ban", m)
			}
			merge := d.event(b, alice, "m.room.message", nil, map[string]any{"body": "merged"}, resolved, ban, topicB)
			mustInput(t, rs, merge, StatusAccepted)

			info, err := db.Room(ctx, d.roomID)
			if err != nil {
				t.Fatal(err)
			}
			if len(info.Extremities) != 1 || info.Extremities[0] != merge.EventID() {
				t.Fatalf("forward extremities = %v, want [%s]", info.Extremities, merge.EventID())
			}
			state, err := db.CurrentStateEvents(ctx, info.NID, spec.MRoomTopic)
			if err != nil || len(state) != 1 || state[0].EventID != topic0.EventID() {
				t.Fatalf("current topic = %+v, %v", state, err)
			}
			if m, err := db.Membership(ctx, info.NID, bob); err != nil || m != spec.Ban {
				t.Fatalf("current membership of bob = %q, %v", m, err)
			}
			stored, err := db.EventByID(ctx, topicB.EventID())
			if err != nil || stored.Status != storage.EventSoftFailed || stored.StreamPos != 0 {
				t.Fatalf("soft-failed topic stored as %+v, %v", stored, err)
			}

			// Rejected: eve never joined.
			eveMsg := d.event(c, eve, "m.room.message", nil, map[string]any{"body": "hi"}, d.after(bobJoin), merge)
			mustInput(t, rs, eveMsg, StatusRejected)
			// Missing prev events are reported for the caller to fetch.
			ghost := d.event(c, bob, "m.room.message", nil, map[string]any{"body": "ghost"}, d.after(bobJoin), bobJoin)
			dangling := d.event(b, alice, "m.room.message", nil, map[string]any{"body": "after ghost"}, resolved, ghost)
			err = inputOne(t, rs, InputEvent{Kind: KindNew, Event: dangling}).Err
			var missing *MissingPrevEventsError
			if !errors.As(err, &missing) || len(missing.Missing) != 1 || missing.Missing[0] != ghost.EventID() {
				t.Fatalf("dangling event: err = %v, want missing %s", err, ghost.EventID())
			}
			// Re-input is idempotent.
			mustInput(t, rs, merge, StatusAccepted)

			// The room keeps working for local sends on top of the merged head.
			if _, err := rs.Send(ctx, LocalEvent{RoomID: d.roomID, Sender: alice, Type: "m.room.message", Content: json.RawMessage(`{"body":"x"}`)}); err == nil {
				t.Fatal("a user of another server sent through the local pipeline")
			}
		})
	}
}

func mustRoom(t *testing.T, rs *Roomserver, roomID string) *room {
	t.Helper()
	r, err := rs.room(context.Background(), roomID)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type forkRoom struct {
	d               *dag
	rs              *Roomserver
	db              *storage.DB
	b, c            *fakeServer
	alice, bob      string
	head            gomatrixserverlib.PDU
	topic0, bobJoin gomatrixserverlib.PDU
}

// buildRoom feeds a room made on other servers into rs: alice (b.test)
// creates it, bob (c.test, power 50) joins.
func buildRoom(t *testing.T, version string) *forkRoom {
	rs, db := openRoomserver(t)
	f := &forkRoom{d: newDAG(t, version), rs: rs, db: db, b: newFakeServer(t, "b.test"), c: newFakeServer(t, "c.test"),
		alice: "@alice:b.test", bob: "@bob:c.test"}
	d := f.d
	if !d.ver.DomainlessRoomIDs() {
		d.roomID = "!fork:b.test"
	}
	createContent := map[string]any{"room_version": version}
	if d.ver.CreatorInCreateEvent() {
		createContent["creator"] = f.alice
	}
	create := d.event(f.b, f.alice, spec.MRoomCreate, sk(""), createContent, stateMap{})
	join := d.event(f.b, f.alice, spec.MRoomMember, sk(f.alice), map[string]any{"membership": "join"}, d.after(create), create)
	users := map[string]int{f.bob: 50}
	if !d.ver.PrivilegedCreators() {
		users[f.alice] = 100
	}
	pl := d.event(f.b, f.alice, spec.MRoomPowerLevels, sk(""), map[string]any{"users": users, "state_default": 50, "ban": 50}, d.after(join), join)
	jr := d.event(f.b, f.alice, spec.MRoomJoinRules, sk(""), map[string]any{"join_rule": "public"}, d.after(pl), pl)
	f.topic0 = d.event(f.b, f.alice, spec.MRoomTopic, sk(""), map[string]any{"topic": "original"}, d.after(jr), jr)
	f.bobJoin = d.event(f.c, f.bob, spec.MRoomMember, sk(f.bob), map[string]any{"membership": "join"}, d.after(f.topic0), f.topic0)
	for _, ev := range []gomatrixserverlib.PDU{create, join, pl, jr, f.topic0, f.bobJoin} {
		mustInput(t, rs, ev, StatusAccepted)
	}
	f.head = f.bobJoin
	return f
}

// TestRemoteEventsV12 feeds a v12 room (domainless room ID, creator
// outside the power levels) built on other servers through Input.
func TestRemoteEventsV12(t *testing.T) {
	ctx := context.Background()
	f := buildRoom(t, "12")
	d := f.d
	if strings.Contains(d.roomID, ":") {
		t.Fatalf("v12 room ID %q has a server part", d.roomID)
	}
	topic := d.event(f.c, f.bob, spec.MRoomTopic, sk(""), map[string]any{"topic": "bob"}, d.after(f.head), f.head)
	mustInput(t, f.rs, topic, StatusAccepted)
	// Bob (power 50) may not change the power levels; the creator may.
	badPL := d.event(f.c, f.bob, spec.MRoomPowerLevels, sk(""), map[string]any{"users": map[string]int{f.bob: 100}}, d.after(topic), topic)
	mustInput(t, f.rs, badPL, StatusRejected)
	info, err := f.db.Room(ctx, d.roomID)
	if err != nil || len(info.Extremities) != 1 || info.Extremities[0] != topic.EventID() {
		t.Fatalf("room head = %+v, %v", info, err)
	}
	state, err := f.db.CurrentStateEvents(ctx, info.NID, spec.MRoomTopic)
	if err != nil || len(state) != 1 || state[0].EventID != topic.EventID() {
		t.Fatalf("current topic = %+v, %v", state, err)
	}
}

// TestCancelledSenderDoesNotBreakOthers: a send whose request context is
// cancelled after it was queued still commits, and the room keeps working.
func TestCancelledSenderDoesNotBreakOthers(t *testing.T) {
	rs, db := openRoomserver(t)
	ctx := context.Background()
	roomID, err := rs.CreateRoom(ctx, CreateRoomRequest{Creator: "@a:a.test", Version: "12", Preset: PresetPublicChat})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			cctx, cancel := context.WithCancel(ctx)
			if i%2 == 0 {
				cancel() // the client hangs up at once
			}
			_, err := rs.Send(cctx, LocalEvent{RoomID: roomID, Sender: "@a:a.test", Type: "m.room.message", Content: json.RawMessage(`{"body":"x"}`)})
			cancel()
			if i%2 == 1 {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a send with a live context failed: %v", err)
		}
	}
	if _, err := rs.Send(ctx, LocalEvent{RoomID: roomID, Sender: "@a:a.test", Type: "m.room.message", Content: json.RawMessage(`{"body":"after"}`)}); err != nil {
		t.Fatalf("room broken after cancelled sends: %v", err)
	}
	info, _ := db.Room(ctx, roomID)
	if len(info.Extremities) != 1 {
		t.Fatalf("extremities = %v", info.Extremities)
	}
}
