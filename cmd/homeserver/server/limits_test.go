package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"matrixhs/config"
	"matrixhs/internal/accounts"
)

// startLimited starts a server whose config mod adjusts, with one user.
func startLimited(t *testing.T, mod func(*config.Config)) (*Server, string) {
	t.Helper()
	cfg := loadTestConfig(t, t.TempDir())
	cfg.Registration.BcryptCost = 4
	mod(cfg)
	s, err := New(context.Background(), cfg, Options{LogOutput: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	login, err := s.Accounts.Register(context.Background(), accounts.Registration{Localpart: "user", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	return s, login.AccessToken
}

// waitClosed reads from conn until the server closes it, failing when it
// is still open after wait.
func waitClosed(t *testing.T, conn net.Conn, wait time.Duration) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(wait))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %s", wait)
	}
}

// TestSlowBodyIsCutOff: a client that sends headers and then trickles its
// body is disconnected once the body deadline passes, although it is still
// sending.
func TestSlowBodyIsCutOff(t *testing.T) {
	s, _ := startLimited(t, func(c *config.Config) { c.Server.HTTP.ReadBodyTimeout = 500 * time.Millisecond })
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// 64 KiB allow 2s more: 2.5s in all, while trickling it would take hours.
	fmt.Fprintf(conn, "POST /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", 64<<10)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := conn.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	waitClosed(t, conn, 20*time.Second)
}

// TestSlowHeadersAndIdleConnectionsAreClosed: headers must arrive within
// their timeout, and an idle keep-alive connection is closed.
func TestSlowHeadersAndIdleConnectionsAreClosed(t *testing.T) {
	s, _ := startLimited(t, func(c *config.Config) {
		c.Server.HTTP.ReadHeaderTimeout = 500 * time.Millisecond
		c.Server.HTTP.IdleTimeout = 500 * time.Millisecond
	})
	slow, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fmt.Fprint(slow, "GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n") // never finished
	waitClosed(t, slow, 10*time.Second)

	idle, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	fmt.Fprint(idle, "GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(idle)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("versions: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: read %v, want EOF (closed by the server)", err)
	}
}

// longPoll sends a raw /sync request with the given timeout on its own
// connection; the response arrives on the returned channel.
func longPoll(t *testing.T, addr, token, since string, timeoutMS int) (net.Conn, <-chan int) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET /_matrix/client/v3/sync?timeout=%d&since=%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", timeoutMS, since, token)
	status := make(chan int, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			status <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		status <- resp.StatusCode
	}()
	return conn, status
}

func firstSync(t *testing.T, s *Server, token string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", s.URL()+"/_matrix/client/v3/sync", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		NextBatch string `json:"next_batch"`
	}
	json.NewDecoder(resp.Body).Decode(&body)
	// Close the connection: it would hold one of the few slots.
	http.DefaultClient.CloseIdleConnections()
	return body.NextBatch
}

// TestConnectionLimit: with every connection slot held by a long-poll, a new
// connection is not served; the long-polls go on and answer, and the new
// connection is served as soon as a slot frees.
func TestConnectionLimit(t *testing.T) {
	s, token := startLimited(t, func(c *config.Config) { c.Server.HTTP.MaxConnections = 3 })
	since := firstSync(t, s, token)
	var conns []net.Conn
	var polls []<-chan int
	for range 3 {
		c, st := longPoll(t, s.Addr(), token, since, 2000)
		conns, polls = append(conns, c), append(polls, st)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.activeRequests() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d long-polls in flight, want 3", s.activeRequests())
		}
		time.Sleep(5 * time.Millisecond)
	}
	extra, err := net.Dial("tcp", s.Addr()) // the kernel completes the handshake
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	fmt.Fprint(extra, "GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(extra)
	extra.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("a connection over the limit was served")
	}
	for i, st := range polls {
		if code := <-st; code != 200 {
			t.Fatalf("long-poll %d answered %d while the limit held", i, code)
		}
	}
	conns[0].Close() // frees a slot
	extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the waiting connection after a slot freed: %v %v", resp, err)
	}
}

// TestBodyDeadlineSparesLongPolls: a sliding-sync long-poll (a POST whose
// body arrives at once) outlasts the body deadline and still answers.
func TestBodyDeadlineSparesLongPolls(t *testing.T) {
	s, token := startLimited(t, func(c *config.Config) { c.Server.HTTP.ReadBodyTimeout = 200 * time.Millisecond })
	const path = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
	post := func(query string) (int, map[string]any) {
		req, _ := http.NewRequest("POST", s.URL()+path+query, strings.NewReader(`{"lists":{"all":{"ranges":[[0,10]],"timeline_limit":1}}}`))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("sliding sync%s: %v", query, err)
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	code, body := post("")
	pos, _ := body["pos"].(string)
	if code != 200 || pos == "" {
		t.Fatalf("first sliding sync = %d %v", code, body)
	}
	t0 := time.Now()
	if code, body := post("?timeout=1500&pos=" + pos); code != 200 {
		t.Fatalf("long-poll = %d %v", code, body)
	}
	// Nothing happens meanwhile: a long-poll that answers before its timeout
	// was cut short (its request context cancelled by a read deadline).
	if waited := time.Since(t0); waited < 1400*time.Millisecond {
		t.Fatalf("the 1.5 s long-poll answered after %s", waited)
	}
	// The same connection (kept alive) serves the next request.
	if code, _ := post("?pos=" + pos); code != 200 {
		t.Fatalf("next request = %d", code)
	}
}

// TestBodyTimeoutGrowsWithSize: a 50 MiB upload gets the base plus 1600 s;
// JSON endpoints are bounded by their own size limit.
func TestBodyTimeoutGrowsWithSize(t *testing.T) {
	cfg := config.Default()
	up, _ := http.NewRequest("POST", "/_matrix/media/v3/upload", nil)
	up.ContentLength = 50 << 20
	if got := bodyTimeout(&cfg, up); got != cfg.Server.HTTP.ReadBodyTimeout+1600*time.Second {
		t.Fatalf("50 MiB upload: %s", got)
	}
	up.ContentLength = -1 // chunked: the upload limit
	if got := bodyTimeout(&cfg, up); got != cfg.Server.HTTP.ReadBodyTimeout+1600*time.Second {
		t.Fatalf("chunked upload: %s", got)
	}
	js, _ := http.NewRequest("POST", "/_matrix/client/v3/login", nil)
	js.ContentLength = 1 << 30
	if got := bodyTimeout(&cfg, js); got != cfg.Server.HTTP.ReadBodyTimeout+256*time.Second {
		t.Fatalf("JSON body claiming 1 GiB: %s", got)
	}
}
