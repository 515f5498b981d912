package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"testing"
	"time"

	"matrixhs/cmd/homeserver/server"
	"matrixhs/config"
	"matrixhs/tests/testserver"
)

// logBuffer collects a server's JSON log lines (written from its goroutines).
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines decodes the log lines written so far.
func (b *logBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	raw := append([]byte{}, b.buf.Bytes()...)
	b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, sc.Bytes())
		}
		out = append(out, line)
	}
	return out
}

// abandon sends a long-poll request and drops it as soon as it is on the
// wire, as a client does when it goes away mid-poll.
func abandon(t *testing.T, method, url, token string, body string) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { cancel() }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if res, err := http.DefaultClient.Do(req); err == nil {
		res.Body.Close()
		t.Fatalf("%s %s: answered %d before the client left", method, url, res.StatusCode)
	}
}

// TestDroppedLongPollsAreNotServerErrors: a client that goes away in the
// middle of a /sync or sliding-sync long-poll is routine, logged at info
// with status 499, never as an error with a 5xx status.
func TestDroppedLongPollsAreNotServerErrors(t *testing.T) {
	logs := &logBuffer{}
	s := testserver.StartWith(t, map[string]string{config.EnvLogLevel: "info"}, server.Options{LogOutput: logs})
	alice := newUser(t, s, "alice")
	since := syncOnce(t, alice, "", 0, "").NextBatch
	tok := alice.AccessToken

	paths := map[string]bool{}
	abandon(t, "GET", v3(s, "sync")+"?timeout=30000&since="+since, tok, "")
	paths["/_matrix/client/v3/sync"] = true
	ssFirst := ssOK(t, s, tok, "", 0, map[string]any{"conn_id": "c"})
	abandon(t, "POST", s.URL()+ssPath+"?timeout=30000&pos="+ssFirst.Body["pos"].(string), tok, `{"conn_id":"c"}`)
	paths[ssPath] = true

	deadline := time.Now().Add(20 * time.Second)
	for {
		seen := map[string]map[string]any{}
		for _, line := range logs.lines(t) {
			// Request lines (and anything logged while serving them) carry
			// the request's ID; start-up notices do not.
			if lvl := line["level"]; line["req_id"] != nil && (lvl == "error" || lvl == "warning" || lvl == "fatal") {
				t.Fatalf("a dropped long-poll was logged at %s: %v", lvl, line)
			}
			if p, _ := line["path"].(string); paths[p] && line["status"] != nil && (p != ssPath || line["method"] == "POST") {
				seen[p] = line
			}
		}
		if len(seen) == len(paths) {
			for p, line := range seen {
				if line["level"] != "info" || line["status"] != float64(499) {
					t.Fatalf("dropped %s logged as %v", p, line)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no access-log lines for the dropped requests; saw %v", seen)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
