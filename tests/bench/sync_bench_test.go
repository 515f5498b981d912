package bench

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"matrixhs/tests/testserver"
)

func (c *client) sync(b testing.TB, since string, timeoutMS int, filter string) map[string]any {
	q := url.Values{}
	if since != "" {
		q.Set("since", since)
	}
	q.Set("timeout", fmt.Sprint(timeoutMS))
	if filter != "" {
		q.Set("filter", filter)
	}
	return c.do(b, "GET", "/sync?"+q.Encode(), nil)
}

func rssMB() float64 {
	raw, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:")), "%f", &kb)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkSyncDelivery: five users long-poll /sync while a sixth sends;
// reports the p50/p99 time from the start of the send request until a
// waiting /sync returned the event.
func BenchmarkSyncDelivery(b *testing.B) {
	s := testserver.Start(b, nil)
	sender := register(b, s, "sender")
	room := sender.do(b, "POST", "/createRoom", map[string]any{"preset": "public_chat"})["room_id"].(string)
	var watchers []*client
	for i := 0; i < 5; i++ {
		c := register(b, s, fmt.Sprintf("w%d", i))
		c.do(b, "POST", "/join/"+room, map[string]any{})
		watchers = append(watchers, c)
	}
	tokens := make([]string, len(watchers))
	for i, w := range watchers {
		tokens[i] = w.sync(b, "", 0, "")["next_batch"].(string)
	}
	var latencies, afterSend []time.Duration
	b.ResetTimer()
	cpu0 := cpuTime()
	for n := 0; n < b.N; n++ {
		var wg sync.WaitGroup
		arrived := make([]time.Time, len(watchers))
		ready := make(chan struct{}, len(watchers))
		for i, w := range watchers {
			wg.Add(1)
			go func(i int, w *client) {
				defer wg.Done()
				ready <- struct{}{}
				for {
					resp := w.sync(b, tokens[i], 30000, "")
					tokens[i] = resp["next_batch"].(string)
					if rooms, ok := resp["rooms"].(map[string]any)["join"].(map[string]any)[room]; ok && len(rooms.(map[string]any)["timeline"].(map[string]any)["events"].([]any)) > 0 {
						arrived[i] = time.Now()
						return
					}
				}
			}(i, w)
		}
		for range watchers {
			<-ready
		}
		time.Sleep(2 * time.Millisecond) // let the long-polls reach their wait
		t0 := time.Now()
		sender.do(b, "PUT", fmt.Sprintf("/rooms/%s/send/m.room.message/d%d", room, n), map[string]any{"msgtype": "m.text", "body": "ping"})
		t1 := time.Now()
		wg.Wait()
		for _, at := range arrived {
			latencies = append(latencies, at.Sub(t0))
			afterSend = append(afterSend, max(0, at.Sub(t1)))
		}
	}
	b.StopTimer()
	// Process CPU (server and the in-process clients) per message delivered
	// to all five: steadier than latency on a shared machine.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/msg")
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	sort.Slice(afterSend, func(i, j int) bool { return afterSend[i] < afterSend[j] })
	b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
	// The same, counted from the moment the sender got its 200 (the event
	// is committed then): what the fan-out to waiting syncs itself costs.
	b.ReportMetric(float64(afterSend[len(afterSend)/2].Microseconds())/1000, "p50-after-200-ms")
}

// BenchmarkInitialSync: a user in 20 rooms of 500 messages each; initial
// sync with timeline limit 20 and lazy-loaded members. Also reports the
// process's resident memory afterwards.
func BenchmarkInitialSync(b *testing.B) {
	s := testserver.Start(b, nil)
	users := make([]*client, 6)
	for i := range users {
		users[i] = register(b, s, fmt.Sprintf("u%d", i))
	}
	var rooms []string
	for r := 0; r < 20; r++ {
		id := users[0].do(b, "POST", "/createRoom", map[string]any{"preset": "public_chat", "name": fmt.Sprintf("room %d", r)})["room_id"].(string)
		for _, u := range users[1:] {
			u.do(b, "POST", "/join/"+id, map[string]any{})
		}
		rooms = append(rooms, id)
	}
	var wg sync.WaitGroup
	for i, u := range users {
		wg.Add(1)
		go func(i int, u *client) {
			defer wg.Done()
			for r, id := range rooms {
				for m := i; m < 500; m += len(users) {
					u.do(b, "PUT", fmt.Sprintf("/rooms/%s/send/m.room.message/r%dm%d", id, r, m), map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("message %d in room %d", m, r)})
				}
			}
		}(i, u)
	}
	wg.Wait()
	filter, _ := json.Marshal(map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 20}, "state": map[string]any{"lazy_load_members": true}}})
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		resp := users[1].sync(b, "", 0, string(filter))
		if got := len(resp["rooms"].(map[string]any)["join"].(map[string]any)); got != 20 {
			b.Fatalf("initial sync has %d rooms", got)
		}
	}
	b.StopTimer()
	b.ReportMetric(rssMB(), "rss-MB")
}

// BenchmarkIdleLongPolls: six clients hold long-polls open with nothing
// happening; reports the process CPU used per second of idling.
func BenchmarkIdleLongPolls(b *testing.B) {
	s := testserver.Start(b, nil)
	var clients []*client
	for i := 0; i < 6; i++ {
		clients = append(clients, register(b, s, fmt.Sprintf("i%d", i)))
	}
	tokens := make([]string, len(clients))
	for i, c := range clients {
		tokens[i] = c.sync(b, "", 0, "")["next_batch"].(string)
	}
	b.ResetTimer()
	cpu0 := cpuTime()
	t0 := time.Now()
	for n := 0; n < b.N; n++ {
		var wg sync.WaitGroup
		for i, c := range clients {
			wg.Add(1)
			go func(i int, c *client) {
				defer wg.Done()
				c.sync(b, tokens[i], 1000, "")
			}(i, c)
		}
		wg.Wait()
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Since(t0))*100, "cpu-%")
	_ = http.StatusOK
}
