package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

// withholding is a fakeFetcher whose origin answers /get_missing_events
// with nothing.
type withholding struct{ *fakeFetcher }

func (f withholding) MissingEvents(context.Context, spec.ServerName, string, []string, []string, int) ([]json.RawMessage, error) {
	f.calls["missing"]++
	return nil, nil
}

// TestPushedEventWithWithheldPrevsIsDropped: a pushed event whose prev
// events its origin does not give through /get_missing_events is dropped,
// as Synapse does: its state is not fetched instead (the event could become
// the room's only forward extremity on a state the origin made up).
func TestPushedEventWithWithheldPrevsIsDropped(t *testing.T) {
	ctx := context.Background()
	f := buildRoom(t, "11")
	gap := text(f.d, f.c, f.bob, "never given", f.head)
	end := text(f.d, f.c, f.bob, "pushed", gap)
	fetch := withholding{newFakeFetcher(f.d)}
	res, err := f.rs.InputFetching(ctx, fetch, []InputEvent{{Kind: KindNew, Event: end, Origin: "c.test"}})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res[0].Err, ErrPrevEventsWithheld) {
		t.Fatalf("pushed event with withheld prevs: %+v", res[0])
	}
	if fetch.calls["missing"] != 1 || fetch.calls["state_ids"] != 0 || fetch.calls["event"] != 0 {
		t.Fatalf("fetched with %v, want one request of missing events and nothing else", fetch.calls)
	}
	if _, err := f.db.EventByID(ctx, end.EventID()); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("dropped event stored: %v", err)
	}
}

// TestPulledEventGetsStateAtItsMissingPrev: events /get_missing_events
// returns are pulled: the oldest one, whose prev event is still unknown,
// gets the state after that prev event (/state_ids at it), as Synapse asks.
func TestPulledEventGetsStateAtItsMissingPrev(t *testing.T) {
	ctx := context.Background()
	f := buildRoom(t, "11")
	prev := f.head
	var chain []gomatrixserverlib.PDU
	for i := 0; i < missingEventsLimit+3; i++ {
		prev = text(f.d, f.c, f.bob, "gap", prev)
		chain = append(chain, prev)
	}
	end := text(f.d, f.c, f.bob, "end", prev)
	fetch := newFakeFetcher(f.d)
	res, err := f.rs.InputFetching(ctx, fetch, []InputEvent{{Kind: KindNew, Event: end, Origin: "c.test"}})
	if err != nil || res[0].Err != nil || res[0].Status != StatusAccepted {
		t.Fatalf("end of a long gap: %+v, %v", res, err)
	}
	// The request returned the newest missingEventsLimit events of the
	// chain; the oldest of those builds on the one before.
	oldestMissing := chain[len(chain)-missingEventsLimit-1].EventID()
	if len(fetch.stateAt) != 1 || fetch.stateAt[0] != oldestMissing {
		t.Fatalf("/state_ids asked at %v, want at the missing prev event %s", fetch.stateAt, oldestMissing)
	}
}

// TestMissingPrevsFetchedBeforeAuthChain: an event lacking both prev
// events and auth events has its place in the DAG settled first: the
// missing events bring the auth events, and /event_auth is not asked.
func TestMissingPrevsFetchedBeforeAuthChain(t *testing.T) {
	ctx := context.Background()
	f := buildRoom(t, "11")
	rename := f.d.event(f.c, f.bob, spec.MRoomMember, sk(f.bob), map[string]any{"membership": "join", "displayname": "Bob"}, f.d.after(f.head), f.head)
	msg := text(f.d, f.c, f.bob, "as Bob", rename)
	fetch := newFakeFetcher(f.d)
	res, err := f.rs.InputFetching(ctx, fetch, []InputEvent{{Kind: KindNew, Event: msg, Origin: "c.test"}})
	if err != nil || res[0].Err != nil || res[0].Status != StatusAccepted {
		t.Fatalf("event after a rename: %+v, %v", res, err)
	}
	if fetch.calls["missing"] != 1 || fetch.calls["event_auth"] != 0 {
		t.Fatalf("fetched with %v, want one request of missing events and no /event_auth", fetch.calls)
	}
}

// TestEventOnRejectedPrevIsAccepted: a rejected event changes no state, so
// the state after it is the state before it: an event built on it is
// checked against that state rather than fetching any.
func TestEventOnRejectedPrevIsAccepted(t *testing.T) {
	f := buildRoom(t, "11")
	// bob (power 50) cannot give himself 100.
	grab := f.d.event(f.c, f.bob, spec.MRoomPowerLevels, sk(""), map[string]any{"users": map[string]int{f.bob: 100, f.alice: 100}},
		f.d.after(f.head), f.head)
	mustInput(t, f.rs, grab, StatusRejected)
	msg := map[string]any{"msgtype": "m.text", "body": "on the rejected event"}
	after := f.d.event(f.c, f.bob, "m.room.message", nil, msg, f.d.after(f.head), grab)
	mustInput(t, f.rs, after, StatusAccepted)
	again := text(f.d, f.c, f.bob, "and on that", after)
	mustInput(t, f.rs, again, StatusAccepted)
}

// TestOverlongStateKeyInOldRoomStoredRejected: before room version 11 a
// state key was limited to 255 codepoints, not bytes; such an event from
// another server is stored rejected (as Synapse), not dropped, so events
// building on it are not held up.
func TestOverlongStateKeyInOldRoomStoredRejected(t *testing.T) {
	ctx := context.Background()
	f := buildRoom(t, "10")
	key := strings.Repeat("💥", 70) // 280 bytes
	content, _ := json.Marshal(map[string]any{})
	pe := gomatrixserverlib.ProtoEvent{SenderID: f.bob, RoomID: f.d.roomID, Type: "my.room.breaker", StateKey: &key,
		Content: content, PrevEvents: []string{f.head.EventID()}, Depth: f.head.Depth() + 1}
	b := f.d.ver.NewEventBuilderFromProtoEvent(&pe)
	provider, err := gomatrixserverlib.NewAuthEvents(stateList(f.d.after(f.head)))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.AddAuthEvents(provider); err != nil {
		t.Fatal(err)
	}
	built, err := b.Build(f.d.clock, f.c.name, f.c.keyID, f.c.key)
	var ve gomatrixserverlib.EventValidationError
	if err != nil && !errors.As(err, &ve) {
		t.Fatal(err)
	}
	breaker, err := ParseRemoteEvent(f.d.ver, built.JSON())
	if err != nil {
		t.Fatalf("parsing the event with a 280-byte state key: %v", err)
	}
	f.d.events[breaker.EventID()] = breaker
	f.d.stateOf[breaker.EventID()] = f.d.after(f.head)
	f.d.beforeOf[breaker.EventID()] = f.d.after(f.head)
	next := text(f.d, f.c, f.bob, "after the breaker", breaker)
	fetch := newFakeFetcher(f.d)
	res, err := f.rs.InputFetching(ctx, fetch, []InputEvent{{Kind: KindNew, Event: next, Origin: "c.test"}})
	if err != nil || res[0].Err != nil || res[0].Status != StatusAccepted {
		t.Fatalf("event after the breaker: %+v, %v", res, err)
	}
	e, err := f.db.EventByID(ctx, breaker.EventID())
	if err != nil || e.Status != storage.EventRejected {
		t.Fatalf("the breaker is stored as %+v, %v; want rejected", e, err)
	}
}

func stateList(st stateMap) []gomatrixserverlib.PDU {
	out := make([]gomatrixserverlib.PDU, 0, len(st))
	for _, ev := range st {
		out = append(out, ev)
	}
	return out
}
