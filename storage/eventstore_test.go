package storage

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
)

// State events at the timeline's end extend the current state: each stores
// a delta snapshot over the previous one, moves the room's snapshot and
// current_state, records the state after it (current_after) and its
// filterable value (state_value); a message keeps the state it came in.
func TestStoreEventExtendsState(t *testing.T) {
	db, _ := openTestDB(t)
	k := newRoomKit(t, db, "!extend:x")
	createEv, create := k.setState("m.room.create", "", "@alice:x", map[string]any{"room_version": "11"})
	if parent, chain := k.snapshotShape(k.row(createEv.EventID).CurrentAfter); parent != 0 || chain != 0 {
		t.Fatalf("first snapshot: parent %d, chain %d; want a full copy", parent, chain)
	}
	if create.StateBefore != 0 || k.row(createEv.EventID).StateBefore != 0 {
		t.Fatalf("the create event came after state %d", create.StateBefore)
	}
	prevSnap, prevPos := k.row(createEv.EventID).CurrentAfter, create.StreamPos
	steps := []struct {
		typ, key string
		content  map[string]any
		value    *string
	}{
		{"m.room.member", "@alice:x", map[string]any{"membership": "join"}, ptr("join")},
		{"m.room.join_rules", "", map[string]any{"join_rule": "public"}, ptr("public")},
		{"m.room.history_visibility", "", map[string]any{"history_visibility": "joined"}, ptr("joined")},
		{"m.room.topic", "", map[string]any{"topic": "hi"}, nil},
		{"m.room.member", "@bob:x", map[string]any{"membership": 7}, nil}, // malformed: no value
	}
	for i, s := range steps {
		ev, out := k.setState(s.typ, s.key, "@alice:x", s.content)
		r := k.row(ev.EventID)
		if out.StreamPos <= prevPos || r.StreamPos == nil || *r.StreamPos != out.StreamPos || r.Status != EventAccepted {
			t.Fatalf("%s: position %d (row %v), status %d; want after %d, accepted", s.typ, out.StreamPos, r.StreamPos, r.Status, prevPos)
		}
		if r.StateBefore != prevSnap || out.StateBefore != prevSnap {
			t.Fatalf("%s: state before %d (returned %d), want the previous snapshot %d", s.typ, r.StateBefore, out.StateBefore, prevSnap)
		}
		if parent, chain := k.snapshotShape(r.CurrentAfter); parent != prevSnap || chain != i+1 {
			t.Fatalf("%s: snapshot %d has parent %d and chain %d; want a delta over %d, chain %d", s.typ, r.CurrentAfter, parent, chain, prevSnap, i+1)
		}
		if !equalPtr(r.StateValue, s.value) {
			t.Fatalf("%s: state_value %v, want %v", s.typ, deref(r.StateValue), deref(s.value))
		}
		k.wantSnapshot(s.typ, r.CurrentAfter, k.state)
		k.wantCurrent(s.typ)
		prevSnap, prevPos = r.CurrentAfter, out.StreamPos
	}
	msgEv, msg := k.message("@alice:x", "hello")
	if r := k.row(msgEv.EventID); r.StateBefore != prevSnap || r.CurrentAfter != prevSnap || r.StateValue != nil || msg.StreamPos <= prevPos {
		t.Fatalf("message row %+v at %d; want state before and after %d", r, msg.StreamPos, prevSnap)
	}
	if m, err := db.Membership(k.ctx, k.nid, "@alice:x"); err != nil || m != "join" {
		t.Fatalf("current membership = %q, %v", m, err)
	}
	if m, err := db.Membership(k.ctx, k.nid, "@bob:x"); err != nil || m != "" {
		t.Fatalf("malformed membership = %q, %v; want none", m, err)
	}
}

