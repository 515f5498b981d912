package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"testing"
	"time"

	"matrixhs/roomserver"
	"matrixhs/tests/testserver"
)

// BenchmarkSendDuringPurge measures another room's send latency while a
// room of 10,000 messages is deleted and purged (Synapse's v2 delete
// room API), against the same sends while nothing is purged. Each
// iteration sends one message during the purge (a new room is purged when
// one finishes). Reported: idle-ms and purge-ms (median send latency) and
// their ratio, and purge-s (how long one purge took).
func BenchmarkSendDuringPurge(b *testing.B) {
	s := testserver.Start(b, nil)
	admin := register(b, s, "root")
	if err := s.Accounts.SetAdmin(context.Background(), "@root:hs.test", true); err != nil {
		b.Fatal(err)
	}
	sender := register(b, s, "sender")
	busy := sender.do(b, "POST", "/createRoom", map[string]any{"preset": "public_chat"})["room_id"].(string)
	send := func(i int) time.Duration {
		t0 := time.Now()
		sender.do(b, "PUT", fmt.Sprintf("/rooms/%s/send/m.room.message/b%d", busy, i), map[string]any{"msgtype": "m.text", "body": "hello"})
		return time.Since(t0)
	}
	var idle []time.Duration
	for i := range 200 {
		idle = append(idle, send(-i-1))
	}
	adminAPI := &client{base: s.URL() + "/_synapse/admin", token: admin.token, http: admin.http}
	var during []time.Duration
	var purges []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; {
		b.StopTimer()
		room := fillBenchRoom(b, s, admin, 10_000)
		b.StartTimer()
		t0 := time.Now()
		id := adminAPI.do(b, "DELETE", "/v2/rooms/"+url.PathEscape(room), map[string]any{})["delete_id"].(string)
		done := false
		for ; i < b.N && !done; i++ {
			during = append(during, send(i))
			done = adminAPI.do(b, "GET", "/v2/rooms/delete_status/"+id, nil)["status"] == "complete"
		}
		// Out of iterations mid-purge: let it finish (untimed) before the next.
		b.StopTimer()
		for !done {
			done = adminAPI.do(b, "GET", "/v2/rooms/delete_status/"+id, nil)["status"] == "complete"
			if !done {
				time.Sleep(10 * time.Millisecond) // a benchmark's wait for the server's background work
			}
		}
		purges = append(purges, time.Since(t0))
		b.StartTimer()
	}
	b.StopTimer()
	idleMed, purgeMed := medianOf(idle), medianOf(during)
	b.ReportMetric(ms(idleMed), "idle-ms")
	b.ReportMetric(ms(purgeMed), "purge-ms")
	b.ReportMetric(float64(purgeMed)/float64(max(idleMed, 1)), "ratio")
	b.ReportMetric(medianOf(purges).Seconds(), "purge-s")
}

// fillBenchRoom makes a room of n messages (through the roomserver).
func fillBenchRoom(b *testing.B, s *testserver.Server, owner *client, n int) string {
	room := owner.do(b, "POST", "/createRoom", map[string]any{"preset": "public_chat"})["room_id"].(string)
	for i := range n {
		content, _ := json.Marshal(map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("filler %d", i)})
		if _, err := s.Rooms.Send(context.Background(), roomserver.LocalEvent{RoomID: room, Sender: "@root:hs.test", Type: "m.room.message", Content: content}); err != nil {
			b.Fatal(err)
		}
	}
	return room
}

func medianOf(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
