package ephemeral

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"matrixhs/internal/notifier"
)

// fakeFed records what the service tells federation.
type fakeFed struct {
	mu       sync.Mutex
	typing   []string
	presence []string
	receipts []Receipt
}

func (f *fakeFed) TypingChanged(roomID, userID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.typing = append(f.typing, roomID+" "+userID)
}
func (f *fakeFed) ReceiptStored(r Receipt) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.receipts = append(f.receipts, r)
}
func (f *fakeFed) PresenceChanged(userID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.presence = append(f.presence, userID)
}
func (f *fakeFed) typings() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.typing...)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Remote typing times out as local typing does, without telling
// federation (only the user's own server speaks for it); a local user's
// timeout is told, so other servers hear the stop.
func TestTypingTimeoutsAndFederation(t *testing.T) {
	fed := &fakeFed{}
	s := newService(func(notifier.Targets) {}, nil)
	s.SetFederation(fed)
	if !s.SetRemoteTyping(7, "!r:hs", "@bob:other", true, 20*time.Millisecond) {
		t.Fatal("remote typing not recorded")
	}
	if users, _ := s.Typing("!r:hs", 0); len(users) != 1 || users[0] != "@bob:other" {
		t.Fatalf("typing = %v", users)
	}
	v := s.Version()
	waitUntil(t, "remote typing to time out", func() bool { return !s.IsTyping("!r:hs", "@bob:other") })
	if users, changed := s.Typing("!r:hs", v); len(users) != 0 || !changed {
		t.Fatalf("after the timeout: %v (changed %v)", users, changed)
	}
	if got := fed.typings(); len(got) != 0 {
		t.Fatalf("remote typing told federation: %v", got)
	}
	s.setTyping(7, "!r:hs", "@alice:hs", true, 20*time.Millisecond, true)
	waitUntil(t, "local typing to time out", func() bool { return len(fed.typings()) == 1 })
	if s.IsTyping("!r:hs", "@alice:hs") || fed.typings()[0] != "!r:hs @alice:hs" {
		t.Fatalf("after the local timeout: typing %v, told %v", s.IsTyping("!r:hs", "@alice:hs"), fed.typings())
	}
}

// The typers of all rooms are bounded: past the bound a new typer is not
// recorded, one already typing may go on or stop.
func TestTypersBounded(t *testing.T) {
	s := newService(func(notifier.Targets) {}, nil)
	for i := range maxTypers {
		if !s.SetRemoteTyping(1, fmt.Sprintf("!r%d:hs", i%50), fmt.Sprintf("@u%d:o", i), true, time.Hour) {
			t.Fatalf("typer %d refused", i)
		}
	}
	if s.SetRemoteTyping(1, "!r0:hs", "@late:o", true, time.Hour) {
		t.Fatal("a typer past the bound was recorded")
	}
	if !s.SetRemoteTyping(1, "!r0:hs", "@u0:o", true, time.Hour) || !s.SetRemoteTyping(1, "!r0:hs", "@u0:o", false, 0) {
		t.Fatal("a typer within the bound could not go on or stop")
	}
	if !s.SetRemoteTyping(1, "!r0:hs", "@late:o", true, time.Hour) {
		t.Fatal("a typer was refused after one stopped")
	}
}

