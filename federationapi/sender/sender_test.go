package sender

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/matrix-org/gomatrix"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

const alice = "@alice:a.test"

// Local events go to the servers joined before them and to the target of a
// member event; never to this server, and events of other servers' users
// go nowhere.
func TestFanOutToTheRoomsServers(t *testing.T) {
	k := newKit(t, Options{})
	b, c := newRemote(t, "b.test"), newRemote(t, "c.test")
	room := k.createRoom(alice)
	k.join(b, room, "@bob:b.test")
	k.join(c, room, "@carol:c.test")
	invite := k.membership(room, alice, "@dan:d.test", spec.Invite)
	msg1 := k.send(room, alice, "one")
	k.input(b, room, "@bob:b.test", "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "from b"})
	kick := k.membership(room, alice, "@carol:c.test", spec.Leave)
	ban := k.membership(room, alice, "@eve:e.test", spec.Ban)
	msg2 := k.send(room, alice, "two")

	want := map[string][]string{
		"b.test": {invite, msg1, kick, ban, msg2},
		"c.test": {invite, msg1, kick}, // the kicked server hears of its kick
		"d.test": {invite},             // invited, not joined
		"e.test": {ban},
	}
	for dest, ids := range want {
		waitFor(t, dest+"'s events", func() bool { return len(k.tr.events(dest)) >= len(ids) })
		k.waitDrained(dest)
	}
	for dest, ids := range want {
		if got := k.tr.events(dest); !slices.Equal(got, ids) {
			t.Errorf("%s received %v, want %v", dest, got, ids)
		}
		for _, txn := range k.tr.requests(dest) {
			if txn.Origin != local || string(txn.Destination) != dest || txn.OriginServerTS == 0 || txn.TransactionID == "" {
				t.Errorf("transaction to %s: origin %q, destination %q, ts %d, ID %q", dest, txn.Origin, txn.Destination,
					txn.OriginServerTS, txn.TransactionID)
			}
		}
	}
	// The PDUs are the stored events.
	stored, _ := k.db.EventByID(context.Background(), msg1)
	var found bool
	for _, txn := range k.tr.requests("b.test") {
		for _, raw := range txn.PDUs {
			found = found || string(raw) == string(stored.JSON)
		}
	}
	if !found {
		t.Errorf("no PDU was the stored JSON of %s", msg1)
	}
	k.tr.with(local, func(d *fakeDest) {
		if d.attempts > 0 {
			t.Errorf("%d transactions to this server", d.attempts)
		}
	})
	// Stopping saves the cursor at the stream's end.
	k.s.Stop()
	if pos, _ := k.db.FederationCursor(context.Background()); pos != k.db.StreamPosition() {
		t.Errorf("cursor %d after stop, stream at %d", pos, k.db.StreamPosition())
	}
}

// Rooms without members elsewhere queue nothing and send nothing.
func TestLocalOnlyRoomsQueueNothing(t *testing.T) {
	k := newKit(t, Options{})
	b := newRemote(t, "b.test")
	shared := k.createRoom(alice)
	k.join(b, shared, "@bob:b.test")
	room := k.createRoom(alice)
	k.membership(room, alice, "@bob:a.test", spec.Invite)
	for i := range 20 {
		k.send(room, alice, fmt.Sprint(i))
	}
	// Events are read in stream order: once this one arrived, the local
	// room's were read.
	last := k.send(shared, alice, "last")
	waitFor(t, "the last event", func() bool { return len(k.tr.events("b.test")) == 1 })
	k.waitDrained("b.test")
	if got := k.tr.events("b.test"); !slices.Equal(got, []string{last}) {
		t.Fatalf("b.test received %v", got)
	}
	if dests, err := k.db.FederationDestinationsPending(context.Background()); err != nil || len(dests) != 0 {
		t.Fatalf("destinations with queued work: %v, %v", dests, err)
	}
	k.tr.mu.Lock()
	defer k.tr.mu.Unlock()
	if len(k.tr.dests) != 1 {
		t.Fatalf("transactions went to %v", k.tr.dests)
	}
}

// Events reach a destination in order, at most 50 per transaction and one
// transaction at a time; a slow destination does not hold up another.
func TestOrderedBatchesOneInFlight(t *testing.T) {
	k := newKit(t, Options{})
	b, c := newRemote(t, "b.test"), newRemote(t, "c.test")
	room := k.createRoom(alice)
	k.join(b, room, "@bob:b.test")
	k.join(c, room, "@carol:c.test")
	gate := make(chan struct{})
	k.tr.with("b.test", func(d *fakeDest) { d.gate = gate })
	var sent []string
	for i := range 120 {
		sent = append(sent, k.send(room, alice, fmt.Sprint(i)))
	}
	// c.test gets everything while b.test's first request is held.
	waitFor(t, "c.test's events", func() bool { return len(k.tr.events("c.test")) == len(sent) })
	if got := k.tr.events("c.test"); !slices.Equal(got, sent) {
		t.Fatalf("c.test received %d events out of order", len(got))
	}
	waitFor(t, "b.test's queue to fill", func() bool {
		p, _, _ := k.db.FederationQueueCounts(context.Background(), "b.test")
		return p == len(sent)
	})
	// Let b.test answer one request at a time.
	deadline := time.After(20 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for len(k.tr.events("b.test")) < len(sent) {
		select {
		case gate <- struct{}{}:
		case <-tick.C:
		case <-deadline:
			t.Fatal("b.test's sender stopped sending")
		}
	}
	k.waitDrained("b.test")
	if got := k.tr.events("b.test"); !slices.Equal(got, sent) {
		t.Fatalf("b.test received %v, want %v", got, sent)
	}
	var sizes []int
	for _, txn := range k.tr.requests("b.test") {
		sizes = append(sizes, len(txn.PDUs))
	}
	if len(sizes) < 3 || slices.Max(sizes) != MaxPDUsPerTxn || sizes[1] != MaxPDUsPerTxn {
		t.Fatalf("transaction sizes %v: want batches of at most and then exactly 50", sizes)
	}
	k.tr.with("b.test", func(d *fakeDest) {
		if d.maxInFlight != 1 {
			t.Fatalf("%d transactions in flight at once", d.maxInFlight)
		}
	})
}

// A transaction whose answer was lost is sent again with the same ID and
// events, so the destination's idempotency drops it; the next transaction
// has a new ID.
func TestRetrySendsTheSameTransaction(t *testing.T) {
	k := newKit(t, Options{InitialBackoff: 5 * time.Millisecond})
	b := newRemote(t, "b.test")
	room := k.createRoom(alice)
	k.join(b, room, "@bob:b.test")
	k.tr.with("b.test", func(d *fakeDest) { d.lose = 1 })
	first := k.send(room, alice, "first")
	waitFor(t, "the retry", func() bool { return len(k.tr.requests("b.test")) == 2 })
	k.waitDrained("b.test")
	second := k.send(room, alice, "second")
	waitFor(t, "the second event", func() bool { return len(k.tr.events("b.test")) == 2 })
	reqs := k.tr.requests("b.test")
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	if reqs[0].TransactionID != reqs[1].TransactionID || !slices.EqualFunc(reqs[0].PDUs, reqs[1].PDUs, sameJSON) {
		t.Fatalf("retry changed the transaction: %q %d PDUs, then %q %d PDUs", reqs[0].TransactionID, len(reqs[0].PDUs),
			reqs[1].TransactionID, len(reqs[1].PDUs))
	}
	if reqs[2].TransactionID == reqs[0].TransactionID {
		t.Fatal("a new transaction reused the ID")
	}
	if got := k.tr.events("b.test"); !slices.Equal(got, []string{first, second}) {
		t.Fatalf("b.test processed %v", got)
	}
}

func sameJSON(a, b json.RawMessage) bool { return string(a) == string(b) }

// A refusal that a retry cannot change (400) drops the transaction and
// the destination carries on, out of backoff.
func TestRefusedTransactionIsDropped(t *testing.T) {
	k := newKit(t, Options{InitialBackoff: time.Minute})
	b := newRemote(t, "b.test")
	room := k.createRoom(alice)
	k.join(b, room, "@bob:b.test")
	k.tr.with("b.test", func(d *fakeDest) { d.down = gomatrix.HTTPError{Code: 400, Message: "M_BAD_JSON"} })
	k.send(room, alice, "refused")
	waitFor(t, "the refusal", func() bool {
		var n int
		k.tr.with("b.test", func(d *fakeDest) { n = d.attempts })
		return n == 1
	})
	k.waitDrained("b.test")
	k.tr.with("b.test", func(d *fakeDest) { d.down = nil })
	next := k.send(room, alice, "next")
	waitFor(t, "the next event", func() bool { return slices.Equal(k.tr.events("b.test"), []string{next}) })
	if st, _ := k.db.FederationDestination(context.Background(), "b.test"); st.Failures != 0 {
		t.Fatalf("destination state %+v after a refusal", st)
	}
}

// Backoff doubles with jitter and never exceeds 60 s.
func TestBackoffIsCapped(t *testing.T) {
	s := New(nil, local, nil, quietLog(), Options{InitialBackoff: time.Second, MaxBackoff: time.Hour})
	for f := 1; f <= 40; f++ {
		base := min(time.Second<<min(f-1, 20), MaxBackoffLimit)
		for range 50 {
			if d := s.backoff(f); d > MaxBackoffLimit || d > base || d < base*3/4 {
				t.Fatalf("backoff after %d failures = %v (base %v)", f, d, base)
			}
		}
	}
}

// A failing destination is left alone for its backoff (saved in the
// database), and retried at once when it is heard from.
func TestResetBackoffRetriesAtOnce(t *testing.T) {
	k := newKit(t, Options{InitialBackoff: 45 * time.Second})
	b := newRemote(t, "b.test")
	room := k.createRoom(alice)
	k.join(b, room, "@bob:b.test")
	k.tr.with("b.test", func(d *fakeDest) { d.down = errDown })
	before := time.Now()
	id := k.send(room, alice, "while down")
	ctx := context.Background()
	waitFor(t, "the failure to be saved", func() bool {
		st, _ := k.db.FederationDestination(ctx, "b.test")
		return st.Failures == 1
	})
	st, _ := k.db.FederationDestination(ctx, "b.test")
	retry := time.UnixMilli(st.RetryAt)
	if retry.Before(before.Add(30*time.Second)) || retry.After(time.Now().Add(MaxBackoffLimit)) {
		t.Fatalf("retry at %v, %v from now: want 34-45 s (and never over 60 s)", retry, time.Until(retry))
	}
	k.tr.with("b.test", func(d *fakeDest) { d.down = nil })
	k.s.ResetBackoff("b.test")
	waitFor(t, "the retry", func() bool { return slices.Equal(k.tr.events("b.test"), []string{id}) })
	k.waitDrained("b.test")
	if st, _ := k.db.FederationDestination(ctx, "b.test"); st.Failures != 0 || st.RetryAt != 0 {
		t.Fatalf("state after the retry: %+v", st)
	}
	k.s.ResetBackoff("nobody.test") // no queue: nothing to do
}

// The queue survives a restart: a transaction whose answer was lost goes
// again under its ID after the restart, and the rest follows, each event
// processed once.
func TestQueueSurvivesRestart(t *testing.T) {
	k := newKit(t, Options{InitialBackoff: 5 * time.Millisecond})
	b := newRemote(t, "b.test")
	room := k.createRoom(alice)
	k.join(b, room, "@bob:b.test")
	// The first transaction is processed but its answer lost; then b.test
	// is down.
	k.tr.with("b.test", func(d *fakeDest) { d.lose, d.downAfter = 1, errDown })
	ids := []string{k.send(room, alice, "first")}
	waitFor(t, "the first attempt", func() bool { return len(k.tr.requests("b.test")) == 1 })
	for i := range 3 {
		ids = append(ids, k.send(room, alice, fmt.Sprint(i)))
	}
	waitFor(t, "the events to be queued", func() bool {
		p, _, _ := k.db.FederationQueueCounts(context.Background(), "b.test")
		return p == len(ids)
	})
	firstTxn := k.tr.requests("b.test")[0].TransactionID

	k.close()
	k.tr.with("b.test", func(d *fakeDest) { d.down = nil })
	k.open()
	k.waitDrained("b.test")
	if got := k.tr.events("b.test"); !slices.Equal(got, ids) {
		t.Fatalf("b.test processed %v, want %v", got, ids)
	}
	if reqs := k.tr.requests("b.test"); reqs[1].TransactionID != firstTxn {
		t.Fatalf("after the restart the first transaction went as %q, not %q", reqs[1].TransactionID, firstTxn)
	}
}

// A transaction answered while the sender stops is removed from the queue
// all the same: it is not sent again after the restart.
func TestAnswerDuringShutdownIsRecorded(t *testing.T) {
	k := newKit(t, Options{})
	b := newRemote(t, "b.test")
	room := k.createRoom(alice)
	k.join(b, room, "@bob:b.test")
	stopped := make(chan struct{})
	k.tr.with("b.test", func(d *fakeDest) {
		d.took = func(ctx context.Context) {
			go func() { k.s.Stop(); close(stopped) }()
			<-ctx.Done() // shutdown began; the answer comes back now
		}
	})
	k.send(room, alice, "last words")
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("the sender did not stop")
	}
	if p, e, err := k.db.FederationQueueCounts(context.Background(), "b.test"); err != nil || p+e != 0 {
		t.Fatalf("queue after an answered transaction: %d PDUs, %d EDUs, %v", p, e, err)
	}
}

// A destination that missed events gets the newest events of each room,
// not the older ones of the transaction it had in flight (other servers
// may have given it newer events already: old ones would come after them);
// stale typing goes, to-device messages stay.
func TestCatchUpSendsTheNewestOfEachRoom(t *testing.T) {
	k := newKit(t, Options{InitialBackoff: time.Minute, CatchUpPerRoom: 3})
	ctx := context.Background()
	b := newRemote(t, "b.test")
	room1, room2 := k.createRoom(alice), k.createRoom(alice)
	k.join(b, room1, "@bob:b.test")
	k.join(b, room2, "@bob:b.test")
	k.tr.with("b.test", func(d *fakeDest) { d.down = errDown })
	k.send(room1, alice, "first") // in flight
	waitFor(t, "the failure", func() bool {
		st, _ := k.db.FederationDestination(ctx, "b.test")
		return st.Failures == 1
	})
	var r1, r2 []string
	for i := range 120 {
		r1 = append(r1, k.send(room1, alice, fmt.Sprint(i)))
		if i%10 == 0 {
			r2 = append(r2, k.send(room2, alice, fmt.Sprint(i)))
		}
	}
	typing := gomatrixserverlib.EDU{Type: "m.typing", Content: []byte(`{"room_id":"` + room1 + `","user_id":"` + alice + `","typing":true}`)}
	toDevice := gomatrixserverlib.EDU{Type: "m.direct_to_device", Content: []byte(`{"message_id":"m1"}`)}
	for _, e := range []gomatrixserverlib.EDU{typing, toDevice} {
		if err := k.s.QueueEDU(ctx, []string{"b.test"}, e); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the queue to fill", func() bool {
		p, e, _ := k.db.FederationQueueCounts(ctx, "b.test")
		return p == 1+len(r1)+len(r2) && e == 2
	})
	k.tr.with("b.test", func(d *fakeDest) { d.down = nil })
	k.s.ResetBackoff("b.test")
	k.waitDrained("b.test")

	want := append(slices.Clone(r1[len(r1)-3:]), r2[len(r2)-3:]...)
	got := k.tr.events("b.test")
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("caught up with %d events, want the %d kept", len(got), len(want))
	}
	if reqs := k.tr.requests("b.test"); len(reqs) > 2 {
		t.Fatalf("catching up took %d transactions", len(reqs))
	}
	k.tr.with("b.test", func(d *fakeDest) {
		if len(d.edus) != 1 || d.edus[0].Type != "m.direct_to_device" {
			t.Fatalf("EDUs after catch-up: %+v", d.edus)
		}
	})
}