// Every 33rd snapshot of a room is a full copy, so no delta chain grows
// past 32, and every snapshot along the way reads back the whole state.
func TestStoreEventFullCopyBoundsChains(t *testing.T) {
	db, _ := openTestDB(t)
	k := newRoomKit(t, db, "!chain:x")
	k.setState("m.room.create", "", "@alice:x", map[string]any{})
	for i := 1; i <= 2*maxChainLen+5; i++ {
		ev, _ := k.setState("m.room.member", "@u"+string(rune('a'+i%26))+":x", "@alice:x", map[string]any{"membership": "join", "n": i})
		snap := k.row(ev.EventID).CurrentAfter
		parent, chain := k.snapshotShape(snap)
		if want := i % (maxChainLen + 1); chain != want || (chain == 0) != (parent == 0) {
			t.Fatalf("state change %d: chain %d, parent %d; want chain %d", i, chain, parent, want)
		}
		k.wantSnapshot("after change", snap, k.state)
	}
	k.wantCurrent("after the changes")
}

// A timeline event that merges a fork carries the resolved state: it
// becomes the current state as a full snapshot, keys it drops leave
// current_state, changed ones take their event's membership, and the
// positions before the merge keep the state they had.
func TestStoreEventResolvedStateReplacesCurrent(t *testing.T) {
	db, _ := openTestDB(t)
	k := newRoomKit(t, db, "!fork:x")
	k.create("@alice:x", "public", "shared")
	k.member("@bob:x", "join")
	topicEv, _ := k.setState("m.room.topic", "", "@bob:x", map[string]any{"topic": "bob's"})
	before := clone(k.state)
	beforeSnap := k.row(topicEv.EventID).CurrentAfter

	// On another branch alice banned bob: accepted, in the timeline, but
	// the current state waits for resolution.
	banEv := k.event("m.room.member", ptr("@bob:x"), "@alice:x", map[string]any{"membership": "ban"})
	ban := k.store(EventWrite{Event: banEv, Placement: Timeline})
	if r := k.row(banEv.EventID); r.CurrentAfter != beforeSnap || r.StateBefore != beforeSnap {
		t.Fatalf("side-branch event row %+v; want the unchanged state %d", r, beforeSnap)
	}
	k.wantCurrent("side branch stored")

	// The merge: bob's ban wins and his topic goes.
	resolved := map[StateKey]string{}
	for key, nid := range before {
		if key.Type != "m.room.topic" {
			resolved[key] = idOf(k, nid)
		}
	}
	resolved[StateKey{"m.room.member", "@bob:x"}] = banEv.EventID
	mergeEv := k.event("m.room.message", nil, "@alice:x", map[string]any{"body": "merged"})
	merge := k.store(EventWrite{Event: mergeEv, Placement: Timeline, Resolved: resolved,
		Head: &RoomHead{Extremities: []string{mergeEv.EventID}, MaxDepth: mergeEv.Depth}})
	delete(k.state, StateKey{"m.room.topic", ""})
	k.state[StateKey{"m.room.member", "@bob:x"}] = ban.NID
	k.wantCurrent("after the merge")
	after := k.row(mergeEv.EventID).CurrentAfter
	if parent, chain := k.snapshotShape(after); parent != 0 || chain != 0 {
		t.Fatalf("resolved snapshot: parent %d, chain %d; want a full copy", parent, chain)
	}
	if m, _ := db.Membership(k.ctx, k.nid, "@bob:x"); m != "ban" {
		t.Fatalf("bob's membership after the merge = %q, want ban", m)
	}
	room, _ := db.Room(k.ctx, k.id)
	if !slices.Equal(room.Extremities, []string{mergeEv.EventID}) || room.MaxDepth != mergeEv.Depth {
		t.Fatalf("room head = %v at depth %d", room.Extremities, room.MaxDepth)
	}
	for pos, want := range map[int64]map[StateKey]int64{ban.StreamPos: before, merge.StreamPos: k.state} {
		got, err := db.StateAt(k.ctx, k.nid, pos)
		if err != nil || !maps.Equal(got, want) {
			t.Fatalf("StateAt(%d) = %v, %v; want %v", pos, got, err, want)
		}
	}

	// A resolved state may name the event being stored.
	nameEv := k.event("m.room.name", ptr(""), "@alice:x", map[string]any{"name": "N"})
	resolved[StateKey{"m.room.name", ""}] = nameEv.EventID
	name := k.store(EventWrite{Event: nameEv, Placement: Timeline, Resolved: resolved})
	k.state[StateKey{"m.room.name", ""}] = name.NID
	k.wantCurrent("resolved state naming its own event")

	// A resolved state naming an event never stored fails the whole write.
	bad := k.event("m.room.message", nil, "@alice:x", map[string]any{"body": "x"})
	if _, err := k.tryStore(EventWrite{Event: bad, Placement: Timeline, Resolved: map[StateKey]string{{"m.room.topic", ""}: "$nowhere"}}); err == nil {
		t.Fatal("a resolved state naming an unknown event was stored")
	}
	if _, err := db.EventByID(k.ctx, bad.EventID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the failed write left its event behind: %v", err)
	}
	k.wantCurrent("after the failed write")
}

