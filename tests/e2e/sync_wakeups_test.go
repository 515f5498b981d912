package e2e

import (
	"net/url"
	"testing"
	"time"

	"maunium.net/go/mautrix"
)

// A long-poll wakes for changes that concern its user, not for every
// commit: carol, alone in her room, sleeps through a conversation in a room
// she is not in (her wake-ups are counted, not timed), and wakes when
// someone joins her room.
func TestLongPollSleepsThroughOtherRooms(t *testing.T) {
	s := start(t, nil)
	alice, bob, carol := newUser(t, s, "alice"), newUser(t, s, "bob"), newUser(t, s, "carol")
	busy := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	join(t, bob, busy)
	quiet := mkRoom(t, carol, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	since := syncBody(t, s, carol.AccessToken, "", nil)["next_batch"].(string)

	type result struct {
		r   *resp
		err error
	}
	done := make(chan result, 1)
	go func() {
		r := do(t, "GET", v3(s, "sync")+"?timeout=60000&since="+url.QueryEscape(since), carol.AccessToken, nil)
		done <- result{r: r}
	}()
	waitFor(t, "carol's long-poll to listen", func() bool { return s.Notifier.Listening(string(carol.UserID)) == 1 })

	bobSince := syncBody(t, s, bob.AccessToken, "", nil)["next_batch"].(string)
	for i := 0; i < 5; i++ {
		text(t, alice, busy, "busy")
	}
	// Bob's sync sees the messages: the commits (and their wake-ups) are done.
	if body := syncBody(t, s, bob.AccessToken, bobSince, nil); body["next_batch"] == bobSince {
		t.Fatal("bob's sync saw nothing")
	}
	if n := s.Notifier.Wakeups(string(carol.UserID)); n != 0 {
		t.Fatalf("carol's long-poll was woken %d times by a room she is not in", n)
	}
	select {
	case <-done:
		t.Fatal("carol's long-poll answered for a room she is not in")
	default:
	}

	join(t, bob, quiet)
	select {
	case res := <-done:
		res.r.want(t, 200, "")
		if _, ok := syncRoomIn(res.r.Body, "join", quiet); !ok {
			t.Fatalf("carol's sync lacks her room: %s", res.r.Raw)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("carol's long-poll did not wake for a join to her room")
	}
	if n := s.Notifier.Wakeups(string(carol.UserID)); n != 1 {
		t.Fatalf("carol woken %d times, want 1", n)
	}
}