// A destination that failed has its queue collapsed when it is retried,
// however few events it missed; a transaction in flight left with nothing
// to send is dropped without resetting the backoff (the destination has
// not answered yet).
func TestCatchUpDropsAnEmptiedTransactionInBackoff(t *testing.T) {
	k := newKit(t, Options{InitialBackoff: 20 * time.Millisecond, CatchUpPerRoom: 2})
	ctx := context.Background()
	b := newRemote(t, "b.test")
	room := k.createRoom(alice)
	k.join(b, room, "@bob:b.test")
	gate := make(chan struct{})
	k.tr.with("b.test", func(d *fakeDest) { d.down, d.gate = errDown, gate })
	k.send(room, alice, "in flight")
	attempts := func(n int) func() bool {
		return func() bool {
			var a, in int
			k.tr.with("b.test", func(d *fakeDest) { a, in = d.attempts, d.inFlight })
			return a == n && in == 1
		}
	}
	waitFor(t, "the first attempt", attempts(1))
	first, _ := k.db.FederationDestination(ctx, "b.test")
	var sent []string
	for i := range 6 {
		sent = append(sent, k.send(room, alice, fmt.Sprint(i)))
	}
	waitFor(t, "the events to be queued", func() bool {
		p, _, _ := k.db.FederationQueueCounts(ctx, "b.test")
		return p == 7
	})
	gate <- struct{}{} // the first attempt fails
	// The retry holds the newest two in a new transaction.
	waitFor(t, "the retry", attempts(2))
	st, _ := k.db.FederationDestination(ctx, "b.test")
	if st.Failures != 1 || st.TxnID == first.TxnID {
		t.Fatalf("destination during the retry: %+v (before: %+v)", st, first)
	}
	k.tr.with("b.test", func(d *fakeDest) { d.down = nil })
	gate <- struct{}{}
	k.waitDrained("b.test")
	if got := k.tr.events("b.test"); !slices.Equal(got, sent[4:]) {
		t.Fatalf("b.test got %v, want the newest two %v", got, sent[4:])
	}
}