// Outliers, rejected and soft-failed events stay out of the timeline and
// the current state; an outlier is promoted in place when its place in the
// DAG becomes known, once.
func TestStoreEventOutliersAndPromotion(t *testing.T) {
	db, _ := openTestDB(t)
	k := newRoomKit(t, db, "!outlier:x")
	k.create("@alice:x", "invite", "shared")
	cur := k.row(idOf(k, k.state[StateKey{"m.room.history_visibility", ""}])).CurrentAfter
	top := db.StreamPosition()

	joinEv := k.event("m.room.member", ptr("@bob:x"), "@bob:x", map[string]any{"membership": "join"})
	k.store(EventWrite{Event: joinEv, Placement: Outlier, StateBefore: cur})
	rejEv := k.event("m.room.message", nil, "@eve:x", map[string]any{"body": "sneaky"})
	k.store(EventWrite{Event: rejEv, Placement: Rejected})
	softEv := k.event("m.room.message", nil, "@bob:x", map[string]any{"body": "stale"})
	soft := k.store(EventWrite{Event: softEv, Placement: SoftFailed})
	for id, want := range map[string]eventRow{
		joinEv.EventID: {Status: EventOutlier},
		rejEv.EventID:  {Status: EventRejected},
		softEv.EventID: {Status: EventSoftFailed, StateBefore: cur},
	} {
		r := k.row(id)
		if r.StreamPos != nil || r.Status != want.Status || r.StateBefore != want.StateBefore {
			t.Fatalf("%s: row %+v, want status %d with state before %d and no position", id, r, want.Status, want.StateBefore)
		}
	}
	if soft.StreamPos != 0 || db.StreamPosition() != top {
		t.Fatalf("events outside the timeline moved the stream: %d -> %d", top, db.StreamPosition())
	}
	k.wantCurrent("outliers stored")

	joined := k.store(EventWrite{Event: joinEv, Placement: Timeline, Extends: true, Promote: true})
	k.state[StateKey{"m.room.member", "@bob:x"}] = joined.NID
	r := k.row(joinEv.EventID)
	if joined.NID != k.ids[joinEv.EventID] || r.Status != EventAccepted || r.StreamPos == nil || *r.StreamPos <= top || r.StateBefore != cur {
		t.Fatalf("promoted row %+v (NID %d); want the same row accepted after %d on state %d", r, joined.NID, top, cur)
	}
	k.wantCurrent("after the promotion")
	if m, _ := db.Membership(k.ctx, k.nid, "@bob:x"); m != "join" {
		t.Fatalf("promoted membership = %q", m)
	}
	if _, err := k.tryStore(EventWrite{Event: joinEv, Placement: Timeline, Promote: true}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("promoting an accepted event: %v, want ErrNotFound", err)
	}
	if _, err := k.tryStore(EventWrite{Event: joinEv, Placement: Timeline}); !errors.Is(err, ErrExists) {
		t.Fatalf("storing an event twice: %v, want ErrExists", err)
	}

	// An outlier found to be history is promoted to a backfill position.
	oldEv := k.event("m.room.message", nil, "@alice:x", map[string]any{"body": "old"})
	k.store(EventWrite{Event: oldEv, Placement: Outlier})
	old := k.store(EventWrite{Event: oldEv, Placement: Backfill, StateBefore: cur, Promote: true})
	if old.StreamPos >= 0 {
		t.Fatalf("outlier promoted to history at position %d, want a backfill position", old.StreamPos)
	}

	if _, err := k.tryStore(EventWrite{Event: NewEvent{RoomNID: 999, EventID: "$x", Type: "m.room.message", JSON: []byte(`{}`)}}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("storing into an unknown room: %v, want ErrNotFound", err)
	}
}

