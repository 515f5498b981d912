package storage

import (
	"maps"
	"testing"
)

// A room's bump stamp is its newest bump-type event at or before the
// position asked about; state changes and other types do not bump.
func TestBumpStamps(t *testing.T) {
	db, _ := openTestDB(t)
	a := newRoomKit(t, db, "!a:x")
	b := newRoomKit(t, db, "!b:x")
	quiet := newRoomKit(t, db, "!quiet:x")
	_, create := a.setState("m.room.create", "", "@a:x", map[string]any{})
	_, msgA := a.message("@a:x", "one")
	_, msgB := b.message("@b:x", "two")
	upTo := db.StreamPosition()
	a.setState("m.room.topic", "", "@a:x", map[string]any{"topic": "no bump"})
	a.store(EventWrite{Event: a.event("m.reaction", nil, "@a:x", map[string]any{}), Placement: Timeline})
	quiet.setState("m.room.name", "", "@a:x", map[string]any{"name": "state only"})
	_, later := a.message("@a:x", "later")

	got, err := db.BumpStamps(a.ctx, []int64{a.nid, b.nid, quiet.nid}, db.StreamPosition())
	if want := map[int64]int64{a.nid: later.StreamPos, b.nid: msgB.StreamPos}; err != nil || !maps.Equal(got, want) {
		t.Fatalf("BumpStamps now = %v, %v; want %v", got, err, want)
	}
	got, err = db.BumpStamps(a.ctx, []int64{a.nid, b.nid}, upTo)
	if want := map[int64]int64{a.nid: msgA.StreamPos, b.nid: msgB.StreamPos}; err != nil || !maps.Equal(got, want) {
		t.Fatalf("BumpStamps at %d = %v, %v; want %v", upTo, got, err, want)
	}
	got, _ = db.BumpStamps(a.ctx, []int64{a.nid}, create.StreamPos)
	if want := map[int64]int64{a.nid: create.StreamPos}; !maps.Equal(got, want) {
		t.Fatalf("BumpStamps at the create event = %v; want the create event", got)
	}
	if got, err := db.BumpStamps(a.ctx, nil, upTo); err != nil || len(got) != 0 {
		t.Fatalf("BumpStamps of no rooms = %v, %v", got, err)
	}
}

// Room flags for sliding-sync filters: encryption and the create event's
// room type (only a string counts).
func TestRoomFlags(t *testing.T) {
	db, _ := openTestDB(t)
	space := newRoomKit(t, db, "!space:x")
	space.setState("m.room.create", "", "@a:x", map[string]any{"type": "m.space"})
	enc := newRoomKit(t, db, "!enc:x")
	enc.setState("m.room.create", "", "@a:x", map[string]any{"type": 5})
	enc.setState("m.room.encryption", "", "@a:x", map[string]any{"algorithm": "m.megolm.v1.aes-sha2"})
	plain := newRoomKit(t, db, "!plain:x")
	plain.setState("m.room.create", "", "@a:x", map[string]any{})
	got, err := db.RoomFlagsOf(space.ctx, []int64{space.nid, enc.nid, plain.nid, 999})
	want := map[int64]RoomFlags{space.nid: {Type: "m.space"}, enc.nid: {Encrypted: true}, plain.nid: {}}
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("RoomFlagsOf = %v, %v; want %v", got, err, want)
	}
	if got, err := db.RoomFlagsOf(space.ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("RoomFlagsOf no rooms = %v, %v", got, err)
	}
}
