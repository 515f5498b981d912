// Package bench measures the homeserver through its HTTP API, in process.
// Run: CGO_ENABLED=0 go test ./tests/bench -run x -bench . -benchtime 2000x
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"matrixhs/tests/testserver"
)

type client struct {
	base, token string
	http        *http.Client
}

func (c *client) do(b testing.TB, method, path string, body any) map[string]any {
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		b.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	json.Unmarshal(raw, &out)
	return out
}

func register(b testing.TB, s *testserver.Server, name string) *client {
	c := &client{base: s.URL() + "/_matrix/client/v3", http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	out := c.do(b, "POST", "/register", map[string]any{"username": name, "password": "pw", "auth": map[string]string{"type": "m.login.dummy"}})
	c.token = out["access_token"].(string)
	return c
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			n += info.Size()
		}
		return nil
	})
	return n
}

// benchSend sends b.N messages into one room from `senders` concurrent
// users and reports process CPU per message (server and in-process client
// together, so an upper bound for the server) and database bytes per message.
func benchSend(b *testing.B, senders int) {
	s := testserver.Start(b, nil)
	owner := register(b, s, "owner")
	room := owner.do(b, "POST", "/createRoom", map[string]any{"preset": "public_chat"})["room_id"].(string)
	clients := []*client{owner}
	for i := 1; i < senders; i++ {
		c := register(b, s, fmt.Sprintf("u%d", i))
		c.do(b, "POST", "/join/"+room, map[string]any{})
		clients = append(clients, c)
	}
	dbDir := filepath.Dir(s.Config.Database.Path)
	sizeBefore := dirSize(dbDir)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0, t0 := cpuTime(), time.Now()
	for _, c := range clients {
		wg.Add(1)
		go func(c *client) {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				c.do(b, "PUT", fmt.Sprintf("/rooms/%s/send/m.room.message/t%d", room, i),
					map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("message number %d with some ordinary text", i)})
			}
		}(c)
	}
	wg.Wait()
	elapsed, cpu := time.Since(t0), cpuTime()-cpu0
	b.StopTimer()
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/msg")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msg/s")
	s.Stop() // checkpoints the WAL into the database file
	b.ReportMetric(float64(dirSize(dbDir)-sizeBefore)/float64(b.N), "disk-B/msg")
}

func BenchmarkSend1(b *testing.B) { benchSend(b, 1) }
func BenchmarkSend6(b *testing.B) { benchSend(b, 6) }

// BenchmarkRoomState1000 reads the full state of a room with 1,000 members.
func BenchmarkRoomState1000(b *testing.B) {
	s := testserver.Start(b, nil)
	owner := register(b, s, "owner")
	room := owner.do(b, "POST", "/createRoom", map[string]any{"preset": "public_chat"})["room_id"].(string)
	ctx := context.Background()
	for i := 0; i < 999; i++ {
		name := fmt.Sprintf("m%d", i)
		login, err := s.Accounts.Register(ctx, accountsRegistration(name))
		if err != nil {
			b.Fatal(err)
		}
		c := &client{base: owner.base, token: login.AccessToken, http: owner.http}
		c.do(b, "POST", "/join/"+room, map[string]any{})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req, _ := http.NewRequest("GET", owner.base+"/rooms/"+room+"/state", nil)
		req.Header.Set("Authorization", "Bearer "+owner.token)
		resp, err := owner.http.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var state []json.RawMessage
		json.NewDecoder(resp.Body).Decode(&state)
		resp.Body.Close()
		if len(state) < 1000 {
			b.Fatalf("state has %d events", len(state))
		}
	}
}
