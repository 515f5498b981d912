package roomserver

import (
	"context"
	"testing"
)

// TrimExtremities leaves the deepest forward extremity, in the head and
// in storage.
func TestTrimExtremities(t *testing.T) {
	ctx := context.Background()
	f := buildRoom(t, "11")
	d := f.d
	a1 := d.event(f.b, f.alice, "m.room.message", nil, map[string]any{"body": "a1"}, d.after(f.bobJoin), f.bobJoin)
	a2 := d.event(f.b, f.alice, "m.room.message", nil, map[string]any{"body": "a2"}, d.after(a1), a1)
	b1 := d.event(f.c, f.bob, "m.room.message", nil, map[string]any{"body": "b1"}, d.after(f.bobJoin), f.bobJoin)
	mustInput(t, f.rs, a1, StatusAccepted)
	mustInput(t, f.rs, a2, StatusAccepted)
	mustInput(t, f.rs, b1, StatusAccepted)
	info, err := f.db.Room(ctx, d.roomID)
	if err != nil || len(info.Extremities) != 2 {
		t.Fatalf("extremities before = %v, %v", info.Extremities, err)
	}
	n, err := f.rs.TrimExtremities(ctx, d.roomID)
	if err != nil || n != 1 {
		t.Fatalf("trimmed %d, %v", n, err)
	}
	if info, err = f.db.Room(ctx, d.roomID); err != nil || len(info.Extremities) != 1 || info.Extremities[0] != a2.EventID() {
		t.Fatalf("stored extremities = %v, %v; want [%s]", info.Extremities, err, a2.EventID())
	}
	if r := mustRoom(t, f.rs, d.roomID); len(r.extremities) != 1 || r.extremities[0] != a2.EventID() {
		t.Fatalf("head extremities = %v", r.extremities)
	}
	if n, err := f.rs.TrimExtremities(ctx, d.roomID); err != nil || n != 0 {
		t.Fatalf("trimming again: %d, %v", n, err)
	}
	if _, err := f.rs.TrimExtremities(ctx, "!nope:b.test"); err != ErrRoomNotFound {
		t.Fatalf("unknown room: %v", err)
	}
}
