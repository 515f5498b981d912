package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
)

// fedFixture is a room whose events are stored as the roomserver stores
// them (StoreEvent extending the current state), for the federation queue.
type fedFixture struct {
	t    *testing.T
	db   *DB
	room int64
	n    int
}

func newFedFixture(t *testing.T) *fedFixture {
	f := &fedFixture{t: t}
	f.db, _ = openTestDB(t)
	mustWrite(t, f.db, func(tx *Tx) (err error) {
		f.room, err = tx.InsertRoom(context.Background(), "!fed:x", "11", 1)
		return err
	})
	return f
}

// store stores a timeline event and returns what StoreEvent assigned.
func (f *fedFixture) store(sender, typ string, stateKey *string, content map[string]any) StoredEvent {
	f.t.Helper()
	f.n++
	raw, _ := json.Marshal(map[string]any{"type": typ, "sender": sender, "content": content, "state_key": stateKey})
	var out StoredEvent
	mustWrite(f.t, f.db, func(tx *Tx) (err error) {
		out, err = tx.StoreEvent(context.Background(), EventWrite{
			Event: NewEvent{RoomNID: f.room, EventID: fmt.Sprintf("$e%d", f.n), Type: typ, StateKey: stateKey, Sender: sender,
				Depth: int64(f.n), OriginTS: int64(f.n), JSON: raw},
			Placement: Timeline, RoomID: "!fed:x", Extends: stateKey != nil,
		})
		return err
	})
	return out
}

func (f *fedFixture) member(user, membership string) StoredEvent {
	return f.store(user, "m.room.member", &user, map[string]any{"membership": membership})
}

func (f *fedFixture) snapshot() int64 {
	f.t.Helper()
	r, err := f.db.Room(context.Background(), "!fed:x")
	if err != nil {
		f.t.Fatal(err)
	}
	return r.Snapshot
}

func TestJoinedServersInSnapshot(t *testing.T) {
	ctx := context.Background()
	f := newFedFixture(t)
	f.member("@a:x", "join")
	f.member("@b:y", "join")
	f.member("@b2:y", "join")
	f.member("@c:z", "join")
	f.member("@d:w", "invite")
	beforeLeave := f.snapshot()
	// Enough events to cross a full copy of the delta chain.
	empty := ""
	for i := range maxChainLen + 3 {
		f.store("@a:x", "m.room.topic", &empty, map[string]any{"topic": fmt.Sprint(i)})
	}
	leave := f.member("@c:z", "leave")
	f.member("@b:y", "leave") // y still has b2
	for _, tc := range []struct {
		snap int64
		want []string
	}{
		{beforeLeave, []string{"x", "y", "z"}},
		{leave.StateBefore, []string{"x", "y", "z"}},
		{f.snapshot(), []string{"x", "y"}},
		{0, nil},
	} {
		got, err := f.db.JoinedServersInSnapshot(ctx, tc.snap)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("servers at snapshot %d = %v, %v; want %v", tc.snap, got, err, tc.want)
		}
	}
}

func TestStreamEventsAfterAndCursor(t *testing.T) {
	ctx := context.Background()
	f := newFedFixture(t)
	if pos, err := f.db.FederationCursor(ctx); err != nil || pos != 0 {
		t.Fatalf("cursor of a new database = %d, %v", pos, err)
	}
	join := f.member("@a:x", "join")
	msg := f.store("@a:x", "m.room.message", nil, map[string]any{"body": "hi"})
	mustWrite(t, f.db, func(tx *Tx) error {
		_, err := tx.StoreEvent(ctx, EventWrite{Event: NewEvent{RoomNID: f.room, EventID: "$outlier", Type: "m.room.message",
			Sender: "@b:y", JSON: []byte(`{}`)}, Placement: Outlier})
		return err
	})
	evs, err := f.db.StreamEventsAfter(ctx, 0, f.db.StreamPosition(), 10)
	if err != nil || len(evs) != 2 {
		t.Fatalf("events = %+v, %v", evs, err)
	}
	if evs[0].NID != join.NID || evs[0].StateKey == nil || *evs[0].StateKey != "@a:x" || evs[0].Type != "m.room.member" ||
		evs[1].NID != msg.NID || evs[1].StateBefore != msg.StateBefore || evs[1].Sender != "@a:x" || evs[1].RoomNID != f.room {
		t.Fatalf("events = %+v", evs)
	}
	if evs, _ := f.db.StreamEventsAfter(ctx, join.StreamPos, f.db.StreamPosition(), 10); len(evs) != 1 || evs[0].NID != msg.NID {
		t.Fatalf("events after the join = %+v", evs)
	}
	mustWrite(t, f.db, func(tx *Tx) error { return tx.SetFederationCursor(ctx, 7) })
	mustWrite(t, f.db, func(tx *Tx) error { return tx.SetFederationCursor(ctx, 3) })
	if pos, _ := f.db.FederationCursor(ctx); pos != 7 {
		t.Fatalf("cursor = %d, want 7 (never moved back)", pos)
	}
}

