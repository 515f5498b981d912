package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
)

// relFixture inserts events into rooms for the relation tests.
type relFixture struct {
	t     *testing.T
	db    *DB
	rooms map[string]int64
	pos   map[string]int64
	ts    int64
}

func newRelFixture(t *testing.T) *relFixture {
	db, _ := openTestDB(t)
	return &relFixture{t: t, db: db, rooms: map[string]int64{}, pos: map[string]int64{}}
}

// add stores a timeline message event; relType "" with relTo set stores a
// relation without rel_type.
func (f *relFixture) add(room, eventID, typ, sender, relTo, relType string, content map[string]any) int64 {
	f.t.Helper()
	if content == nil {
		content = map[string]any{}
	}
	if relTo != "" {
		rel := map[string]any{"event_id": relTo}
		if relType != "" {
			rel["rel_type"] = relType
		}
		content["m.relates_to"] = rel
	}
	f.ts++
	raw, _ := json.Marshal(map[string]any{"type": typ, "sender": sender, "content": content, "origin_server_ts": f.ts})
	ctx := context.Background()
	mustWrite(f.t, f.db, func(tx *Tx) error {
		nid, ok := f.rooms[room]
		if !ok {
			var err error
			if nid, err = tx.InsertRoom(ctx, room, "10", 0); err != nil {
				return err
			}
			f.rooms[room] = nid
		}
		_, pos, err := tx.InsertEvent(ctx, NewEvent{RoomNID: nid, EventID: eventID, Type: typ, Sender: sender, OriginTS: f.ts, Depth: f.ts,
			RelatesTo: relTo, RelType: relType, JSON: raw})
		f.pos[eventID] = pos
		return err
	})
	return f.pos[eventID]
}

func (f *relFixture) redact(eventID string) {
	f.t.Helper()
	mustWrite(f.t, f.db, func(tx *Tx) error {
		e, err := tx.EventByID(context.Background(), eventID)
		if err != nil {
			return err
		}
		return tx.RedactEvent(context.Background(), e.NID, "$redaction", []byte(`{"type":"m.room.message","content":{}}`))
	})
}

// relations pages between stream positions (0: the open end), placed in
// the room's topological order as the client API places stream tokens.
func (f *relFixture) relations(rf RelationFilter, from, to int64, backwards bool, limit int) []string {
	f.t.Helper()
	ctx := context.Background()
	place := func(pos int64, open TopoPos) TopoPos {
		if pos == 0 {
			return open
		}
		p, err := f.db.TopoAtStream(ctx, rf.RoomNID, pos)
		if err != nil {
			f.t.Fatal(err)
		}
		return p
	}
	toOpen := TopoEnd
	if backwards {
		toOpen = TopoPos{}
	}
	evs, err := f.db.Relations(ctx, rf, place(from, TopoPos{}), place(to, toOpen), backwards, limit)
	if err != nil {
		f.t.Fatalf("Relations(%+v): %v", rf, err)
	}
	ids := []string{}
	for _, e := range evs {
		ids = append(ids, e.EventID)
	}
	return ids
}