// Backfilled history counts down from -1 (across rooms and restarts),
// never moves the stream, the head or the current state, and is indexed
// for search. Its state before is given, as IDs or as a snapshot.
func TestStoreEventBackfill(t *testing.T) {
	db, path := openTestDB(t)
	k := newRoomKit(t, db, "!history:x")
	k.create("@alice:x", "public", "shared")
	_, last := k.message("@alice:x", "now")
	room, _ := db.Room(k.ctx, k.id)
	top := db.StreamPosition()

	ids := map[StateKey]string{}
	for key, nid := range k.state {
		ids[key] = idOf(k, nid)
	}
	var positions []int64
	var backfilled []string
	for i, body := range []string{"older", "oldest"} {
		e := k.event("m.room.message", nil, "@alice:x", map[string]any{"body": body})
		e.Depth = int64(-i)
		w := EventWrite{Event: e, Placement: Backfill, StateBeforeIDs: ids}
		if i == 1 {
			w.StateBeforeIDs, w.StateBefore = nil, k.row(backfilled[0]).StateBefore
		}
		out := k.store(w)
		positions = append(positions, out.StreamPos)
		backfilled = append(backfilled, e.EventID)
		k.wantSnapshot("backfilled state before", out.StateBefore, k.state)
	}
	if !slices.Equal(positions, []int64{-1, -2}) {
		t.Fatalf("backfill positions %v, want -1, -2", positions)
	}
	if db.StreamPosition() != top {
		t.Fatalf("backfill moved the stream from %d to %d", top, db.StreamPosition())
	}
	if after, _ := db.Room(k.ctx, k.id); after.Snapshot != room.Snapshot || !slices.Equal(after.Extremities, room.Extremities) {
		t.Fatalf("backfill changed the room head: %+v -> %+v", room, after)
	}
	if pos, _ := db.LatestStreamPos(k.ctx, k.nid); pos != last.StreamPos {
		t.Fatalf("latest position %d, want the last live event's %d", pos, last.StreamPos)
	}
	k.wantCurrent("after backfill")
	var indexed int
	db.q().QueryRowContext(k.ctx, `SELECT COUNT(*) FROM event_search_docs WHERE stream_pos < 0`).Scan(&indexed)
	if indexed != 2 {
		t.Fatalf("%d backfilled events indexed for search, want 2", indexed)
	}

	// The next room's history continues the count, after a restart too.
	db.Close()
	db, err := path.open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	k2 := newRoomKit(t, db, "!history2:x")
	k2.create("@alice:x", "public", "shared")
	e := k2.event("m.room.message", nil, "@alice:x", map[string]any{"body": "x"})
	if out := k2.store(EventWrite{Event: e, Placement: Backfill}); out.StreamPos != -3 {
		t.Fatalf("backfill after a restart at %d, want -3", out.StreamPos)
	}
}

// Each stored event says whom it concerns: the room's listeners, and for
// a membership the user it is about; history and outliers wake nobody.
func TestStoreEventWakeDeclarations(t *testing.T) {
	db, _ := openTestDB(t)
	var mu sync.Mutex
	var got []WakeTargets
	db.OnWake(func(w WakeTargets) {
		mu.Lock()
		got = append(got, w)
		mu.Unlock()
	})
	k := newRoomKit(t, db, "!wake:x")
	k.create("@alice:x", "public", "shared")
	take := func() []WakeTargets {
		mu.Lock()
		defer mu.Unlock()
		out := got
		got = nil
		return out
	}
	take()
	k.message("@alice:x", "hi")
	if w := take(); len(w) != 1 || !slices.Equal(w[0].Rooms, []int64{k.nid}) || len(w[0].Users) != 0 || w[0].All {
		t.Fatalf("a message woke %+v, want the room", w)
	}
	k.store(EventWrite{Event: k.event("m.room.member", ptr("@bob:x"), "@alice:x", map[string]any{"membership": "invite"}),
		Placement: Timeline, Extends: true})
	if w := take(); len(w) != 1 || !slices.Equal(w[0].Rooms, []int64{k.nid}) || !slices.Equal(w[0].Users, []string{"@bob:x"}) {
		t.Fatalf("an invite woke %+v, want the room and the invitee", w)
	}
	k.store(EventWrite{Event: k.event("m.room.message", nil, "@alice:x", map[string]any{}), Placement: Backfill})
	k.store(EventWrite{Event: k.event("m.room.message", nil, "@alice:x", map[string]any{}), Placement: Outlier})
	if w := take(); len(w) != 0 {
		t.Fatalf("history and outliers woke %+v", w)
	}
}