// queueMessages stores n messages and queues them for dest.
func (f *fedFixture) queueMessages(dest string, n int) []int64 {
	var nids []int64
	var rows []QueuedPDU
	for range n {
		e := f.store("@a:x", "m.room.message", nil, map[string]any{"body": "m"})
		nids = append(nids, e.NID)
		rows = append(rows, QueuedPDU{Destination: dest, EventNID: e.NID, RoomNID: f.room})
	}
	mustWrite(f.t, f.db, func(tx *Tx) error { return tx.QueueFederationPDUs(context.Background(), rows) })
	return nids
}

func startTxn(t *testing.T, db *DB, dest string, minID int64) string {
	t.Helper()
	var id string
	mustWrite(t, db, func(tx *Tx) (err error) {
		id, err = tx.StartFederationTxn(context.Background(), dest, 50, 100, minID)
		return err
	})
	return id
}

func TestFederationTransactions(t *testing.T) {
	ctx := context.Background()
	f := newFedFixture(t)
	nids := f.queueMessages("y", 60)
	f.queueMessages("z", 1)
	mustWrite(t, f.db, func(tx *Tx) error {
		for i := range 3 {
			if err := tx.QueueFederationEDU(ctx, QueuedEDU{Destination: "y", Type: "m.direct_to_device",
				Content: fmt.Appendf(nil, `{"n":%d}`, i)}); err != nil {
				return err
			}
		}
		return nil
	})
	if dests, err := f.db.FederationDestinationsPending(ctx); err != nil || !slices.Equal(dests, []string{"y", "z"}) {
		t.Fatalf("pending destinations = %v, %v", dests, err)
	}
	id := startTxn(t, f.db, "y", 1000)
	if id != "1000" {
		t.Fatalf("txn ID = %q", id)
	}
	if st, _ := f.db.FederationDestination(ctx, "y"); st.TxnID != id {
		t.Fatalf("destination state = %+v, want the transaction in flight", st)
	}
	items, err := f.db.FederationTxnItems(ctx, "y", id)
	if err != nil || len(items) != 53 {
		t.Fatalf("items = %d, %v", len(items), err)
	}
	for i, it := range items[:50] {
		if it.IsEDU || it.EventID != fmt.Sprintf("$e%d", i+1) || len(it.JSON) == 0 {
			t.Fatalf("item %d = %+v, want event %d", i, it, nids[i])
		}
	}
	for i, it := range items[50:] {
		if !it.IsEDU || it.EDUType != "m.direct_to_device" || string(it.EDUContent) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("EDU %d = %+v", i, it)
		}
	}
	if n, _ := f.db.QueuedFederationPDUs(ctx, "y"); n != 10 {
		t.Fatalf("PDUs outside the transaction = %d, want 10", n)
	}
	// A failure keeps the transaction; success removes its rows and the
	// backoff.
	mustWrite(t, f.db, func(tx *Tx) error { return tx.SetFederationBackoff(ctx, "y", 3, 12345) })
	if st, _ := f.db.FederationDestination(ctx, "y"); st != (DestinationState{Failures: 3, RetryAt: 12345, TxnID: id}) {
		t.Fatalf("state after a failure = %+v", st)
	}
	mustWrite(t, f.db, func(tx *Tx) error { return tx.FinishFederationTxn(ctx, "y", id) })
	if st, _ := f.db.FederationDestination(ctx, "y"); st != (DestinationState{}) {
		t.Fatalf("state after success = %+v", st)
	}
	if p, e, _ := f.db.FederationQueueCounts(ctx, "y"); p != 10 || e != 0 {
		t.Fatalf("queue after the first transaction: %d PDUs, %d EDUs", p, e)
	}
	// IDs only grow, whatever the clock says.
	if id2 := startTxn(t, f.db, "y", 5); id2 != "1001" {
		t.Fatalf("second txn ID = %q, want 1001", id2)
	}
	mustWrite(t, f.db, func(tx *Tx) error { return tx.FinishFederationTxn(ctx, "y", "1001") })
	if id3 := startTxn(t, f.db, "y", 2000); id3 != "" {
		t.Fatalf("txn ID with nothing queued = %q", id3)
	}
	if p, _, _ := f.db.FederationQueueCounts(ctx, "z"); p != 1 {
		t.Fatalf("other destination's queue = %d", p)
	}
}

