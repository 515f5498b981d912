package roomserver

import (
	"testing"

	"matrixhs/storage"
)

// visibilityRoom is a room whose history visibility and bob's membership
// change along its timeline; events names its events.
type visibilityRoom struct {
	k      *localKit
	id     string
	nid    int64
	events map[string]string
}

// newVisibilityRoom builds, in order:
//
//	shared:          "before" (bob absent), bob invited, "invited"
//	joined:          "joined-while-invited", bob joins, "joined"
//	invited:         bob leaves, "after-leave"
//	world_readable:  "world", carol joins at the end
func newVisibilityRoom(t *testing.T) *visibilityRoom {
	k := newLocalKit(t)
	v := &visibilityRoom{k: k, events: map[string]string{}}
	v.id = k.createRoom(CreateRoomRequest{Creator: alice, Preset: PresetPrivateChat})
	v.nid = k.roomNID(v.id)
	hv := func(name, value string) {
		v.events[name] = k.send(v.id, alice, "m.room.history_visibility", ptrTo(""), map[string]any{"history_visibility": value})
	}
	msg := func(name string) { v.events[name] = k.message(v.id, alice, name) }
	msg("before")
	v.events["bob-invite"] = k.member(v.id, alice, bob, "invite")
	msg("invited")
	hv("to-joined", "joined")
	msg("joined-while-invited")
	v.events["bob-join"] = k.member(v.id, bob, bob, "join")
	msg("joined")
	hv("to-invited", "invited")
	v.events["bob-leave"] = k.member(v.id, bob, bob, "leave")
	msg("after-leave")
	hv("to-world", "world_readable")
	msg("world")
	k.member(v.id, alice, carol, "invite")
	v.events["carol-join"] = k.member(v.id, carol, carol, "join")
	return v
}

func (v *visibilityRoom) viewer(t *testing.T, userID string) *Viewer {
	t.Helper()
	vw, err := v.k.rs.Viewer(v.k.ctx, v.nid, userID)
	if err != nil {
		t.Fatal(err)
	}
	return vw
}

// Each event is judged by the state before it: the history visibility
// then, the user's membership then and (for shared history) now. One's own
// membership events are always visible; a visibility change is judged by
// the more permissive of its old and new value.
func TestViewerHistoryVisibility(t *testing.T) {
	v := newVisibilityRoom(t)
	want := map[string]map[string]bool{
		// bob left: shared history is his only while he was joined.
		bob: {"before": false, "bob-invite": true, "invited": false, "to-joined": false, "joined-while-invited": false,
			"bob-join": true, "joined": true, "to-invited": true, "bob-leave": true, "after-leave": false, "to-world": true, "world": true},
		// carol joined at the end: she sees the shared history before, not
		// what was for the joined or invited only.
		carol: {"before": true, "invited": true, "to-joined": true, "joined-while-invited": false, "joined": false,
			"to-invited": false, "after-leave": false, "to-world": true, "world": true, "carol-join": true},
		// dave was never in the room: only what is world readable.
		dave: {"before": false, "invited": false, "joined": false, "after-leave": false, "to-world": true, "world": true},
		// alice was joined throughout.
		alice: {"before": true, "invited": true, "joined-while-invited": true, "joined": true, "after-leave": true, "world": true},
	}
	for user, events := range want {
		vw := v.viewer(t, user)
		for name, visible := range events {
			if got := vw.CanSee(v.k.event(v.events[name])); got != visible {
				t.Errorf("%s sees %q: %v, want %v", user, name, got, visible)
			}
		}
		if err := vw.Err(); err != nil {
			t.Fatalf("%s's viewer: %v", user, err)
		}
	}
}

// MembershipAt reports the user's membership at each event (MSC4115): what
// the state before it says, their own membership events reading as
// themselves, "leave" for none.
func TestViewerMembershipAt(t *testing.T) {
	v := newVisibilityRoom(t)
	vw := v.viewer(t, bob)
	for name, want := range map[string]string{
		"before": "leave", "bob-invite": "invite", "invited": "invite", "bob-join": "join", "joined": "join",
		"bob-leave": "leave", "after-leave": "leave", "world": "leave",
	} {
		if got := vw.MembershipAt(v.k.event(v.events[name])); got != want {
			t.Errorf("bob's membership at %q = %q, want %q", name, got, want)
		}
	}
	if m := vw.Membership(); m != "leave" {
		t.Fatalf("bob's current membership = %q", m)
	}
	if pos := vw.LastMembershipPos(); pos != v.k.event(v.events["bob-leave"]).StreamPos {
		t.Fatalf("bob's last membership change at %d, want his leave's position", pos)
	}
	if !vw.WorldReadable() {
		t.Fatal("the room's history is world readable now")
	}
	if cw := v.viewer(t, carol); cw.Membership() != "join" || cw.MembershipAt(v.k.event(v.events["world"])) != "leave" {
		t.Fatalf("carol: now %q, at \"world\" %q", cw.Membership(), cw.MembershipAt(v.k.event(v.events["world"])))
	}
}

// A position probe (no event, only a stream position) is judged by the
// room's state at that position.
func TestViewerPositionProbes(t *testing.T) {
	v := newVisibilityRoom(t)
	vw := v.viewer(t, bob)
	probe := func(name string) *storage.Event {
		return &storage.Event{Type: "m.room.message", StreamPos: v.k.event(v.events[name]).StreamPos}
	}
	for name, want := range map[string]bool{
		"invited":              false, // shared, bob only invited and gone now
		"joined-while-invited": false, // joined only, bob invited
		"joined":               true,
		"bob-leave":            false, // invited only, bob left
		"world":                true,
	} {
		if got := vw.CanSee(probe(name)); got != want {
			t.Errorf("bob at the position of %q: %v, want %v", name, got, want)
		}
	}
	// A second viewer answers the same from the snapshot cache.
	again := v.viewer(t, bob)
	if !again.CanSee(probe("joined")) || again.CanSee(probe("joined-while-invited")) {
		t.Fatal("a cached answer differs")
	}
}
