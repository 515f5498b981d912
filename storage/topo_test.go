package storage

import (
	"slices"
	"testing"
)

// topoIDs pages through a room in topological order and returns the IDs.
func topoIDs(t *testing.T, k *roomKit, from, to TopoPos, backwards bool, limit int) []string {
	t.Helper()
	evs, err := k.db.TopoTimeline(k.ctx, k.nid, from, to, backwards, limit)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, e.EventID)
	}
	return out
}

// A late-joined room: live events from depth 10, history backfilled below
// them at negative positions, and a late event that arrived after newer
// ones. Pagination follows (depth, arrival) whatever the positions.
func TestTopoTimelineOrder(t *testing.T) {
	db, _ := openTestDB(t)
	k := newRoomKit(t, db, "!topo:x")
	k.depth = 9
	var live []NewEvent
	for range 4 { // depths 10..13
		e := k.event("m.room.message", nil, "@alice:x", map[string]any{"body": "live"})
		k.store(EventWrite{Event: e, Placement: Timeline})
		live = append(live, e)
	}
	// A late event at depth 11 (a fork), arriving after depth 13.
	late := k.event("m.room.message", nil, "@bob:x", map[string]any{"body": "late"})
	late.Depth = 11
	k.store(EventWrite{Event: late, Placement: Timeline})
	// History, fetched newest first: depths 9, 8, 7 at -1, -2, -3.
	var history []NewEvent
	for d := int64(9); d >= 7; d-- {
		e := k.event("m.room.message", nil, "@alice:x", map[string]any{"body": "old"})
		e.Depth = d
		if out := k.store(EventWrite{Event: e, Placement: Backfill}); out.StreamPos != d-10 {
			t.Fatalf("backfill at depth %d got position %d", d, out.StreamPos)
		}
		history = append(history, e)
	}
	// Outside the timeline: never paged.
	k.store(EventWrite{Event: k.event("m.room.message", nil, "@eve:x", map[string]any{}), Placement: Outlier})
	k.store(EventWrite{Event: k.event("m.room.message", nil, "@eve:x", map[string]any{}), Placement: Rejected})

	want := []string{history[2].EventID, history[1].EventID, history[0].EventID,
		live[0].EventID, live[1].EventID, late.EventID, live[2].EventID, live[3].EventID}
	if got := topoIDs(t, k, TopoPos{}, TopoEnd, false, 100); !slices.Equal(got, want) {
		t.Fatalf("forwards:\n got %v\nwant %v", got, want)
	}
	reversed := slices.Clone(want)
	slices.Reverse(reversed)
	if got := topoIDs(t, k, TopoEnd, TopoPos{}, true, 100); !slices.Equal(got, reversed) {
		t.Fatalf("backwards:\n got %v\nwant %v", got, reversed)
	}

	// Page by three in both directions, continuing from the last event.
	for _, backwards := range []bool{false, true} {
		var paged []string
		from, to := TopoPos{}, TopoEnd
		if backwards {
			from, to = TopoEnd, TopoPos{}
		}
		for {
			evs, err := db.TopoTimeline(k.ctx, k.nid, from, to, backwards, 3)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) == 0 {
				break
			}
			for _, e := range evs {
				paged = append(paged, e.EventID)
			}
			last := evs[len(evs)-1]
			from = TopoOf(&last)
			if backwards {
				from = TopoBefore(&last)
			}
		}
		w := want
		if backwards {
			w = reversed
		}
		if !slices.Equal(paged, w) {
			t.Fatalf("paged (backwards %v):\n got %v\nwant %v", backwards, paged, w)
		}
	}

	// A window between two events: (after live[0], up to late].
	l0, _ := db.EventByID(k.ctx, live[0].EventID)
	lt, _ := db.EventByID(k.ctx, late.EventID)
	if got := topoIDs(t, k, TopoOf(l0), TopoOf(lt), false, 10); !slices.Equal(got, []string{live[1].EventID, late.EventID}) {
		t.Fatalf("window = %v", got)
	}
	if !TopoOf(l0).Less(TopoOf(lt)) || TopoOf(lt).Less(TopoOf(l0)) || !TopoBefore(lt).Less(TopoOf(lt)) {
		t.Fatal("TopoPos ordering is wrong")
	}
}