func TestFederationKeyedEDUsReplace(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	queue := func(typ, key, content string) {
		mustWrite(t, db, func(tx *Tx) error {
			return tx.QueueFederationEDU(ctx, QueuedEDU{Destination: "y", Type: typ, Key: key, Content: []byte(content)})
		})
	}
	queue("m.typing", "r1", `{"typing":true}`)
	id := startTxn(t, db, "y", 1) // the first is in flight: not replaced
	queue("m.typing", "r1", `{"typing":false}`)
	queue("m.typing", "r1", `{"typing":true,"last":1}`)
	queue("m.typing", "r2", `{}`)
	queue("m.direct_to_device", "", `{"a":1}`)
	queue("m.direct_to_device", "", `{"a":1}`)
	mustWrite(t, db, func(tx *Tx) error { return tx.FinishFederationTxn(ctx, "y", id) })
	id = startTxn(t, db, "y", 1)
	items, err := db.FederationTxnItems(ctx, "y", id)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range items {
		got = append(got, it.EDUType+string(it.EDUContent))
	}
	want := []string{`m.typing{"typing":true,"last":1}`, `m.typing{}`, `m.direct_to_device{"a":1}`, `m.direct_to_device{"a":1}`}
	if !slices.Equal(got, want) {
		t.Fatalf("EDUs = %v, want %v", got, want)
	}
}

