package roomserver

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

// TestBackfillChainSharesSnapshots: a chain of backfilled events stores
// the state before each as the snapshot of its prev event, with the prev
// event added when it is state (a delta), not as a copy of the room's
// state per event; what each snapshot holds is the state before its event.
// A long chain of state events stays correct past the delta chain's cap.
func TestBackfillChainSharesSnapshots(t *testing.T) {
	ctx := context.Background()
	f := buildRoom(t, "11")
	d := f.d
	m1 := text(d, f.c, f.bob, "one", f.head)
	m2 := text(d, f.c, f.bob, "two", m1)
	topic := d.event(f.c, f.bob, spec.MRoomTopic, sk(""), map[string]any{"topic": "in the chain"}, d.after(m2), m2)
	m3 := text(d, f.c, f.bob, "three", topic)
	m4 := text(d, f.c, f.bob, "four", m3)
	chain := []gomatrixserverlib.PDU{m1, m2, topic, m3, m4}
	prev := m4
	for i := range 40 {
		prev = d.event(f.c, f.bob, spec.MRoomTopic, sk(""), map[string]any{"topic": fmt.Sprint("topic ", i)}, d.after(prev), prev)
		chain = append(chain, prev)
	}
	in := make([]InputEvent, len(chain))
	for i, p := range chain {
		in[i] = InputEvent{Kind: KindBackfill, Event: p, Origin: "c.test"}
	}
	res, err := f.rs.Input(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil || r.Status != StatusAccepted || r.StreamPos >= 0 {
			t.Fatalf("backfilling %s: %+v", r.EventID, r)
		}
	}
	snap := func(p gomatrixserverlib.PDU) int64 {
		e, err := f.db.EventByID(ctx, p.EventID())
		if err != nil {
			t.Fatal(err)
		}
		return e.StateBefore
	}
	if snap(m1) != snap(m2) || snap(m2) != snap(topic) {
		t.Errorf("messages after the same state have snapshots %d, %d, %d: want one", snap(m1), snap(m2), snap(topic))
	}
	if snap(m3) != snap(m4) || snap(m3) == snap(m1) {
		t.Errorf("after the topic: snapshots %d, %d (before it %d)", snap(m3), snap(m4), snap(m1))
	}
	for _, p := range chain {
		stored, err := f.db.Snapshot(ctx, snap(p))
		if err != nil {
			t.Fatal(err)
		}
		want := d.beforeOf[p.EventID()]
		if len(stored) != len(want) {
			t.Fatalf("state before %s has %d entries, want %d", p.EventID(), len(stored), len(want))
		}
		for k, nid := range stored {
			ev, ok := want[gomatrixserverlib.StateKeyTuple{EventType: k.Type, StateKey: k.StateKey}]
			if !ok {
				t.Fatalf("state before %s has (%s, %s), which it should not", p.EventID(), k.Type, k.StateKey)
			}
			e, err := f.db.EventByID(ctx, ev.EventID())
			if err != nil || e.NID != nid {
				t.Fatalf("state before %s: (%s, %s) is event %d, want %s", p.EventID(), k.Type, k.StateKey, nid, ev.EventID())
			}
		}
	}
}

// countingVerifier accepts every signature and counts the checks of each
// message.
type countingVerifier struct {
	mu     sync.Mutex
	checks map[string]int
}

func (v *countingVerifier) VerifyJSONs(_ context.Context, reqs []gomatrixserverlib.VerifyJSONRequest) ([]gomatrixserverlib.VerifyJSONResult, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, r := range reqs {
		v.checks[string(r.ServerName)+" "+string(r.Message)]++
	}
	return make([]gomatrixserverlib.VerifyJSONResult, len(reqs)), nil
}

// TestGapChainVerifiedOnce: closing a gap inputs the fetched chain again
// once its oldest event has its state, in one call; no event's signatures
// are checked twice on the way.
func TestGapChainVerifiedOnce(t *testing.T) {
	ctx := context.Background()
	f := buildRoom(t, "11")
	v := &countingVerifier{checks: map[string]int{}}
	f.rs.verifier = v
	prev := f.head
	for range missingEventsLimit + 5 {
		prev = text(f.d, f.c, f.bob, "long gap", prev)
	}
	end := text(f.d, f.c, f.bob, "end", prev)
	res, err := f.rs.InputFetching(ctx, newFakeFetcher(f.d), []InputEvent{{Kind: KindNew, Event: end, Origin: "c.test"}})
	if err != nil || res[0].Err != nil || res[0].Status != StatusAccepted {
		t.Fatalf("long gap: %+v, %v", res, err)
	}
	if len(v.checks) < missingEventsLimit+1 {
		t.Fatalf("%d signatures checked, want at least %d", len(v.checks), missingEventsLimit+1)
	}
	for msg, n := range v.checks {
		if n > 1 {
			t.Fatalf("checked %d times: %.120s", n, msg)
		}
	}
	e, err := f.db.EventByID(ctx, end.EventID())
	if err != nil || e.Status != storage.EventAccepted || e.StreamPos <= 0 {
		t.Fatalf("end: %+v, %v", e, err)
	}
}
