package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"matrixhs/roomserver"
	"matrixhs/tests/testserver"
)

// fillRoom stores n messages of sender in a room through the roomserver
// (as the client API would, minus HTTP), from a few goroutines.
func fillRoom(t *testing.T, s *testserver.Server, room id.RoomID, sender id.UserID, n int) {
	t.Helper()
	const workers = 4
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				content, _ := json.Marshal(map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("filler %d with words to index", i)})
				if _, err := s.Rooms.Send(ctxT(t), roomserver.LocalEvent{RoomID: string(room), Sender: string(sender), Type: "m.room.message", Content: content}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// sendLatency sends one message over HTTP and returns how long it took.
func sendLatency(t *testing.T, cli *mautrix.Client, room id.RoomID, body string) time.Duration {
	t.Helper()
	start := time.Now()
	text(t, cli, room, body)
	return time.Since(start)
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// TestAdminPurgeBigRoomWhileAnotherIsBusy purges a room of 10,000 messages
// while a user keeps sending to another room, then walks every table with
// a room or event column for what is left of the purged room. The other
// room's send latency during the purge is measured and logged against the
// idle latency (timing is reported, not asserted: the benchmark
// BenchmarkSendDuringPurge tracks it).
func TestAdminPurgeBigRoomWhileAnotherIsBusy(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a room with 10,000 messages")
	}
	s := start(t, nil)
	admin := newAdmin(t, s, "root")
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	big := mkRoomRaw(t, s, alice.AccessToken, map[string]any{"preset": "public_chat"})
	join(t, bob, big)
	fillRoom(t, s, big, alice.UserID, 10_000)
	busyRoom(t, s, alice, bob, big, 3)
	busy := mkRoomRaw(t, s, bob.AccessToken, map[string]any{"preset": "public_chat"})

	info, err := s.DB.Room(ctxT(t), string(big))
	if err != nil {
		t.Fatal(err)
	}
	tr := roomTrace{roomID: string(big), roomNID: info.NID}
	for _, ev := range pageAll(t, s, alice.AccessToken, big, "b", 1000) {
		stored, err := s.DB.EventByID(ctxT(t), ev.EventID)
		if err != nil {
			t.Fatal(err)
		}
		tr.eventIDs, tr.nids = append(tr.eventIDs, ev.EventID), append(tr.nids, stored.NID)
	}
	if len(tr.eventIDs) < 10_000 {
		t.Fatalf("the room holds %d events", len(tr.eventIDs))
	}

	var idle []time.Duration
	for i := range 40 {
		idle = append(idle, sendLatency(t, bob, busy, fmt.Sprintf("idle %d", i)))
	}
	r := do(t, "DELETE", s.URL()+"/_synapse/admin/v2/rooms/"+url.PathEscape(string(big)), admin.AccessToken, map[string]any{}).want(t, 200, "")
	status := s.URL() + "/_synapse/admin/v2/rooms/delete_status/" + r.Body["delete_id"].(string)
	var during []time.Duration
	var last *resp
	progressSeen := map[float64]bool{}
	waitFor(t, "the purge to finish", func() bool {
		during = append(during, sendLatency(t, bob, busy, fmt.Sprintf("busy %d", len(during))))
		last = do(t, "GET", status, admin.AccessToken, nil).want(t, 200, "")
		progressSeen[last.Body["progress"].(map[string]any)["events_deleted"].(float64)] = true
		return last.Body["status"] == "complete" || last.Body["status"] == "failed"
	})
	if last.Body["status"] != "complete" {
		t.Fatalf("purge = %s", last.Raw)
	}
	t.Logf("send latency in the other room: idle median %v (n=%d), during the purge median %v (n=%d), ratio %.2f; %d progress values seen",
		median(idle), len(idle), median(during), len(during), float64(median(during))/float64(max(median(idle), 1)), len(progressSeen))
	if left := leftOf(t, s, tr); len(left) != 0 {
		t.Fatalf("rows of the purged room are left: %v", left)
	}
	// The busy room kept every message.
	if n := len(pageAll(t, s, bob.AccessToken, busy, "b", 500)); n < len(idle)+len(during) {
		t.Fatalf("the busy room has %d events, want at least %d", n, len(idle)+len(during))
	}
}