// Other servers' presence: shown as their server says (no local idle
// decay), offline once not heard of for RemotePresenceTimeout; local
// updates cannot overwrite it; presence off takes nothing.
func TestRemotePresence(t *testing.T) {
	now := time.Unix(10_000, 0)
	fed := &fakeFed{}
	var woken []notifier.Targets
	s := newService(func(t notifier.Targets) { woken = append(woken, t) }, func(string) []int64 { return []int64{3} })
	s.now = func() time.Time { return now }
	s.SetFederation(fed)
	ago := int64(2000)
	changed, err := s.SetRemotePresence("@bob:o", RemotePresence{Presence: "online", StatusMsg: "hi", LastActiveAgo: &ago, CurrentlyActive: true})
	if err != nil || !changed {
		t.Fatalf("SetRemotePresence = %v, %v", changed, err)
	}
	now = now.Add(10 * time.Minute) // past local idle decay: remote users do not decay here
	p, v := s.Presence("@bob:o")
	if p.Presence != "online" || !p.CurrentlyActive || p.StatusMsg != "hi" || p.LastActiveAgo != 602_000 || v == 0 {
		t.Fatalf("presence = %+v (version %d)", p, v)
	}
	if len(woken) != 1 || woken[0].Users[0] != "@bob:o" || woken[0].Rooms[0] != 3 {
		t.Fatalf("wake-ups = %+v", woken)
	}
	if err := s.SetPresence("@bob:o", "offline", nil, false); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.Presence("@bob:o"); p.Presence != "online" || len(fed.presence) != 0 {
		t.Fatalf("a local update overwrote a remote user: %+v, told %v", p, fed.presence)
	}
	if _, err := s.SetRemotePresence("@bob:o", RemotePresence{Presence: "busy"}); err == nil {
		t.Fatal("an invalid state was taken")
	}
	// Unheard of for too long: offline, a change sync sees.
	now = now.Add(RemotePresenceTimeout)
	s.ExpireRemotePresence()
	if p, v2 := s.Presence("@bob:o"); p.Presence != "offline" || v2 <= v || !s.PresenceChangedSince(v) {
		t.Fatalf("after the timeout: %+v (version %d)", p, v2)
	}
	// Long offline: forgotten.
	now = now.Add(forgetRemotePresenceAfter)
	s.ExpireRemotePresence()
	if s.remotePresence != 0 || len(s.presence) != 0 {
		t.Fatalf("entries left: %d", len(s.presence))
	}
	// Off: nothing is taken, everyone is offline.
	s.SetPresenceEnabled(false)
	if changed, _ := s.SetRemotePresence("@bob:o", RemotePresence{Presence: "online"}); changed || len(s.presence) != 0 {
		t.Fatal("presence taken while off")
	}
	if err := s.SetPresence("@me:hs", "online", nil, true); err != nil || len(fed.presence) != 0 {
		t.Fatalf("local presence while off: %v, told %v", err, fed.presence)
	}
	if p, v := s.Presence("@me:hs"); p.Presence != "offline" || v != 0 {
		t.Fatalf("presence while off = %+v", p)
	}
}

// Other servers' users take at most maxRemotePresence entries; stale ones
// make room.
func TestRemotePresenceBounded(t *testing.T) {
	now := time.Unix(10_000, 0)
	s := newService(func(notifier.Targets) {}, nil)
	s.now = func() time.Time { return now }
	for i := range maxRemotePresence {
		if changed, _ := s.SetRemotePresence(fmt.Sprintf("@u%d:o", i), RemotePresence{Presence: "online"}); !changed {
			t.Fatalf("entry %d refused", i)
		}
	}
	if changed, _ := s.SetRemotePresence("@late:o", RemotePresence{Presence: "online"}); changed || s.remotePresence != maxRemotePresence {
		t.Fatalf("an entry past the bound was taken (%d entries)", s.remotePresence)
	}
	now = now.Add(RemotePresenceTimeout + time.Second)
	if changed, _ := s.SetRemotePresence("@late:o", RemotePresence{Presence: "online"}); !changed || s.remotePresence != 1 {
		t.Fatalf("stale entries did not make room (%d entries)", s.remotePresence)
	}
}

type fakeRemote struct {
	mu  sync.Mutex
	got []string
}

func (f *fakeRemote) add(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, s)
}

func (f *fakeRemote) RemoteTypingChanged(roomID, userID string) {
	f.add("typing " + roomID + " " + userID)
}
func (f *fakeRemote) RemotePresenceChanged(userID string) { f.add("presence " + userID) }

func (f *fakeRemote) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.got...)
}

// A remote listener (appservices) hears of other servers' users' typing,
// its timeout, and presence changes; local changes are not its business.
func TestRemoteListener(t *testing.T) {
	rl := &fakeRemote{}
	s := newService(func(notifier.Targets) {}, nil)
	s.SetRemoteListener(rl)
	s.SetRemoteTyping(7, "!r:hs", "@bob:other", true, 20*time.Millisecond)
	waitUntil(t, "remote typing to time out", func() bool { return len(rl.list()) == 2 })
	if _, err := s.SetRemotePresence("@bob:other", RemotePresence{Presence: "online"}); err != nil {
		t.Fatal(err)
	}
	s.setTyping(7, "!r:hs", "@alice:hs", true, time.Hour, true)
	want := []string{"typing !r:hs @bob:other", "typing !r:hs @bob:other", "presence @bob:other"}
	if got := rl.list(); !slices.Equal(got, want) {
		t.Fatalf("told %v, want %v", got, want)
	}
}