func wantIDs(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

func TestRelationsDirectFilteredAndPaged(t *testing.T) {
	f := newRelFixture(t)
	f.add("!a:x", "$root", "m.room.message", "@u:x", "", "", nil)
	f.add("!a:x", "$r1", "m.reaction", "@v:x", "$root", "m.annotation", nil)
	f.add("!a:x", "$t1", "m.room.message", "@v:x", "$root", "m.thread", nil)
	f.add("!a:x", "$e1", "m.room.message", "@u:x", "$root", "m.replace", nil)
	f.add("!a:x", "$noreltype", "m.room.message", "@v:x", "$root", "", nil)
	f.add("!a:x", "$other", "m.room.message", "@v:x", "", "", nil)
	f.add("!b:x", "$otherroom", "m.reaction", "@v:x", "$root", "m.annotation", nil)
	f.add("!a:x", "$t2", "m.room.encrypted", "@u:x", "$root", "m.thread", nil)
	f.add("!a:x", "$gone", "m.reaction", "@v:x", "$root", "m.annotation", nil)
	f.redact("$gone")
	room := f.rooms["!a:x"]
	now := f.db.StreamPosition()
	all := RelationFilter{RoomNID: room, EventID: "$root"}

	wantIDs(t, "all backwards", f.relations(all, now, 0, true, 10), "$t2", "$e1", "$t1", "$r1")
	wantIDs(t, "all forwards", f.relations(all, 0, 0, false, 10), "$r1", "$t1", "$e1", "$t2")
	wantIDs(t, "m.thread", f.relations(RelationFilter{RoomNID: room, EventID: "$root", RelType: "m.thread"}, now, 0, true, 10), "$t2", "$t1")
	wantIDs(t, "m.thread + m.room.message", f.relations(RelationFilter{RoomNID: room, EventID: "$root", RelType: "m.thread",
		EventType: "m.room.message"}, now, 0, true, 10), "$t1")
	wantIDs(t, "unknown rel type", f.relations(RelationFilter{RoomNID: room, EventID: "$root", RelType: "m.nothing"}, now, 0, true, 10))
	wantIDs(t, "limit", f.relations(all, now, 0, true, 2), "$t2", "$e1")
	// Bounds: backwards (to, from], forwards (from, to].
	wantIDs(t, "backwards from e1", f.relations(all, f.pos["$e1"]-1, 0, true, 10), "$t1", "$r1")
	wantIDs(t, "backwards to t1", f.relations(all, now, f.pos["$t1"], true, 10), "$t2", "$e1")
	wantIDs(t, "forwards from t1", f.relations(all, f.pos["$t1"], 0, false, 10), "$e1", "$t2")
	wantIDs(t, "forwards to e1", f.relations(all, 0, f.pos["$e1"], false, 10), "$r1", "$t1", "$e1")
	wantIDs(t, "wrong room", f.relations(RelationFilter{RoomNID: f.rooms["!b:x"], EventID: "$root"}, now, 0, true, 10), "$otherroom")
}

func TestRelationsRecursion(t *testing.T) {
	f := newRelFixture(t)
	f.add("!a:x", "$root", "m.room.message", "@u:x", "", "", nil)
	f.add("!a:x", "$t1", "m.room.message", "@v:x", "$root", "m.thread", nil)
	f.add("!a:x", "$t1edit", "m.room.message", "@v:x", "$t1", "m.replace", nil)
	f.add("!a:x", "$t1react", "m.reaction", "@u:x", "$t1", "m.annotation", nil)
	f.add("!a:x", "$d3", "m.room.message", "@u:x", "$t1edit", "m.reference", nil)
	f.add("!a:x", "$d4", "m.room.message", "@u:x", "$d3", "m.reference", nil)
	f.add("!a:x", "$brokenmid", "m.room.message", "@u:x", "$root", "m.reference", nil)
	f.add("!a:x", "$belowbroken", "m.reaction", "@u:x", "$brokenmid", "m.annotation", nil)
	f.redact("$brokenmid")
	room := f.rooms["!a:x"]
	now := f.db.StreamPosition()

	wantIDs(t, "depth 1", f.relations(RelationFilter{RoomNID: room, EventID: "$root", Depth: 1}, now, 0, true, 20), "$t1")
	wantIDs(t, "depth 3", f.relations(RelationFilter{RoomNID: room, EventID: "$root", Depth: 3}, now, 0, true, 20),
		"$d3", "$t1react", "$t1edit", "$t1")
	wantIDs(t, "depth 3 forwards", f.relations(RelationFilter{RoomNID: room, EventID: "$root", Depth: 3}, 0, 0, false, 2),
		"$t1", "$t1edit")
	// The filter applies to intermediate events: the reaction to the thread
	// reply is reached through an m.thread event, so m.annotation alone finds nothing.
	wantIDs(t, "depth 3 annotations", f.relations(RelationFilter{RoomNID: room, EventID: "$root", RelType: "m.annotation", Depth: 3},
		now, 0, true, 20))
	wantIDs(t, "depth 3 m.reaction type", f.relations(RelationFilter{RoomNID: room, EventID: "$t1", EventType: "m.reaction", Depth: 3},
		now, 0, true, 20), "$t1react")
}

func TestThreadRoots(t *testing.T) {
	f := newRelFixture(t)
	ctx := context.Background()
	f.add("!a:x", "$rootA", "m.room.message", "@u:x", "", "", nil)
	f.add("!a:x", "$rootB", "m.room.message", "@v:x", "", "", nil)
	f.add("!a:x", "$rootC", "m.room.message", "@w:x", "", "", nil)
	f.add("!a:x", "$a1", "m.room.message", "@v:x", "$rootA", "m.thread", nil)
	f.add("!a:x", "$b1", "m.room.message", "@w:x", "$rootB", "m.thread", nil)
	f.add("!a:x", "$c1", "m.room.message", "@w:x", "$rootC", "m.thread", nil)
	f.add("!a:x", "$a2", "m.room.message", "@v:x", "$rootA", "m.thread", nil)
	f.add("!a:x", "$c2gone", "m.room.message", "@x:x", "$rootC", "m.thread", nil)
	f.add("!a:x", "$notthread", "m.reaction", "@u:x", "$rootB", "m.annotation", nil)
	f.add("!a:x", "$unknownroot", "m.room.message", "@u:x", "$missing", "m.thread", nil)
	f.add("!b:x", "$elsewhere", "m.room.message", "@u:x", "$rootB", "m.thread", nil)
	f.redact("$c2gone")
	room := f.rooms["!a:x"]
	at := func(eventID string) TopoPos {
		t.Helper()
		p, err := f.db.TopoAtStream(ctx, room, f.pos[eventID])
		if err != nil {
			t.Fatalf("TopoAtStream: %v", err)
		}
		return p
	}
	before := func(eventID string) TopoPos { p := at(eventID); p.NID--; return p }
	roots := func(before TopoPos, participant string, limit int) []string {
		t.Helper()
		rs, err := f.db.ThreadRoots(ctx, room, before, participant, limit)
		if err != nil {
			t.Fatalf("ThreadRoots: %v", err)
		}
		ids := []string{}
		for _, r := range rs {
			ids = append(ids, r.EventID)
			if !TopoOf(&r.Event).Less(r.Latest) || before.Less(r.Latest) {
				t.Fatalf("root %s latest %v (root at %v, before %v)", r.EventID, r.Latest, TopoOf(&r.Event), before)
			}
		}
		return ids
	}
	wantIDs(t, "all", roots(TopoEnd, "", 10), "$rootA", "$rootC", "$rootB")
	wantIDs(t, "limit", roots(TopoEnd, "", 1), "$rootA")
	// Roots are paged by their latest reply: rootA's is a2, so it belongs before a2.
	wantIDs(t, "before a2", roots(before("$a2"), "", 10), "$rootC", "$rootB")
	wantIDs(t, "before c1", roots(before("$c1"), "", 10), "$rootB")
	wantIDs(t, "participant u (root sender)", roots(TopoEnd, "@u:x", 10), "$rootA")
	wantIDs(t, "participant w (replier and root sender)", roots(TopoEnd, "@w:x", 10), "$rootC", "$rootB")
	wantIDs(t, "participant x (redacted reply only)", roots(TopoEnd, "@x:x", 10))

	// A reply that arrives last but sits early in the DAG (backfilled, or
	// late from another server) does not make its thread the most active.
	mustWrite(t, f.db, func(tx *Tx) error {
		raw := []byte(`{"type":"m.room.message","content":{"m.relates_to":{"rel_type":"m.thread","event_id":"$rootB"}}}`)
		_, _, err := tx.InsertEvent(ctx, NewEvent{RoomNID: room, EventID: "$b0late", Type: "m.room.message", Sender: "@v:x",
			RelatesTo: "$rootB", RelType: "m.thread", JSON: raw, Depth: at("$b1").Depth})
		return err
	})
	wantIDs(t, "late early reply", roots(TopoEnd, "", 10), "$rootA", "$rootC", "$rootB")
	// One that sits later in the DAG does.
	mustWrite(t, f.db, func(tx *Tx) error {
		raw := []byte(`{"type":"m.room.message","content":{"m.relates_to":{"rel_type":"m.thread","event_id":"$rootB"}}}`)
		_, _, err := tx.InsertEvent(ctx, NewEvent{RoomNID: room, EventID: "$b9", Type: "m.room.message", Sender: "@v:x",
			RelatesTo: "$rootB", RelType: "m.thread", JSON: raw, Depth: 100})
		return err
	})
	wantIDs(t, "deeper reply", roots(TopoEnd, "", 10), "$rootB", "$rootA", "$rootC")
}

func TestAggregations(t *testing.T) {
	f := newRelFixture(t)
	ctx := context.Background()
	f.add("!a:x", "$root", "m.room.message", "@u:x", "", "", nil)
	f.add("!a:x", "$t1", "m.room.message", "@v:x", "$root", "m.thread", nil)
	f.add("!a:x", "$t2", "m.room.message", "@w:x", "$root", "m.thread", nil)
	f.add("!a:x", "$t3", "m.room.message", "@v:x", "$root", "m.thread", nil)
	f.add("!a:x", "$t4gone", "m.room.message", "@v:x", "$root", "m.thread", nil)
	f.add("!a:x", "$edit", "m.room.message", "@u:x", "$root", "m.replace", map[string]any{"m.new_content": map[string]any{"body": "x"}})
	f.add("!a:x", "$badedit", "m.room.message", "@u:x", "$root", "m.replace", map[string]any{"m.new_content": "not an object"})
	f.add("!a:x", "$ref", "m.room.message", "@w:x", "$root", "m.reference", nil)
	f.add("!a:x", "$react", "m.reaction", "@w:x", "$root", "m.annotation", nil)
	f.add("!a:x", "$plain", "m.room.message", "@u:x", "", "", nil)
	f.redact("$t4gone")

	rows, err := f.db.Aggregations(ctx, []string{"$root", "$plain", "$t1"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]AggregationRow{}
	for _, r := range rows {
		if r.Parent != "$root" || r.RoomNID != f.rooms["!a:x"] {
			t.Fatalf("row for parent %s room %d", r.Parent, r.RoomNID)
		}
		got[r.RelType+"|"+r.Sender+"|"+r.EventID] = r
	}
	if len(got) != 5 {
		t.Fatalf("rows = %+v, want 5", rows)
	}
	v := got["m.thread|@v:x|$t3"]
	if v.Count != 2 || v.StreamPos != f.pos["$t3"] || v.Type != "m.room.message" || v.NID == 0 {
		t.Fatalf("thread row of @v = %+v", v)
	}
	if w := got["m.thread|@w:x|$t2"]; w.Count != 1 || w.StreamPos != f.pos["$t2"] {
		t.Fatalf("thread row of @w = %+v", w)
	}
	if e := got["m.replace|@u:x|$edit"]; !e.HasNewContent || e.Count != 1 || e.OriginTS == 0 {
		t.Fatalf("edit row = %+v", e)
	}
	if e := got["m.replace|@u:x|$badedit"]; e.HasNewContent || e.EventID == "" {
		t.Fatalf("bad edit row = %+v", e)
	}
	if r := got["m.reference|@w:x|$ref"]; r.EventID != "$ref" {
		t.Fatalf("reference row = %+v", r)
	}

	// More parents than one statement binds.
	var parents []string
	for i := range 1200 {
		parents = append(parents, fmt.Sprintf("$p%d", i))
	}
	parents = append(parents, "$root")
	rows, err = f.db.Aggregations(ctx, parents)
	if err != nil || len(rows) != 5 {
		t.Fatalf("batched aggregations = %d rows, %v", len(rows), err)
	}
}