// What the write carries along: the client transaction, push actions, a
// redaction's target, and the voiding of others' delayed state events.
func TestStoreEventCarriesItsWrites(t *testing.T) {
	db, _ := openTestDB(t)
	k := newRoomKit(t, db, "!along:x")
	k.create("@alice:x", "public", "shared")
	k.member("@bob:x", "join")
	mustWrite(t, db, func(tx *Tx) error {
		for _, d := range []DelayedEvent{
			{DelayID: "bob", UserID: "@bob:x", RoomID: k.id, Type: "m.room.topic", StateKey: ptr(""), Content: []byte(`{}`)},
			{DelayID: "alice", UserID: "@alice:x", RoomID: k.id, Type: "m.room.topic", StateKey: ptr(""), Content: []byte(`{}`)},
			{DelayID: "name", UserID: "@bob:x", RoomID: k.id, Type: "m.room.name", StateKey: ptr(""), Content: []byte(`{}`)},
		} {
			if err := tx.InsertDelayedEvent(k.ctx, d, 10); err != nil {
				return err
			}
		}
		return nil
	})
	e := k.event("m.room.topic", ptr(""), "@alice:x", map[string]any{"topic": "t"})
	out := k.store(EventWrite{Event: e, Placement: Timeline, Extends: true,
		Txn:  &TxnRecord{UserID: "@alice:x", DeviceID: "D", Scope: "send", TxnID: "t1"},
		Push: []PushAction{{UserID: "@bob:x", ThreadID: "main", Actions: []byte(`["notify"]`)}}})
	if id, err := db.TxnEventID(k.ctx, "@alice:x", "D", "send", "t1"); err != nil || id != e.EventID {
		t.Fatalf("transaction maps to %q, %v", id, err)
	}
	if counts, _, err := db.UnreadCounts(k.ctx, k.nid, "@bob:x", false, out.StreamPos); err != nil || counts.Notifications != 1 {
		t.Fatalf("bob's unread counts %+v, %v; want one notification", counts, err)
	}
	var left []string
	for _, u := range []string{"@alice:x", "@bob:x"} {
		ds, _ := db.DelayedEventsOf(k.ctx, u)
		for _, d := range ds {
			left = append(left, d.DelayID)
		}
	}
	slices.Sort(left)
	if !slices.Equal(left, []string{"alice", "name"}) {
		t.Fatalf("delayed events left %v; want alice's own and the other key's", left)
	}

	red := k.event("m.room.redaction", nil, "@alice:x", map[string]any{"redacts": e.EventID})
	red.Redacts = e.EventID
	k.store(EventWrite{Event: red, Placement: Timeline})
	if r := k.row(red.EventID); r.Redacts == nil || *r.Redacts != e.EventID {
		t.Fatalf("redaction row names %v as its target", r.Redacts)
	}
	rs, err := db.RedactionsOf(k.ctx, e.EventID)
	if err != nil || len(rs) != 1 || rs[0].EventID != red.EventID {
		t.Fatalf("redactions of the topic: %v, %v", rs, err)
	}
}

func ptr[T any](v T) *T { return &v }

func deref(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}

func equalPtr(a, b *string) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

// idOf is the event ID the kit stored under nid.
func idOf(k *roomKit, nid int64) string {
	k.t.Helper()
	for id, n := range k.ids {
		if n == nid {
			return id
		}
	}
	k.t.Fatalf("no event %d", nid)
	return ""
}