// The newest events of each room stay queued, those of the transaction in
// flight included (it keeps its ID and EDUs); stale EDUs not in flight go.
func TestCollapseFederationQueue(t *testing.T) {
	ctx := context.Background()
	f := newFedFixture(t)
	f.queueMessages("y", 2)
	mustWrite(t, f.db, func(tx *Tx) error {
		return tx.QueueFederationEDU(ctx, QueuedEDU{Destination: "y", Type: "m.direct_to_device", Content: []byte(`{"in":"flight"}`)})
	})
	inFlight := startTxn(t, f.db, "y", 1)
	room1 := f.queueMessages("y", 20)
	var room2 int64
	mustWrite(t, f.db, func(tx *Tx) (err error) {
		room2, err = tx.InsertRoom(ctx, "!other:x", "11", 1)
		return err
	})
	// Three events of another room (any stored events do: the queue only
	// needs their room).
	var rows []QueuedPDU
	for _, nid := range room1[:3] {
		rows = append(rows, QueuedPDU{Destination: "y", EventNID: nid, RoomNID: room2})
	}
	mustWrite(t, f.db, func(tx *Tx) error {
		if err := tx.QueueFederationPDUs(ctx, rows); err != nil {
			return err
		}
		for _, e := range []QueuedEDU{
			{Destination: "y", Type: "m.typing", Key: "k", Content: []byte(`{}`)},
			{Destination: "y", Type: "m.presence", Content: []byte(`{}`)},
			{Destination: "y", Type: "m.direct_to_device", Content: []byte(`{}`)},
		} {
			if err := tx.QueueFederationEDU(ctx, e); err != nil {
				return err
			}
		}
		return nil
	})
	f.queueMessages("z", 30) // another destination is untouched
	var removed int64
	mustWrite(t, f.db, func(tx *Tx) (err error) {
		removed, err = tx.CollapseFederationQueue(ctx, "y", 5, []string{"m.typing", "m.presence"})
		return err
	})
	if removed != 2+15+2 {
		t.Fatalf("removed %d rows, want 19", removed)
	}
	items, _ := f.db.FederationTxnItems(ctx, "y", inFlight)
	if len(items) != 1 || !items[0].IsEDU || string(items[0].EDUContent) != `{"in":"flight"}` {
		t.Fatalf("transaction in flight = %+v, want its EDU alone", items)
	}
	if st, err := f.db.FederationDestination(ctx, "y"); err != nil || st.TxnID != inFlight {
		t.Fatalf("destination after collapse: %+v, %v", st, err)
	}
	next := startTxn(t, f.db, "y", 1)
	items, _ = f.db.FederationTxnItems(ctx, "y", next)
	var pdus []int64
	var edus []string
	for _, it := range items {
		if it.IsEDU {
			edus = append(edus, it.EDUType)
			continue
		}
		ev, err := f.db.EventByID(ctx, it.EventID)
		if err != nil {
			t.Fatal(err)
		}
		pdus = append(pdus, ev.NID)
	}
	want := append(slices.Clone(room1[15:]), room1[:3]...)
	if !slices.Equal(pdus, want) || !slices.Equal(edus, []string{"m.direct_to_device"}) {
		t.Fatalf("after collapse: PDUs %v (want %v), EDUs %v", pdus, want, edus)
	}
	if p, _, _ := f.db.FederationQueueCounts(ctx, "z"); p != 30 {
		t.Fatalf("other destination's queue = %d, want 30", p)
	}
}

// A transaction left with nothing to send is dropped without resetting
// the destination's backoff (it was never answered); the next one takes
// the queued rows.
func TestDropFederationTxn(t *testing.T) {
	ctx := context.Background()
	f := newFedFixture(t)
	f.queueMessages("y", 2)
	id := startTxn(t, f.db, "y", 1)
	later := f.queueMessages("y", 1)
	mustWrite(t, f.db, func(tx *Tx) error { return tx.SetFederationBackoff(ctx, "y", 3, 12345) })
	mustWrite(t, f.db, func(tx *Tx) error { return tx.DropFederationTxn(ctx, "y", id) })
	st, err := f.db.FederationDestination(ctx, "y")
	if err != nil || st.TxnID != "" || st.Failures != 3 || st.RetryAt != 12345 {
		t.Fatalf("destination after the drop: %+v, %v", st, err)
	}
	next := startTxn(t, f.db, "y", 1)
	items, _ := f.db.FederationTxnItems(ctx, "y", next)
	if next == id || len(items) != 1 {
		t.Fatalf("next transaction %s (dropped %s): %+v", next, id, items)
	}
	if ev, err := f.db.EventByID(ctx, items[0].EventID); err != nil || ev.NID != later[0] {
		t.Fatalf("next transaction holds %+v, want event %d", items[0], later[0])
	}
}

// EDU keys hold NUL separators (room, user): a newer EDU with the same key
// replaces the queued one on both engines (PostgreSQL's text holds no NUL).
func TestQueueEDUKeyWithNUL(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	for i, key := range []string{"!r:x\x00@a:x", "!r:x\x00@a:x", "!r:x\x00@b:x", `!r:x\0@a:x`} {
		mustWrite(t, db, func(tx *Tx) error {
			return tx.QueueFederationEDU(ctx, QueuedEDU{Destination: "hs2", Type: "m.typing", Key: key, Content: []byte(fmt.Sprintf(`{"n":%d}`, i))})
		})
	}
	if _, edus, err := db.FederationQueueCounts(ctx, "hs2"); err != nil || edus != 3 {
		t.Fatalf("queued EDUs = %d, %v; want 3 (the repeated key replaced, the others distinct)", edus, err)
	}
}
