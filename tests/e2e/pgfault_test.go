package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"matrixhs/config"
	"matrixhs/internal/pgtest"
	"matrixhs/tests/testserver"
)

// TestPostgresOutage: PostgreSQL goes away (every connection cut, new ones
// refused) while clients send. Requests fail cleanly (503 M_UNKNOWN, never
// a 500 or a hang), every acknowledged message is still there afterwards,
// and the same server process works again once PostgreSQL is back.
func TestPostgresOutage(t *testing.T) {
	db := pgtest.URL(t)
	proxy := newCutProxy(t, db)
	s := testserver.Start(t, map[string]string{config.EnvDatabaseURL: proxy.url})
	alice := newUser(t, s, "alice")
	roomID := mkRoom(t, alice, &mautrix.ReqCreateRoom{})

	stop := make(chan struct{})
	var acked sync.Map // txn ID -> event ID
	var nAcked, nFailed atomic.Int64
	failures := make(chan string, 100)
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				txn := fmt.Sprintf("w%d-%d", w, i)
				// A failed send is retried with its transaction ID, as
				// clients do: it is stored once, whatever happened.
				for {
					select {
					case <-stop:
						return
					default:
					}
					status, body := outageSend(s, alice.AccessToken, roomID, txn)
					if status == 200 {
						acked.Store(txn, body["event_id"])
						nAcked.Add(1)
						break
					}
					nFailed.Add(1)
					if status != http.StatusServiceUnavailable || body["errcode"] != "M_UNKNOWN" {
						select {
						case failures <- fmt.Sprintf("send %s: %d %v", txn, status, body):
						default:
						}
					}
					select {
					case <-stop:
						return
					case <-time.After(5 * time.Millisecond): // the client's retry pace
					}
				}
			}
		}()
	}
	stopSenders := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	defer stopSenders()

	waitFor(t, "sends before the outage", func() bool { return nAcked.Load() >= 30 })
	proxy.cut()
	failedBefore := nFailed.Load()
	waitFor(t, "sends failing during the outage", func() bool { return nFailed.Load() >= failedBefore+10 })
	if r := do(t, "GET", v3(s, "sync")+"?timeout=0", alice.AccessToken, nil); r.Status != 200 && r.Status != http.StatusServiceUnavailable {
		t.Errorf("/sync during the outage: %d %s", r.Status, r.Raw)
	}
	ackedDuring := nAcked.Load()
	proxy.restore()
	waitFor(t, "sends succeeding after the outage", func() bool { return nAcked.Load() >= ackedDuring+30 })
	stopSenders()
	close(failures)
	for f := range failures {
		t.Error("a request failed other than cleanly:", f)
	}

	// Every acknowledged message is in the room, once.
	stored := map[string]int{}
	for _, ev := range pageAll(t, s, alice.AccessToken, roomID, "b", 500) {
		stored[ev.EventID]++
	}
	acked.Range(func(txn, eventID any) bool {
		if n := stored[eventID.(string)]; n != 1 {
			t.Errorf("acknowledged message %s (%s) is stored %d times", txn, eventID, n)
		}
		return true
	})
	if nFailed.Load() == 0 {
		t.Error("no request failed: the outage did not happen")
	}
}

// outageSend sends one message, returning the status and JSON body.
func outageSend(s *testserver.Server, token string, roomID id.RoomID, txn string) (int, map[string]any) {
	raw, _ := json.Marshal(map[string]any{"msgtype": "m.text", "body": "outage " + txn})
	req, _ := http.NewRequest("PUT", v3(s, "rooms", string(roomID), "send", "m.room.message", txn), bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+token)
	client := http.Client{Timeout: 30 * time.Second}
	res, err := client.Do(req)
	if err != nil {
		return 0, map[string]any{"error": err.Error()}
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	var body map[string]any
	json.Unmarshal(out, &body)
	return res.StatusCode, body
}

// cutProxy forwards TCP connections to a PostgreSQL server until cut:
// then it closes them all and refuses new ones (closes them at once), as a
// stopped server does, until restored.
type cutProxy struct {
	url    string
	target string
	ln     net.Listener

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
}

func newCutProxy(t *testing.T, dbURL string) *cutProxy {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{target: u.Host, ln: ln, conns: map[net.Conn]struct{}{}}
	u.Host = ln.Addr().String()
	p.url = u.String()
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.cut()
	})
	return p
}

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *cutProxy) forward(c net.Conn) {
	p.mu.Lock()
	down := p.down
	p.mu.Unlock()
	if down {
		c.Close()
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// cut closes every connection and refuses new ones.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
}

// restore accepts connections again.
func (p *cutProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}