// A state before given as a snapshot with changed entries is stored as a
// delta over that snapshot (one chain step more), or as a full copy once
// the chain is at its cap; each reads back the whole state.
func TestStoreEventStateBeforeDelta(t *testing.T) {
	db, _ := openTestDB(t)
	k := newRoomKit(t, db, "!delta:x")
	k.create("@alice:x", "public", "shared")
	baseMsg, _ := k.message("@alice:x", "base")
	base := k.row(baseMsg.EventID).StateBefore
	want := maps.Clone(k.state)
	snap := base
	_, parentChain := k.snapshotShape(base)
	for i := 1; i <= maxChainLen+2; i++ {
		topic := k.event("m.room.topic", ptr(""), "@alice:x", map[string]any{"topic": i})
		tout := k.store(EventWrite{Event: topic, Placement: Backfill, StateBefore: snap})
		e := k.event("m.room.message", nil, "@alice:x", map[string]any{"body": i})
		out := k.store(EventWrite{Event: e, Placement: Backfill, StateBefore: snap,
			StateBeforeDelta: map[StateKey]string{{Type: "m.room.topic"}: topic.EventID}})
		want[StateKey{Type: "m.room.topic"}] = tout.NID
		k.wantSnapshot(fmt.Sprint("state before message ", i), out.StateBefore, want)
		parent, chain := k.snapshotShape(out.StateBefore)
		switch {
		case parentChain >= maxChainLen && (parent != 0 || chain != 0):
			t.Fatalf("message %d: snapshot over %d (chain %d) after a chain of %d; want a full copy", i, parent, chain, parentChain)
		case parentChain < maxChainLen && (parent != snap || chain != parentChain+1):
			t.Fatalf("message %d: snapshot over %d (chain %d); want a delta over %d (chain %d)", i, parent, chain, snap, parentChain+1)
		}
		snap, parentChain = out.StateBefore, chain
	}
	k.wantCurrent("after the backfilled chain")
}

// HistoryGaps lists the prev events not held of the timeline events in a
// range of the topological order (the newest `scan` of them), nearest its
// upper end first; held, rejected and soft-failed prev events are no gap,
// outliers are.
func TestHistoryGapsInRanges(t *testing.T) {
	db, _ := openTestDB(t)
	k := newRoomKit(t, db, "!gaps:x")
	k.create("@alice:x", "public", "shared")
	withPrevs := func(body string, prevs ...string) NewEvent {
		e := k.event("m.room.message", nil, "@alice:x", map[string]any{"body": body})
		e.PrevEvents = prevs
		k.store(EventWrite{Event: e, Placement: Timeline})
		return e
	}
	outlier := k.event("m.room.member", ptr("@bob:x"), "@bob:x", map[string]any{"membership": "join"})
	k.store(EventWrite{Event: outlier, Placement: Outlier})
	rejected := k.event("m.room.message", nil, "@eve:x", map[string]any{"body": "no"})
	k.store(EventWrite{Event: rejected, Placement: Rejected})
	low := withPrevs("low", "$missing-low", rejected.EventID)
	mid := withPrevs("mid", low.EventID, outlier.EventID)
	high := withPrevs("high", "$missing-high", mid.EventID)
	pos := func(e NewEvent) TopoPos { return TopoPos{Depth: e.Depth, NID: k.ids[e.EventID]} }
	for _, c := range []struct {
		what        string
		after, upTo TopoPos
		limit       int
		want        []string
	}{
		{"everything", TopoPos{}, TopoEnd, 10, []string{"$missing-high", outlier.EventID, "$missing-low"}},
		{"limited", TopoPos{}, TopoEnd, 2, []string{"$missing-high", outlier.EventID}},
		{"the middle", TopoBefore(&Event{Depth: mid.Depth, NID: k.ids[mid.EventID]}), pos(mid), 10, []string{outlier.EventID}},
		{"below high", TopoPos{}, TopoBefore(&Event{Depth: high.Depth, NID: k.ids[high.EventID]}), 10, []string{outlier.EventID, "$missing-low"}},
	} {
		got, err := db.HistoryGaps(k.ctx, k.nid, c.after, c.upTo, c.limit)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, %v; want %v", c.what, got, err, c.want)
		}
	}
}
