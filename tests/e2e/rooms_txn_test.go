package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"

	"maunium.net/go/mautrix"
)

// putConcurrently sends the same PUT n times at once and returns the
// event_id of each answer; it fails the test on any non-200 answer.
func putConcurrently(t *testing.T, n int, u, token string, body any) []string {
	t.Helper()
	raw, _ := json.Marshal(body)
	ids := make([]string, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, err := http.NewRequestWithContext(ctxT(t), "PUT", u, bytes.NewReader(raw))
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
			var out struct {
				EventID string `json:"event_id"`
			}
			if res.StatusCode != 200 || json.Unmarshal(b, &out) != nil || out.EventID == "" {
				errs[i] = fmt.Errorf("status %d: %s", res.StatusCode, b)
				return
			}
			ids[i] = out.EventID
		}()
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent PUT %s: %v", u, err)
		}
	}
	return ids
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
