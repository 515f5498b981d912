// Package fedbench measures room federation between real servers of a
// fedtest network (TLS on loopback through the network's CONNECT proxy,
// discovery and request signing as in production): delivery of a message
// to a user of another server waiting in /sync, joining a remote room of
// 1,000 members, and catching up on 1,000 missed messages. The package
// holds benchmarks only: `go test` without -bench runs none of their
// setup. All servers run in the test's process, so CPU and memory figures
// include every server's share (documented per benchmark).
package fedbench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/federationapi"
	"matrixhs/internal/accounts"
	"matrixhs/tests/fedtest"
)

// startServer starts a server of the network with the production key
// refetch interval (fedtest's default of 1 ms suits key rotation tests).
func startServer(n *fedtest.Network, name string) *fedtest.Server {
	return n.Start(name, fedtest.WithFederation(func(o *federationapi.Options) { o.KeyRefetchInterval = 0 }))
}

// user is a logged-in user of one server, talking to its client API.
type user struct {
	hs    *fedtest.Server
	id    string
	token string
}

var httpClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func newUser(b testing.TB, hs *fedtest.Server, localpart string) *user {
	b.Helper()
	login, err := hs.Accounts.Register(context.Background(), accounts.Registration{Localpart: localpart, Password: "correct horse battery staple"})
	if err != nil {
		b.Fatalf("registering %s on %s: %v", localpart, hs.Name, err)
	}
	return &user{hs: hs, id: login.UserID, token: login.AccessToken}
}

// do sends a client API request (path under /_matrix/client/v3) and
// decodes a 200 answer into out; other answers fail the benchmark.
func (u *user) do(b testing.TB, method, path string, body, out any) {
	b.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, u.hs.URL()+"/_matrix/client/v3"+path, rd)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+u.token)
	resp, err := httpClient.Do(req)
	if err != nil {
		b.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("%s %s as %s: %d %s", method, path, u.id, resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			b.Fatalf("%s %s: decoding %s: %v", method, path, raw, err)
		}
	}
}

func roomPath(roomID, rest string) string { return "/rooms/" + url.PathEscape(roomID) + rest }

func (u *user) createRoom(b testing.TB, body map[string]any) string {
	b.Helper()
	var out struct {
		RoomID string `json:"room_id"`
	}
	u.do(b, "POST", "/createRoom", body, &out)
	return out.RoomID
}

// join joins a room through the given servers.
func (u *user) join(b testing.TB, roomID string, via ...spec.ServerName) {
	b.Helper()
	q := url.Values{}
	for _, s := range via {
		q.Add("via", string(s))
	}
	u.do(b, "POST", "/join/"+url.PathEscape(roomID)+"?"+q.Encode(), map[string]any{}, nil)
}

var txnSeq atomic.Int64

// send sends a message and returns its event ID.
func (u *user) send(b testing.TB, roomID, body string) string {
	b.Helper()
	var out struct {
		EventID string `json:"event_id"`
	}
	u.do(b, "PUT", roomPath(roomID, fmt.Sprintf("/send/m.room.message/b%d", txnSeq.Add(1))),
		map[string]any{"msgtype": "m.text", "body": body}, &out)
	return out.EventID
}

// clientEvent is a timeline event as the client API gives it.
type clientEvent struct {
	EventID string `json:"event_id"`
	Type    string `json:"type"`
}

// syncResponse is the part of /sync the benchmarks read.
type syncResponse struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			Timeline struct {
				Events    []clientEvent `json:"events"`
				Limited   bool          `json:"limited"`
				PrevBatch string        `json:"prev_batch"`
			} `json:"timeline"`
		} `json:"join"`
	} `json:"rooms"`
}

// sync runs one /sync; with since set it long-polls up to timeout.
func (u *user) sync(b testing.TB, since string, timeout time.Duration, filter string) syncResponse {
	b.Helper()
	q := url.Values{"timeout": {fmt.Sprint(timeout.Milliseconds())}}
	if since != "" {
		q.Set("since", since)
	}
	if filter != "" {
		q.Set("filter", filter)
	}
	var out syncResponse
	u.do(b, "GET", "/sync?"+q.Encode(), nil, &out)
	return out
}

// waitUntil polls cond (each check is a request to a server, which is
// what waiting costs) until it holds, failing after the deadline.
func waitUntil(b testing.TB, what string, deadline time.Duration, cond func() bool) {
	b.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			b.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// cpuTime is the process's CPU time (user and system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procStatusMB reads a VmXXX line of /proc/self/status in MB (0 when it
// cannot be read).
func procStatusMB(field string) float64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, field+":") {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, field+":")), "%f", &kb)
			return kb / 1024
		}
	}
	return 0
}

// resetPeakRSS makes VmHWM (the process's peak resident set) start again
// from the current RSS (Linux: "5" to clear_refs); it reports whether the
// kernel took it.
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// heapSampler records the highest HeapInuse seen while it runs (sampled;
// ReadMemStats stops the world briefly, every 10 ms is a small cost).
type heapSampler struct {
	stop chan struct{}
	done chan struct{}
	peak uint64
}

func sampleHeap() *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			h.peak = max(h.peak, ms.HeapInuse)
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	}()
	return h
}

// Stop ends sampling and returns the peak.
func (h *heapSampler) Stop() uint64 {
	close(h.stop)
	<-h.done
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return max(h.peak, ms.HeapInuse)
}

// heapInuseAfterGC is the live heap after a full collection.
func heapInuseAfterGC() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

const mb = 1 << 20

// percentile of sorted durations, in ms.
func percentileMS(sorted []time.Duration, p int) float64 {
	i := min(len(sorted)*p/100, len(sorted)-1)
	return float64(sorted[i].Microseconds()) / 1000
}

func sortDurations(d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
}

// parallel runs fn(i) for i in [0, n) on workers goroutines.
func parallel(n, workers int, fn func(i int)) {
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// profileTimed writes a CPU profile of the measured part of one iteration
// to $FEDBENCH_CPUPROFILE.<i> when that variable is set (go test's
// -cpuprofile covers the heavy setup too); it returns the function that
// ends it.
func profileTimed(b testing.TB, i int) func() {
	path := os.Getenv("FEDBENCH_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(fmt.Sprintf("%s.%d", path, i))
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