// QueueEDUTx queues an EDU as part of a write: a write that fails queues
// nothing, one that commits sends it.
func TestQueueEDUTx(t *testing.T) {
	k := newKit(t, Options{})
	ctx := context.Background()
	failed := errors.New("the write fails after queueing")
	err := k.db.Write(ctx, func(tx *storage.Tx) error {
		if err := k.s.QueueEDUTx(ctx, tx, []string{"b.test"}, gomatrixserverlib.EDU{Type: "org.example.lost", Content: []byte(`{}`)}); err != nil {
			return err
		}
		return failed
	})
	if !errors.Is(err, failed) {
		t.Fatal(err)
	}
	err = k.db.Write(ctx, func(tx *storage.Tx) error {
		return k.s.QueueEDUTx(ctx, tx, []string{"b.test", local}, gomatrixserverlib.EDU{Type: "org.example.kept", Content: []byte(`{"n":1}`)})
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b.test's EDU", func() bool {
		var n int
		k.tr.with("b.test", func(d *fakeDest) { n = len(d.edus) })
		return n == 1
	})
	k.tr.with("b.test", func(d *fakeDest) {
		if d.edus[0].Type != "org.example.kept" {
			t.Fatalf("EDUs = %+v", d.edus)
		}
	})
	waitFor(t, "an empty queue", func() bool {
		pdus, edus, err := k.db.FederationQueueCounts(ctx, "b.test")
		return err == nil && pdus+edus == 0
	})
}

