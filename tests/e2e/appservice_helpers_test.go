package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"matrixhs/cmd/homeserver/server"
	"matrixhs/tests/testserver"
)

// bridge is an appservice built on mautrix-go's appservice package, served
// on loopback, that records every transaction the homeserver sends it.
type bridge struct {
	t    *testing.T
	as   *appservice.AppService
	reg  *appservice.Registration
	addr string
	srv  *httptest.Server

	// failWith, when not 0, is the status every transaction is answered.
	failWith atomic.Int32
	// hang makes transactions wait until it is closed.
	hang atomic.Pointer[chan struct{}]

	mu sync.Mutex
	// txns are the transactions taken (2xx), in arrival order; attempts
	// counts every transaction request.
	txns     []bridgeTxn
	attempts []bridgeTxn
	// events are the events mautrix handed to the bridge (timeline and
	// ephemeral), todevice its to-device events.
	events   []*event.Event
	todevice []*event.Event
	changed  chan struct{}
	done     chan struct{}
	// thirdParty answers GET /_matrix/app/v1/thirdparty/... by path and
	// query (mautrix serves no third-party endpoints); queries records
	// the third-party requests with their Authorization header.
	thirdParty map[string]any
	queries    []string
}

type bridgeTxn struct {
	ID   string
	Body map[string]json.RawMessage
	Raw  []byte
}

// newBridge builds a bridge with an exclusive ghost namespace @ghost_*:hs.test,
// alias namespace #bridged_*, ephemeral events and MSC3202/MSC4190 on.
func newBridge(t *testing.T, id string) *bridge {
	t.Helper()
	reg := appservice.CreateRegistration()
	reg.ID = id
	reg.SenderLocalpart = id + "bot"
	reg.Namespaces.UserIDs.Register(regexp.MustCompile(`@`+id+`_.*:hs\.test`), true)
	reg.Namespaces.RoomAliases.Register(regexp.MustCompile(`#`+id+`_.*:hs\.test`), true)
	reg.EphemeralEvents = true
	reg.SoruEphemeralEvents = true
	reg.MSC3202 = true
	reg.MSC4190 = true
	f := false
	reg.RateLimited = &f
	b := &bridge{t: t, reg: reg, changed: make(chan struct{}), done: make(chan struct{})}
	b.listen("127.0.0.1:0")
	reg.URL = b.srv.URL
	return b
}

// listen serves the bridge on addr (a restarted bridge keeps its address).
func (b *bridge) listen(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		b.t.Fatalf("bridge listen: %v", err)
	}
	b.addr = ln.Addr().String()
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(b.serve))
	b.srv.Listener.Close()
	b.srv.Listener = ln
	b.srv.Start()
	b.t.Cleanup(b.srv.Close)
}

// attach connects a fresh mautrix appservice to the homeserver (also after
// a restart of the bridge or the server).
func (b *bridge) attach(s *testserver.Server) {
	as, err := appservice.CreateFull(appservice.CreateOpts{Registration: b.reg, HomeserverDomain: "hs.test", HomeserverURL: s.URL()})
	if err != nil {
		b.t.Fatalf("appservice: %v", err)
	}
	b.mu.Lock()
	old := b.as
	b.as = as
	b.mu.Unlock()
	if old == nil {
		b.t.Cleanup(func() { close(b.done) })
	}
	go b.drain(as)
}

// drain records what mautrix hands over (its channels block when full).
func (b *bridge) drain(as *appservice.AppService) {
	for {
		select {
		case <-b.done:
			return
		case ev := <-as.Events:
			b.record(func() { b.events = append(b.events, ev) })
		case ev := <-as.ToDeviceEvents:
			b.record(func() { b.todevice = append(b.todevice, ev) })
		case <-as.DeviceLists:
		case <-as.OTKCounts:
		}
	}
}

