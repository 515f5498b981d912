package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"matrixhs/cmd/homeserver/server"
	"matrixhs/tests/testserver"
)

// BenchmarkAppServiceFanOut: a user sends into a room an appservice's bot
// is in; reports the p50/p99 time from the start of the send request until
// the appservice (an HTTP server on loopback) received the event in a
// transaction, and process CPU per bridged message (server, client and
// appservice together: an upper bound for the server).
func BenchmarkAppServiceFanOut(b *testing.B) {
	arrived := make(chan int, 64)
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var txn struct {
			Events []struct {
				Type    string `json:"type"`
				Content struct {
					Body string `json:"body"`
				} `json:"content"`
			} `json:"events"`
		}
		raw, _ := io.ReadAll(r.Body)
		json.Unmarshal(raw, &txn)
		w.Write([]byte("{}"))
		for _, e := range txn.Events {
			if n, err := strconv.Atoi(e.Content.Body); e.Type == "m.room.message" && err == nil {
				arrived <- n
			}
		}
	}))
	defer as.Close()
	dir := b.TempDir()
	reg := fmt.Sprintf("id: bench\nurl: %s\nas_token: as-bench\nhs_token: hs-bench\nsender_localpart: benchbot\nrate_limited: false\nnamespaces:\n  users: [{regex: '@bench_.*:hs\\.test', exclusive: true}]\n", as.URL)
	os.WriteFile(filepath.Join(dir, "bench.yaml"), []byte(reg), 0o600)
	os.WriteFile(filepath.Join(dir, "homeserver.yaml"), []byte("app_service_config_files: [bench.yaml]\n"), 0o600)
	s := testserver.StartInWith(b, dir, nil, server.Options{})
	sender := register(b, s, "sender")
	room := sender.do(b, "POST", "/createRoom", map[string]any{"preset": "public_chat"})["room_id"].(string)
	bot := &client{base: sender.base, token: "as-bench", http: sender.http}
	bot.do(b, "POST", "/join/"+room, map[string]any{})

	latencies := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	cpu0 := cpuTime()
	for n := 0; n < b.N; n++ {
		t0 := time.Now()
		sender.do(b, "PUT", fmt.Sprintf("/rooms/%s/send/m.room.message/t%d", room, n), map[string]any{"msgtype": "m.text", "body": strconv.Itoa(n)})
		for got := range arrived {
			if got == n {
				break
			}
		}
		latencies = append(latencies, time.Since(t0))
	}
	cpu := cpuTime() - cpu0
	b.StopTimer()
	slices.Sort(latencies)
	b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/msg")
}
