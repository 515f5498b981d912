package e2e

import (
	"testing"
)

// TestCreateRoomRefusedLeavesNothing: a createRoom refused part-way (after
// the create, join and power level events were built) creates no room.
func TestCreateRoomRefusedLeavesNothing(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	for _, initial := range []map[string]any{
		{"type": "m.room.member", "state_key": "@x:hs.test", "content": map[string]any{"membership": "join"}},
		{"type": "m.room.create", "state_key": "", "content": map[string]any{}},
	} {
		r := do(t, "POST", v3(s, "createRoom"), alice.AccessToken, map[string]any{
			"name": "half", "topic": "t", "initial_state": []any{map[string]any{"type": "m.room.topic", "content": map[string]any{"topic": "x"}}, initial},
		})
		if r.Status != 400 {
			t.Fatalf("createRoom with %v in initial_state: %d %s, want 400", initial["type"], r.Status, r.Raw)
		}
	}
	if rooms := joinedRooms(t, alice); len(rooms) != 0 {
		t.Fatalf("refused createRooms left rooms behind: %v", rooms)
	}
	mkRoomRaw(t, s, alice.AccessToken, map[string]any{"name": "whole"})
	if rooms := joinedRooms(t, alice); len(rooms) != 1 {
		t.Fatalf("rooms after one good createRoom = %v", rooms)
	}
}
