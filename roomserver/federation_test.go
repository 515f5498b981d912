package roomserver

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// TestGapChainFetchesStateOnce: a long gap is closed with one request of
// missing events and one of state: once the oldest fetched event has its
// state, the others build on it without fetching again.
func TestGapChainFetchesStateOnce(t *testing.T) {
	ctx := context.Background()
	f := buildRoom(t, "11")
	prev := f.head
	for i := 0; i < missingEventsLimit+5; i++ {
		prev = text(f.d, f.c, f.bob, "long gap", prev)
	}
	end := text(f.d, f.c, f.bob, "end", prev)
	fetch := newFakeFetcher(f.d)
	res, err := f.rs.InputFetching(ctx, fetch, []InputEvent{{Kind: KindNew, Event: end, Origin: "c.test"}})
	if err != nil || res[0].Err != nil || res[0].Status != StatusAccepted {
		t.Fatalf("long gap: %+v, %v", res, err)
	}
	if fetch.calls["missing"] != 1 || fetch.calls["state_ids"] != 1 {
		t.Fatalf("long gap closed with %v, want one request of missing events and one of state", fetch.calls)
	}
}

// stateFetcher is fakeFetcher that also answers /state.
type stateFetcher struct{ *fakeFetcher }

func (f stateFetcher) State(ctx context.Context, origin spec.ServerName, roomID, eventID string) ([]json.RawMessage, []json.RawMessage, error) {
	f.calls["state"]++
	state, chain, _ := f.StateIDs(ctx, origin, roomID, eventID)
	f.calls["state_ids"]--
	var st, ch []json.RawMessage
	for _, id := range state {
		st = append(st, f.d.events[id].JSON())
	}
	for _, id := range chain {
		ch = append(ch, f.d.events[id].JSON())
	}
	return st, ch, nil
}

// TestStateFetchedWholeWhenMostIsMissing: when most of the state at a
// missing prev event is missing, it comes in one /state request, not an
// /event request per event; when little is, only that is fetched.
func TestStateFetchedWholeWhenMostIsMissing(t *testing.T) {
	ctx := context.Background()
	f := buildRoom(t, "11")
	d := f.d
	// Members whose joins are in the state but in no auth chain of bob's.
	prev := f.head
	for i := 0; i < 15; i++ {
		user := "@u" + string(rune('a'+i)) + ":c.test"
		prev = d.event(f.c, user, spec.MRoomMember, sk(user), map[string]any{"membership": "join"}, d.after(prev), prev)
		mustInput(t, f.rs, prev, StatusAccepted)
	}
	old := text(d, f.c, f.bob, "old", prev)
	mustInput(t, f.rs, old, StatusAccepted)

	// A server that holds only the create event learns of history.
	rs, _ := openRoomserver(t)
	for _, ev := range d.events {
		if ev.Type() == spec.MRoomCreate {
			mustInput(t, rs, ev, StatusAccepted)
		}
	}
	fetch := stateFetcher{newFakeFetcher(d)}
	res, err := rs.InputFetching(ctx, fetch, []InputEvent{{Kind: KindBackfill, Event: old, Origin: "c.test"}})
	if err != nil || res[0].Err != nil || res[0].Status != StatusAccepted {
		t.Fatalf("backfill with most state missing: %+v, %v", res, err)
	}
	// The state asked for is the one at old's missing prev event; /state
	// does not carry that event itself, which one /event fetches (as
	// Synapse).
	if fetch.calls["state"] != 1 || fetch.calls["event"] != 1 {
		t.Fatalf("fetched with %v, want one /state and one /event", fetch.calls)
	}

	// The original server misses one state event (a topic on a branch it
	// never saw): that alone is fetched.
	topic := d.event(f.c, f.bob, spec.MRoomTopic, sk(""), map[string]any{"topic": "on a branch"}, d.after(old), old)
	onBranch := text(d, f.c, f.bob, "on the branch", topic)
	fetch = stateFetcher{newFakeFetcher(d)}
	res, err = f.rs.InputFetching(ctx, fetch, []InputEvent{{Kind: KindBackfill, Event: onBranch, Origin: "c.test"}})
	if err != nil || res[0].Err != nil || res[0].Status != StatusAccepted {
		t.Fatalf("backfill with one state event missing: %+v, %v", res, err)
	}
	if fetch.calls["state"] != 0 || fetch.calls["event"] != 1 {
		t.Fatalf("fetched with %v, want one /event", fetch.calls)
	}
}

// TestServerViewer: what another server may see of a room, by the state
// at each event (Synapse's filter_events_for_server): under "invited", a
// server sees from its user's invite on; under "joined", while its user is
// joined; its user's own join is visible to it and the leave is not; a
// server joined throughout sees everything.
func TestServerViewer(t *testing.T) {
	ctx := context.Background()
	f := buildRoom(t, "11")
	d := f.d
	dave := "@dave:d.test"
	ds := newFakeServer(t, "d.test")
	var order []gomatrixserverlib.PDU
	add := func(ev gomatrixserverlib.PDU) gomatrixserverlib.PDU {
		mustInput(t, f.rs, ev, StatusAccepted)
		order = append(order, ev)
		return ev
	}
	prev := f.head
	state := func(srv *fakeServer, sender, typ, key string, content map[string]any) gomatrixserverlib.PDU {
		prev = add(d.event(srv, sender, typ, sk(key), content, d.after(prev), prev))
		return prev
	}
	say := func(body string) gomatrixserverlib.PDU {
		prev = add(text(d, f.b, f.alice, body, prev))
		return prev
	}
	visInvited := state(f.b, f.alice, spec.MRoomHistoryVisibility, "", map[string]any{"history_visibility": "invited"})
	m1 := say("before dave's invite")
	invite := state(f.b, f.alice, spec.MRoomMember, dave, map[string]any{"membership": "invite"})
	m2 := say("dave is invited")
	join := state(ds, dave, spec.MRoomMember, dave, map[string]any{"membership": "join"})
	m3 := say("dave is in")
	visJoined := state(f.b, f.alice, spec.MRoomHistoryVisibility, "", map[string]any{"history_visibility": "joined"})
	m4 := say("still in")
	leave := state(ds, dave, spec.MRoomMember, dave, map[string]any{"membership": "leave"})
	m5 := say("dave left")

	wantD := map[string]bool{
		visInvited.EventID(): false, m1.EventID(): false, invite.EventID(): true, m2.EventID(): true,
		join.EventID(): true, m3.EventID(): true, visJoined.EventID(): true, m4.EventID(): true,
		leave.EventID(): false, m5.EventID(): false,
	}
	vd, vc := f.rs.ServerViewer(ctx, "d.test"), f.rs.ServerViewer(ctx, "c.test")
	for _, ev := range order {
		e, err := f.db.EventByID(ctx, ev.EventID())
		if err != nil {
			t.Fatal(err)
		}
		if got := vd.CanSee(e); got != wantD[ev.EventID()] {
			t.Errorf("d.test sees %s %s (%s): %v, want %v", ev.Type(), ev.EventID(), ev.Content(), got, wantD[ev.EventID()])
		}
		if !vc.CanSee(e) {
			t.Errorf("c.test, joined throughout, does not see %s", ev.EventID())
		}
	}
	if vd.Err() != nil || vc.Err() != nil {
		t.Fatal(vd.Err(), vc.Err())
	}
}
