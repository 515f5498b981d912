package roomserver

import (
	"context"
	"testing"
	"time"
)

// TestCreateRoomSameMillisecond: in v12 the room ID is the create event's
// hash, so identical createRoom requests at the same instant would name the
// same room. Each must still get a room of its own.
func TestCreateRoomSameMillisecond(t *testing.T) {
	rs, db := openRoomserver(t)
	frozen := time.UnixMilli(1_700_000_000_000)
	rs.now = func() time.Time { return frozen }
	ctx := context.Background()
	seen := map[string]bool{}
	for i := range 3 {
		roomID, err := rs.CreateRoom(ctx, CreateRoomRequest{Creator: "@a:a.test", Version: "12", Preset: PresetPrivateChat})
		if err != nil {
			t.Fatalf("createRoom %d: %v", i, err)
		}
		if seen[roomID] {
			t.Fatalf("createRoom %d returned the existing room %s", i, roomID)
		}
		seen[roomID] = true
		if _, err := db.Room(ctx, roomID); err != nil {
			t.Fatalf("room %s not stored: %v", roomID, err)
		}
	}
}
