package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"

	"matrixhs/internal/racedetect"
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

	ctx, cancel := context.WithTimeout(context.Background(), racedetect.Scale(2*time.Minute))
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

// concurrently sends the same request n times at once and returns the
// decoded answers; it fails the test on any non-200 answer.
func concurrently(t *testing.T, n int, method, u, token string, body any) []map[string]any {
	t.Helper()
	raw, _ := json.Marshal(body)
	out := make([]map[string]any, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, err := http.NewRequestWithContext(ctxT(t), method, u, bytes.NewReader(raw))
			if err != nil {
				errs[i] = err
				return
			}
			req.Header.Set("Authorization", "Bearer "+token)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			if res.StatusCode != 200 || json.Unmarshal(b, &out[i]) != nil {
				errs[i] = fmt.Errorf("status %d: %s", res.StatusCode, b)
			}
		}()
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent %s %s: %v", method, u, err)
		}
	}
	return out
}

// putConcurrently is concurrently for PUTs answering an event_id.
func putConcurrently(t *testing.T, n int, u, token string, body any) []string {
	t.Helper()
	ids := make([]string, n)
	for i, r := range concurrently(t, n, "PUT", u, token, body) {
		ids[i], _ = r["event_id"].(string)
		if ids[i] == "" {
			t.Fatalf("PUT %s answered %v", u, r)
		}
	}
	return ids
}

// TestRoomCreateConcurrentIdentical: identical createRoom requests at the
// same time each get a room of their own (v12 room IDs are hashes of the
// create event, which would otherwise be identical).
func TestRoomCreateConcurrentIdentical(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	const n = 20
	seen := map[string]bool{}
	for _, r := range concurrently(t, n, "POST", v3(s, "createRoom"), alice.AccessToken, map[string]any{"room_version": "12"}) {
		id, _ := r["room_id"].(string)
		if id == "" || seen[id] {
			t.Fatalf("createRoom answered %v (rooms so far %v)", r, seen)
		}
		seen[id] = true
	}
	if got := len(joinedRooms(t, alice)); got != n {
		t.Fatalf("alice is in %d rooms, want %d", got, n)
	}
}

// TestRoomSendTxnConcurrent: requests with the same transaction ID that
// arrive together (a client retrying before the first answer) all answer
// the one event they produce, for sends and for redactions.
func TestRoomSendTxnConcurrent(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	roomID := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})

	const n = 10
	ids := putConcurrently(t, n, roomURL(s, roomID, "send", "m.room.message", "same"), alice.AccessToken,
		map[string]any{"msgtype": "m.text", "body": "once"})
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent sends with one txn ID answered different events: %v", ids)
		}
	}
	if got := messageBodies(pageAll(t, s, alice.AccessToken, roomID, "f", 50)); len(got) != 1 {
		t.Fatalf("timeline has %d messages (%v), want 1", len(got), got)
	}

	target := text(t, alice, roomID, "to redact")
	reds := putConcurrently(t, n, roomURL(s, roomID, "redact", target, "red"), alice.AccessToken, map[string]any{"reason": "r"})
	for _, id := range reds {
		if id != reds[0] {
			t.Fatalf("concurrent redactions with one txn ID answered different events: %v", reds)
		}
	}
	count := 0
	for _, e := range pageAll(t, s, alice.AccessToken, roomID, "f", 50) {
		if e.Type == "m.room.redaction" {
			count++
		}
	}
	if count != 1 {
		t.Fatalf("%d redaction events, want 1", count)
	}
}