// EDUs go to each named server once (never this one) with origin and
// destination set, at most 100 per transaction, in order; a newer typing
// notification replaces a queued one.
func TestQueueEDU(t *testing.T) {
	k := newKit(t, Options{})
	ctx := context.Background()
	edu := gomatrixserverlib.EDU{Type: "org.example.test", Content: []byte(`{"n":1}`)}
	if err := k.s.QueueEDU(ctx, []string{"b.test", "c.test", local, "b.test", ""}, edu); err != nil {
		t.Fatal(err)
	}
	for _, dest := range []string{"b.test", "c.test"} {
		waitFor(t, dest+"'s EDU", func() bool {
			var n int
			k.tr.with(dest, func(d *fakeDest) { n = len(d.edus) })
			return n == 1
		})
		k.tr.with(dest, func(d *fakeDest) {
			e := d.edus[0]
			if e.Type != edu.Type || e.Origin != local || e.Destination != dest || string(e.Content) != `{"n":1}` {
				t.Fatalf("EDU to %s = %+v", dest, e)
			}
		})
	}
	if err := k.s.QueueEDU(ctx, []string{"b.test"}, gomatrixserverlib.EDU{Type: "x", Content: []byte(`{`)}); err == nil {
		t.Fatal("an EDU with invalid content was queued")
	}
	if err := k.s.QueueEDU(ctx, []string{"b.test"}, gomatrixserverlib.EDU{Content: []byte(`{}`)}); err == nil {
		t.Fatal("an EDU without a type was queued")
	}

	// Hold b.test while 150 to-device messages and three typing
	// notifications queue up.
	gate := make(chan struct{})
	k.tr.with("b.test", func(d *fakeDest) { d.gate = gate })
	if err := k.s.QueueEDU(ctx, []string{"b.test"}, gomatrixserverlib.EDU{Type: "m.direct_to_device", Content: []byte(`{"n":-1}`)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the held request", func() bool {
		var n int
		k.tr.with("b.test", func(d *fakeDest) { n = d.inFlight })
		return n == 1
	})
	for i := range 150 {
		if err := k.s.QueueEDU(ctx, []string{"b.test"}, gomatrixserverlib.EDU{Type: "m.direct_to_device",
			Content: fmt.Appendf(nil, `{"n":%d}`, i)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, typing := range []string{"true", "false", "true"} {
		if err := k.s.QueueEDU(ctx, []string{"b.test"}, gomatrixserverlib.EDU{Type: "m.typing",
			Content: []byte(`{"room_id":"!r:a.test","user_id":"@alice:a.test","typing":` + typing + `}`)}); err != nil {
			t.Fatal(err)
		}
	}
	k.tr.with("b.test", func(d *fakeDest) { d.gate = nil })
	close(gate)
	k.waitDrained("b.test")
	k.tr.with("b.test", func(d *fakeDest) {
		var n int
		var typing int
		next := -1
		for _, e := range d.edus[1:] {
			if e.Type == "m.typing" {
				typing++
				continue
			}
			var c struct{ N int }
			json.Unmarshal(e.Content, &c)
			if c.N != next {
				t.Fatalf("to-device %d arrived when %d was due", c.N, next)
			}
			next++
			n++
		}
		if n != 151 || typing != 1 {
			t.Fatalf("%d to-device and %d typing EDUs delivered, want 151 and 1", n, typing)
		}
		for _, txn := range d.requests {
			if len(txn.EDUs) > MaxEDUsPerTxn {
				t.Fatalf("a transaction carried %d EDUs", len(txn.EDUs))
			}
		}
	})
}

// The resident server forwards a join it received (send_join) to the
// room's other servers, not back to its origin.
func TestForwardSkipsTheOrigin(t *testing.T) {
	k := newKit(t, Options{})
	b, c := newRemote(t, "b.test"), newRemote(t, "c.test")
	room := k.createRoom(alice)
	k.join(b, room, "@bob:b.test")
	join := k.join(c, room, "@carol:c.test")
	if err := k.s.Forward(context.Background(), join, "c.test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the forwarded join", func() bool { return slices.Equal(k.tr.events("b.test"), []string{join}) })
	k.tr.with("c.test", func(d *fakeDest) {
		if d.attempts != 0 {
			t.Fatal("the join went back to its origin")
		}
	})
	if err := k.s.Forward(context.Background(), "$nope", "c.test"); err == nil {
		t.Fatal("forwarding an unknown event succeeded")
	}
}