func (b *bridge) record(f func()) {
	b.mu.Lock()
	f()
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

// restart stops the bridge's HTTP server and starts a new one (with a new
// mautrix instance, which forgets the transactions it saw) on the same address.
func (b *bridge) restart(s *testserver.Server) {
	b.srv.Close()
	b.listen(b.addr)
	b.attach(s)
}

func (b *bridge) serve(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_matrix/app/v1/thirdparty/") {
		b.serveThirdParty(w, r)
		return
	}
	txnID, isTxn := strings.CutPrefix(r.URL.Path, "/_matrix/app/v1/transactions/")
	if !isTxn || r.Method != http.MethodPut {
		b.mu.Lock()
		as := b.as
		b.mu.Unlock()
		as.Router.ServeHTTP(w, r)
		return
	}
	raw, _ := io.ReadAll(r.Body)
	b.record(func() { b.attempts = append(b.attempts, bridgeTxn{ID: txnID, Raw: raw}) })
	if h := b.hang.Load(); h != nil {
		select {
		case <-*h:
		case <-r.Context().Done():
			return
		}
	}
	if code := b.failWith.Load(); code != 0 {
		w.WriteHeader(int(code))
		w.Write([]byte(`{"errcode":"M_UNKNOWN","error":"bridge is down"}`))
		return
	}
	rec := httptest.NewRecorder()
	r.Body = io.NopCloser(bytes.NewReader(raw))
	b.mu.Lock()
	as := b.as
	b.mu.Unlock()
	as.Router.ServeHTTP(rec, r)
	if rec.Code >= 200 && rec.Code < 300 {
		var body map[string]json.RawMessage
		json.Unmarshal(raw, &body)
		b.record(func() {
			// As a bridge does, a transaction taken twice (its first answer
			// lost, e.g. to a timeout) counts once: it is dropped by its ID.
			for _, t := range b.txns {
				if t.ID == txnID {
					return
				}
			}
			b.txns = append(b.txns, bridgeTxn{ID: txnID, Body: body, Raw: raw})
		})
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// waitUntil waits (with a deadline) until cond holds over what the bridge
// recorded; cond runs under the bridge's lock.
func (b *bridge) waitUntil(what string, cond func() bool) {
	b.t.Helper()
	waitFor(b.t, what, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return cond()
	})
}

// eventIDs lists the IDs of the timeline events of the transactions taken,
// in order (repeats included).
func (b *bridge) eventIDs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, txn := range b.txns {
		var evs []struct {
			EventID string `json:"event_id"`
		}
		json.Unmarshal(txn.Body["events"], &evs)
		for _, e := range evs {
			out = append(out, e.EventID)
		}
	}
	return out
}

// hasEvent reports whether a timeline event with this ID was delivered.
func (b *bridge) hasEvent(eventID string) bool {
	for _, e := range b.eventIDs() {
		if e == eventID {
			return true
		}
	}
	return false
}

// startWithAppServices starts a server whose config lists the registration
// files written for regs (in its data dir).
func startWithAppServices(t *testing.T, opts server.Options, regs ...*appservice.Registration) *testserver.Server {
	t.Helper()
	dir := t.TempDir()
	writeAppServiceConfig(t, dir, regs...)
	return testserver.StartInWith(t, dir, nil, opts)
}

func writeAppServiceConfig(t *testing.T, dir string, regs ...*appservice.Registration) {
	t.Helper()
	var files []string
	for _, r := range regs {
		name := r.ID + ".yaml"
		if err := r.Save(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
		files = append(files, name)
	}
	cfg, _ := json.Marshal(map[string]any{"app_service_config_files": files})
	if err := os.WriteFile(filepath.Join(dir, "homeserver.yaml"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (b *bridge) serveThirdParty(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.queries = append(b.queries, r.URL.RequestURI())
	answer, ok := b.thirdParty[r.URL.RequestURI()]
	b.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+b.reg.ServerToken {
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`{"errcode":"M_FORBIDDEN"}`))
		return
	}
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"errcode":"M_NOT_FOUND"}`))
		return
	}
	json.NewEncoder(w).Encode(answer)
}

// ghostInRoom has alice create a private room and the bridge's ghost
// userID (registered first) invited to it and joined.
func (b *bridge) ghostInRoom(t *testing.T, ctx context.Context, alice *mautrix.Client, userID string) *mautrix.RespCreateRoom {
	t.Helper()
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	if err != nil {
		t.Fatal(err)
	}
	ghost := b.as.Intent(id.UserID(userID))
	if err := ghost.EnsureRegistered(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.InviteUser(ctx, room.RoomID, &mautrix.ReqInviteUser{UserID: ghost.UserID}); err != nil {
		t.Fatal(err)
	}
	if _, err := ghost.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	return room
}
