package ephemeral

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"matrixhs/internal/notifier"
	"matrixhs/storage"
)

// Typing wakes the room's listeners and bumps the version; stopping wakes
// them again; a stop for someone not typing changes nothing.
func TestTypingVersionsAndWakeups(t *testing.T) {
	var woken []notifier.Targets
	s := newService(func(t notifier.Targets) { woken = append(woken, t) }, nil)
	s.setTyping(7, "!r:hs", "@b:hs", true, time.Minute, true)
	s.setTyping(7, "!r:hs", "@a:hs", true, time.Minute, true)
	users, changed := s.Typing("!r:hs", 0)
	if !reflect.DeepEqual(users, []string{"@a:hs", "@b:hs"}) || !changed {
		t.Fatalf("typing = %v (changed %v)", users, changed)
	}
	v := s.Version()
	if _, changed := s.Typing("!r:hs", v); changed {
		t.Fatal("changed after the current version")
	}
	s.setTyping(7, "!r:hs", "@c:hs", false, time.Minute, true) // was not typing
	if s.Version() != v {
		t.Fatal("a stop for a user not typing bumped the version")
	}
	s.setTyping(7, "!r:hs", "@a:hs", false, time.Minute, true)
	if users, changed := s.Typing("!r:hs", v); !changed || !reflect.DeepEqual(users, []string{"@b:hs"}) {
		t.Fatalf("after a stop: %v (changed %v)", users, changed)
	}
	if len(woken) != 3 || !reflect.DeepEqual(woken[0].Rooms, []int64{7}) {
		t.Fatalf("wake-ups = %+v", woken)
	}
}

// Online users who stop being active decay to unavailable; presence states
// other than the three are refused.
func TestPresenceDecayAndValidation(t *testing.T) {
	now := time.Unix(1000, 0)
	var woken []notifier.Targets
	s := newService(func(t notifier.Targets) { woken = append(woken, t) }, func(string) []int64 { return []int64{1, 2} })
	s.now = func() time.Time { return now }
	if err := s.SetPresence("@a:hs", "online", nil, true); err != nil {
		t.Fatal(err)
	}
	p, v := s.Presence("@a:hs")
	if p.Presence != "online" || !p.CurrentlyActive || v == 0 {
		t.Fatalf("presence = %+v (version %d)", p, v)
	}
	if len(woken) != 1 || !reflect.DeepEqual(woken[0].Rooms, []int64{1, 2}) || woken[0].Users[0] != "@a:hs" {
		t.Fatalf("wake-ups = %+v", woken)
	}
	now = now.Add(idleAfter + time.Second)
	if p, _ := s.Presence("@a:hs"); p.Presence != "unavailable" || p.CurrentlyActive {
		t.Fatalf("idle presence = %+v", p)
	}
	if err := s.SetPresence("@a:hs", "busy", nil, false); !errors.Is(err, ErrInvalid) {
		t.Fatalf("SetPresence(busy) = %v", err)
	}
	if p, v := s.Presence("@nobody:hs"); p.Presence != "offline" || v != 0 {
		t.Fatalf("unknown user: %+v %d", p, v)
	}
}

// Others' private receipts are not shown; ignored users' receipts drop out,
// and nothing left is nil.
func TestReceiptsForReader(t *testing.T) {
	rs := receiptsFor([]storage.Receipt{
		{UserID: "@a:hs", Type: "m.read", EventID: "$1", TS: 1},
		{UserID: "@b:hs", Type: "m.read.private", EventID: "$1", TS: 2},
		{UserID: "@me:hs", Type: "m.read.private", EventID: "$2", TS: 3, ThreadID: "main"},
	}, "@me:hs")
	want := Receipts{
		"$1": {"m.read": {"@a:hs": {TS: 1}}},
		"$2": {"m.read.private": {"@me:hs": {TS: 3, ThreadID: "main"}}},
	}
	if !reflect.DeepEqual(rs, want) {
		t.Fatalf("receipts = %v", rs)
	}
	if got := rs.Without(map[string]bool{"@a:hs": true}); !reflect.DeepEqual(got, Receipts{"$2": want["$2"]}) {
		t.Fatalf("without @a = %v", got)
	}
	if got := rs.Without(map[string]bool{"@a:hs": true, "@me:hs": true}); got != nil {
		t.Fatalf("without everyone = %v", got)
	}
	if receiptsFor(nil, "@me:hs") != nil {
		t.Fatal("no receipts should be nil")
	}
}

// A user's unthreaded and threaded receipts on the same event: the
// unthreaded one is shown, in either order (MSC4102).
func TestReceiptsPreferUnthreaded(t *testing.T) {
	unthreaded := storage.Receipt{UserID: "@a:hs", Type: "m.read", EventID: "$1", TS: 1}
	threaded := storage.Receipt{UserID: "@a:hs", Type: "m.read", EventID: "$1", TS: 2, ThreadID: "$root"}
	want := Receipts{"$1": {"m.read": {"@a:hs": {TS: 1}}}}
	for _, order := range [][]storage.Receipt{{unthreaded, threaded}, {threaded, unthreaded}} {
		if rs := receiptsFor(order, "@me:hs"); !reflect.DeepEqual(rs, want) {
			t.Fatalf("receipts = %v, want the unthreaded one", rs)
		}
	}
}
