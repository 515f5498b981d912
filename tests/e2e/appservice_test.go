package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"matrixhs/appservice"
	"matrixhs/cmd/homeserver/server"
	"matrixhs/tests/testserver"
)

// fastAppServices retries failed transactions quickly.
var fastAppServices = server.Options{AppServices: appservice.Options{InitialBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}}

// startBridged starts a server with one mautrix bridge attached.
func startBridged(t *testing.T) (*testserver.Server, *bridge) {
	t.Helper()
	b := newBridge(t, "bridge")
	s := startWithAppServices(t, fastAppServices, b.reg)
	b.attach(s)
	return s, b
}

// TestAppServiceBridgeFlow: a mautrix-go bridge pings the server, registers
// a ghost, is told of the ghost's invite, joins it, sends as it
// (masquerading) and receives the room's messages, in order.
func TestAppServiceBridgeFlow(t *testing.T) {
	s, b := startBridged(t)
	ctx := ctxT(t)

	resp, err := b.as.BotClient().AppservicePing(ctx, b.reg.ID, "ping-1")
	if err != nil || resp.DurationMS < 0 {
		t.Fatalf("ping = %+v, %v", resp, err)
	}

	alice := newUser(t, s, "alice")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	if err != nil {
		t.Fatal(err)
	}
	ghost := b.as.Intent("@bridge_one:hs.test")
	if err := ghost.EnsureRegistered(ctx); err != nil {
		t.Fatalf("registering the ghost: %v", err)
	}
	inv, err := alice.InviteUser(ctx, room.RoomID, &mautrix.ReqInviteUser{UserID: ghost.UserID})
	if err != nil {
		t.Fatal(err)
	}
	_ = inv
	b.waitUntil("the ghost's invite at the bridge", func() bool {
		for _, ev := range b.events {
			if ev.Type == event.StateMember && ev.GetStateKey() == string(ghost.UserID) && ev.Content.AsMember().Membership == event.MembershipInvite {
				return true
			}
		}
		return false
	})
	if _, err := ghost.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatalf("ghost join: %v", err)
	}
	sent, err := ghost.SendText(ctx, room.RoomID, "hello from the bridge")
	if err != nil {
		t.Fatalf("ghost send: %v", err)
	}
	msgs, err := alice.Messages(ctx, room.RoomID, "", "", mautrix.DirectionBackward, nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs.Chunk) == 0 || msgs.Chunk[0].ID != sent.EventID || msgs.Chunk[0].Sender != ghost.UserID {
		t.Fatalf("newest event is not the ghost's message: %+v", msgs.Chunk[0])
	}

	var want []string
	for i := range 5 {
		r, err := alice.SendText(ctx, room.RoomID, fmt.Sprintf("message %d", i))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, string(r.EventID))
	}
	b.waitUntil("alice's messages at the bridge", func() bool { return b.hasEventLocked(want[len(want)-1]) })
	got := b.eventIDs()
	if !isSubsequence(want, got) {
		t.Fatalf("bridge got events %v, want %v in order", got, want)
	}
	wantUnique(t, got)
}

// TestAppServiceTransactionsSurviveRestarts: a bridge that is down while
// messages are sent, across a restart of the server and of the bridge,
// gets every event exactly once, in order; retries repeat a transaction
// byte for byte under its ID, and IDs are never reused.
func TestAppServiceTransactionsSurviveRestarts(t *testing.T) {
	s, b := startBridged(t)
	ctx := ctxT(t)
	alice := newUser(t, s, "alice")
	room := b.ghostInRoom(t, ctx, alice, "@bridge_two:hs.test")
	send := func(cli *mautrix.Client, text string) string {
		r, err := cli.SendText(ctx, room.RoomID, text)
		if err != nil {
			t.Fatal(err)
		}
		return string(r.EventID)
	}
	want := []string{send(alice, "before")}
	b.waitUntil("the first message", func() bool { return b.hasEventLocked(want[0]) })

	// The bridge fails: the server retries the same transaction.
	b.failWith.Store(503)
	want = append(want, send(alice, "while down 1"), send(alice, "while down 2"))
	b.waitUntil("retries", func() bool { return failedAttempts(b) >= 2 })

	// Server restart while the bridge is down, then a bridge restart.
	s2 := s.Restart()
	alice2 := withToken(t, s2, string(alice.UserID), alice.AccessToken)
	want = append(want, send(alice2, "after restart"))
	b.restart(s2)
	b.failWith.Store(0)
	b.waitUntil("every message", func() bool { return b.hasEventLocked(want[len(want)-1]) })

	got := b.eventIDs()
	if !isSubsequence(want, got) {
		t.Fatalf("bridge got %v, want %v in order", got, want)
	}
	wantUnique(t, got)
	b.mu.Lock()
	defer b.mu.Unlock()
	bodies := map[string][]byte{}
	var ids []int
	for _, a := range b.attempts {
		if prev, ok := bodies[a.ID]; ok && !bytes.Equal(prev, a.Raw) {
			t.Fatalf("transaction %s was retried with another body:\n%s\n%s", a.ID, prev, a.Raw)
		}
		if _, ok := bodies[a.ID]; !ok {
			var n int
			fmt.Sscan(a.ID, &n)
			ids = append(ids, n)
		}
		bodies[a.ID] = a.Raw
	}
	if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != len(ids) {
		t.Fatalf("transaction IDs in order of first use: %v", ids)
	}
}

// failedAttempts counts transaction requests the bridge refused (under b.mu).
func failedAttempts(b *bridge) int {
	return len(b.attempts) - len(b.txns)
}

// hasEventLocked is hasEvent for use under b.mu (in waitUntil).
func (b *bridge) hasEventLocked(eventID string) bool {
	for _, txn := range b.txns {
		var evs []struct {
			EventID string `json:"event_id"`
		}
		json.Unmarshal(txn.Body["events"], &evs)
		for _, e := range evs {
			if e.EventID == eventID {
				return true
			}
		}
	}
	return false
}

func isSubsequence(want, got []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

func wantUnique(t *testing.T, ids []string) {
	t.Helper()
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("event %s delivered twice: %v", id, ids)
		}
		seen[id] = true
	}
}

var _ = id.UserID("")
