package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
)

// TestRoomConcurrentSenders: 6 users send 500 messages each into one room at
// the same time. Every send succeeds; /messages returns all 3,000 messages
// exactly once, in the same order both directions, with each sender's
// messages in the order that sender sent them.
func TestRoomConcurrentSenders(t *testing.T) {
	const senders, perSender = 6, 500
	s := start(t, nil)
	clients := make([]*mautrix.Client, senders)
	for i := range clients {
		clients[i] = newUser(t, s, fmt.Sprintf("sender%d", i))
	}
	roomID := mkRoom(t, clients[0], &mautrix.ReqCreateRoom{Preset: "public_chat"})
	for _, c := range clients[1:] {
		join(t, c, roomID)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	began := time.Now()
	sentIDs := make([][]string, senders)
	errs := make(chan error, senders)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range perSender {
				res, err := c.SendMessageEvent(ctx, roomID, event.EventMessage,
					map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("%d/%d", i, n)},
					mautrix.ReqSendEvent{TransactionID: fmt.Sprintf("c%d-%d", i, n)})
				if err != nil {
					errs <- fmt.Errorf("sender %d message %d: %w", i, n, err)
					return
				}
				sentIDs[i] = append(sentIDs[i], string(res.EventID))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d messages sent by %d concurrent senders in %v", senders*perSender, senders, time.Since(began))

	tok := clients[1].AccessToken
	fwd := pageAll(t, s, tok, roomID, "f", 1000)
	back := pageAll(t, s, tok, roomID, "b", 250)
	wantNoDuplicates(t, fwd)
	if len(fwd) != len(back) {
		t.Fatalf("dir=f returned %d events, dir=b %d", len(fwd), len(back))
	}
	for i := range fwd {
		if fwd[i].EventID != back[len(back)-1-i].EventID {
			t.Fatalf("orders differ at %d: dir=f %s, reversed dir=b %s", i, fwd[i].EventID, back[len(back)-1-i].EventID)
		}
	}
	next := make([]int, senders) // next expected message number per sender
	total := 0
	for _, e := range fwd {
		if e.Type != "m.room.message" {
			continue
		}
		total++
		parts := strings.SplitN(e.body(), "/", 2)
		if len(parts) != 2 {
			t.Fatalf("unexpected body %q", e.body())
		}
		who, _ := strconv.Atoi(parts[0])
		n, _ := strconv.Atoi(parts[1])
		if who < 0 || who >= senders || e.Sender != string(clients[who].UserID) {
			t.Fatalf("message %q sent by %s", e.body(), e.Sender)
		}
		if n != next[who] {
			t.Fatalf("sender %d: message %d appears where %d was expected (per-sender order broken)", who, n, next[who])
		}
		if e.EventID != sentIDs[who][n] {
			t.Fatalf("message %q has event ID %s, send returned %s", e.body(), e.EventID, sentIDs[who][n])
		}
		next[who]++
	}
	if total != senders*perSender {
		t.Fatalf("/messages returned %d messages, want %d", total, senders*perSender)
	}
}