// A stream position (from a sync token) is placed after the room's last
// live event at or before it; backfilled positions never count.
func TestTopoAtStream(t *testing.T) {
	db, _ := openTestDB(t)
	k := newRoomKit(t, db, "!at:x")
	other := newRoomKit(t, db, "!other:x")
	if p, err := db.TopoAtStream(k.ctx, k.nid, db.StreamPosition()); err != nil || p != (TopoPos{}) {
		t.Fatalf("empty room placed at %+v, %v", p, err)
	}
	firstEv, first := k.message("@alice:x", "one")
	_, between := other.message("@bob:x", "elsewhere")
	secondEv, second := k.message("@alice:x", "two")
	old := k.event("m.room.message", nil, "@alice:x", map[string]any{})
	old.Depth = 0
	k.store(EventWrite{Event: old, Placement: Backfill})
	e1, _ := db.EventByID(k.ctx, firstEv.EventID)
	e2, _ := db.EventByID(k.ctx, secondEv.EventID)
	for pos, want := range map[int64]TopoPos{
		0:                       {},
		-1:                      {},
		first.StreamPos:         TopoOf(e1),
		between.StreamPos:       TopoOf(e1),
		second.StreamPos:        TopoOf(e2),
		db.StreamPosition() + 5: TopoOf(e2),
	} {
		if got, err := db.TopoAtStream(k.ctx, k.nid, pos); err != nil || got != want {
			t.Errorf("TopoAtStream(%d) = %+v, %v; want %+v", pos, got, err, want)
		}
	}
}

// HistoryGaps finds the prev events missing behind a range of the
// timeline, nearest the top first: at the room's start and in its middle
// (a gap left by downtime); outliers count as missing, rejected events
// as held.
func TestHistoryGaps(t *testing.T) {
	db, _ := openTestDB(t)
	k := newRoomKit(t, db, "!gaps:x")
	var stored []string
	add := func(prevs ...string) NewEvent {
		e := k.event("m.room.message", nil, "@alice:x", map[string]any{"body": "m"})
		e.PrevEvents = prevs
		k.store(EventWrite{Event: e, Placement: Timeline})
		stored = append(stored, e.EventID)
		return e
	}
	first := add("$before-the-join") // a late join's first event
	add(first.EventID)
	// Three events are missing here ($gap-1 is the newest of them).
	after := add("$gap-1")
	outlier := k.event("m.room.member", ptr("@bob:x"), "@bob:x", map[string]any{"membership": "join"})
	k.store(EventWrite{Event: outlier, Placement: Outlier})
	rejected := k.event("m.room.message", nil, "@eve:x", map[string]any{})
	k.store(EventWrite{Event: rejected, Placement: Rejected})
	add(after.EventID, outlier.EventID, rejected.EventID)

	pos := func(i int) TopoPos {
		e, err := db.EventByID(k.ctx, stored[i])
		if err != nil {
			t.Fatal(err)
		}
		return TopoOf(e)
	}
	for _, c := range []struct {
		name   string
		lo, hi TopoPos
		scan   int
		want   []string
	}{
		{"everything", TopoPos{}, TopoEnd, 100, []string{outlier.EventID, "$gap-1", "$before-the-join"}},
		{"the newest two events", TopoPos{}, TopoEnd, 2, []string{outlier.EventID, "$gap-1"}},
		{"below the newest", TopoPos{}, pos(2), 100, []string{"$gap-1", "$before-the-join"}},
		{"the start's range", TopoPos{}, pos(1), 100, []string{"$before-the-join"}},
		{"a range without gaps", pos(0), pos(1), 100, nil},
	} {
		got, err := db.HistoryGaps(k.ctx, k.nid, c.lo, c.hi, c.scan)
		if err != nil || !slices.Equal(got, c.want) {
			t.Fatalf("%s: gaps %v, %v; want %v", c.name, got, err, c.want)
		}
	}
}
