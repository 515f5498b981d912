package roomserver

import (
	"context"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

// TestForkResolvedV12 feeds a v12 fork whose power events conflict (the
// shape the pinned gomatrixserverlib's v2.1 resolver panics on) through
// Input: alice, the room's creator, bans bob while bob changes the topic and
// raises himself in the power levels. The ban wins, bob's changes are
// dropped, and a merge event naming both branches is accepted on top.
func TestForkResolvedV12(t *testing.T) {
	ctx := context.Background()
	f := buildRoom(t, "12")
	d := f.d
	ban := d.event(f.b, f.alice, spec.MRoomMember, sk(f.bob), map[string]any{"membership": "ban"}, d.after(f.head), f.head)
	topicB := d.event(f.c, f.bob, spec.MRoomTopic, sk(""), map[string]any{"topic": "bob was here"}, d.after(f.head), f.head)
	plB := d.event(f.c, f.bob, spec.MRoomPowerLevels, sk(""), map[string]any{"users": map[string]int{f.bob: 50}, "state_default": 50, "ban": 50, "events": map[string]int{spec.MRoomTopic: 50}}, d.after(topicB), topicB)
	mustInput(t, f.rs, ban, storage.EventAccepted)
	mustInput(t, f.rs, topicB, storage.EventSoftFailed)
	mustInput(t, f.rs, plB, storage.EventSoftFailed)

	resolved, err := f.rs.resolve(ctx, mustRoom(t, f.rs, d.roomID), []stateMap{d.after(ban), d.after(plB)})
	if err != nil {
		t.Fatalf("resolve: %v", err)
	}
	if got := resolved[gomatrixserverlib.StateKeyTuple{EventType: spec.MRoomTopic}]; got.EventID() != f.topic0.EventID() {
		t.Fatalf("resolved topic = %s, want the original %s", got.EventID(), f.topic0.EventID())
	}
	if got := resolved[gomatrixserverlib.StateKeyTuple{EventType: spec.MRoomPowerLevels}]; got.EventID() == plB.EventID() {
		t.Fatal("the banned user's power levels survived the ban")
	}
	if m, _ := resolved[gomatrixserverlib.StateKeyTuple{EventType: spec.MRoomMember, StateKey: f.bob}].Membership(); m != spec.Ban {
		t.Fatalf("resolved membership of bob = %q, want ban", m)
	}

	merge := d.event(f.b, f.alice, "m.room.message", nil, map[string]any{"body": "merged"}, resolved, ban, plB)
	mustInput(t, f.rs, merge, storage.EventAccepted)
	info, err := f.db.Room(ctx, d.roomID)
	if err != nil || len(info.Extremities) != 1 || info.Extremities[0] != merge.EventID() {
		t.Fatalf("room head = %+v, %v", info, err)
	}
	if m, err := f.db.Membership(ctx, info.NID, f.bob); err != nil || m != spec.Ban {
		t.Fatalf("current membership of bob = %q, %v", m, err)
	}
	state, err := f.db.CurrentStateEvents(ctx, info.NID, spec.MRoomTopic)
	if err != nil || len(state) != 1 || state[0].EventID != f.topic0.EventID() {
		t.Fatalf("current topic = %+v, %v", state, err)
	}
}
