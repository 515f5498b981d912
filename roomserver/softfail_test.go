package roomserver

import (
	"testing"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

// TestEventsOnASoftFailedJoin: carol joins on a branch where she is not
// banned while alice bans her on another. The join arrives after the ban:
// soft-failed. What carol says on top of her join is allowed at its place
// in the DAG (the state after a soft-failed event includes it), so it is
// soft-failed too, not rejected: every server holds the same DAG whatever
// order the branches reached it in.
func TestEventsOnASoftFailedJoin(t *testing.T) {
	for _, version := range []string{"10", "12"} {
		t.Run("v"+version, func(t *testing.T) {
			f := buildRoom(t, version)
			d := f.d
			carol := "@carol:c.test"
			ban := d.event(f.b, f.alice, spec.MRoomMember, sk(carol), map[string]any{"membership": "ban"}, d.after(f.head), f.head)
			join := d.event(f.c, carol, spec.MRoomMember, sk(carol), map[string]any{"membership": "join"}, d.after(f.head), f.head)
			said := d.event(f.c, carol, "m.room.message", nil, map[string]any{"body": "hello"}, d.after(join), join)
			mustInput(t, f.rs, ban, StatusAccepted)
			mustInput(t, f.rs, join, StatusSoftFailed)
			mustInput(t, f.rs, said, StatusSoftFailed)
			if m := mustRoom(t, f.rs, d.roomID).membership(carol); m != spec.Ban {
				t.Fatalf("carol is %q, want banned", m)
			}
		})
	}
}

// TestLateEventSoftFailed: an event that arrives after another naming it
// as a prev event (that one taken with the state its sender gave) is still
// checked against the current state: carol's message from before her ban
// is soft-failed, not stored as history that /messages would show.
func TestLateEventSoftFailed(t *testing.T) {
	f := buildRoom(t, "11")
	d := f.d
	carol := "@carol:c.test"
	join := d.event(f.c, carol, spec.MRoomMember, sk(carol), map[string]any{"membership": "join"}, d.after(f.head), f.head)
	mustInput(t, f.rs, join, StatusAccepted)
	ban := d.event(f.b, f.alice, spec.MRoomMember, sk(carol), map[string]any{"membership": "ban"}, d.after(join), join)
	mustInput(t, f.rs, ban, StatusAccepted)
	said := d.event(f.c, carol, "m.room.message", nil, map[string]any{"body": "before my ban"}, d.after(join), join)
	next := d.event(f.b, f.alice, "m.room.message", nil, map[string]any{"body": "after carol's"}, d.after(said), said)
	var stateIDs []string
	for _, ev := range d.after(said) {
		stateIDs = append(stateIDs, ev.EventID())
	}
	if res := inputOne(t, f.rs, InputEvent{Kind: KindNew, Event: next, StateBefore: stateIDs}); res.Err != nil || res.Status != StatusAccepted {
		t.Fatalf("next: %+v", res)
	}
	mustInput(t, f.rs, said, StatusSoftFailed)
}
