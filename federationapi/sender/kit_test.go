package sender

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"matrixhs/internal/dbtest"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/sirupsen/logrus"

	"matrixhs/roomserver"
	"matrixhs/storage"
)

// The test kit: a real roomserver over a temporary database as server
// a.test, other servers that build signed events for its rooms (input
// through roomserver.Input, as federation would), and an in-process
// transport standing in for those servers' /send endpoints.

const local = "a.test"

var errDown = errors.New("connection refused")

// remote is another homeserver: it signs the events of its users.
type remote struct {
	name  spec.ServerName
	keyID gomatrixserverlib.KeyID
	key   ed25519.PrivateKey
}

func newRemote(t testing.TB, name string) *remote {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &remote{name: spec.ServerName(name), keyID: "ed25519:test", key: key}
}

type kit struct {
	t    testing.TB
	path string
	db   *storage.DB
	rs   *roomserver.Roomserver
	tr   *fakeTransport
	s    *Sender
	opts Options
}

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// newKit opens the database and roomserver and starts a sender.
func newKit(t testing.TB, opts Options) *kit {
	t.Helper()
	k := &kit{t: t, path: filepath.Join(t.TempDir(), "hs.db"), tr: newFakeTransport(), opts: opts}
	k.open()
	t.Cleanup(k.close)
	return k
}

func (k *kit) open() {
	k.t.Helper()
	db, err := dbtest.Open(k.t, context.Background(), k.path)
	if err != nil {
		k.t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	k.db = db
	k.rs = roomserver.New(db, roomserver.Options{ServerName: local, KeyID: "ed25519:a", PrivateKey: key})
	k.s = New(db, local, k.tr, quietLog(), k.opts)
	k.s.Start()
}

func (k *kit) close() {
	if k.db == nil {
		return
	}
	k.s.Stop()
	k.db.Close()
	k.db = nil
}

// restart stops the sender, closes the database and opens both again.
func (k *kit) restart() {
	k.t.Helper()
	k.close()
	k.open()
}

func (k *kit) createRoom(creator string) string {
	k.t.Helper()
	id, err := k.rs.CreateRoom(context.Background(), roomserver.CreateRoomRequest{
		Creator: creator, Version: "11", Preset: roomserver.PresetPublicChat,
	})
	if err != nil {
		k.t.Fatal(err)
	}
	return id
}

// input builds an event of srv's user on the room's current state and
// head, and inputs it as a new event from srv.
func (k *kit) input(srv *remote, roomID, sender, typ string, stateKey *string, content any) string {
	k.t.Helper()
	ctx := context.Background()
	info, err := k.db.Room(ctx, roomID)
	if err != nil {
		k.t.Fatal(err)
	}
	ver := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersion(info.Version))
	stored, err := k.db.CurrentStateEvents(ctx, info.NID, "")
	if err != nil {
		k.t.Fatal(err)
	}
	var state []gomatrixserverlib.PDU
	for _, e := range stored {
		pdu, err := ver.NewEventFromTrustedJSONWithEventID(e.EventID, e.JSON, false)
		if err != nil {
			k.t.Fatal(err)
		}
		state = append(state, pdu)
	}
	raw, _ := json.Marshal(content)
	proto := gomatrixserverlib.ProtoEvent{SenderID: sender, RoomID: roomID, Type: typ, StateKey: stateKey, Content: raw,
		PrevEvents: info.Extremities, Depth: info.MaxDepth + 1}
	b := ver.NewEventBuilderFromProtoEvent(&proto)
	provider, err := gomatrixserverlib.NewAuthEvents(state)
	if err != nil {
		k.t.Fatal(err)
	}
	if err := b.AddAuthEvents(provider); err != nil {
		k.t.Fatal(err)
	}
	pdu, err := b.Build(time.Now(), srv.name, srv.keyID, srv.key)
	if err != nil {
		k.t.Fatal(err)
	}
	res, err := k.rs.Input(ctx, []roomserver.InputEvent{{Kind: roomserver.KindNew, Event: pdu, Origin: srv.name}})
	if err != nil || res[0].Err != nil || res[0].Status != roomserver.StatusAccepted {
		k.t.Fatalf("input %s: %+v, %v", typ, res, err)
	}
	return pdu.EventID()
}

func (k *kit) join(srv *remote, roomID, user string) string {
	return k.input(srv, roomID, user, spec.MRoomMember, &user, map[string]any{"membership": "join"})
}

func (k *kit) send(roomID, sender, body string) string {
	k.t.Helper()
	sent, err := k.rs.Send(context.Background(), roomserver.LocalEvent{RoomID: roomID, Sender: sender, Type: "m.room.message",
		Content: json.RawMessage(fmt.Sprintf(`{"msgtype":"m.text","body":%q}`, body))})
	if err != nil {
		k.t.Fatal(err)
	}
	return sent.EventID
}

func (k *kit) membership(roomID, sender, target, membership string) string {
	k.t.Helper()
	sent, err := k.rs.SetMembership(context.Background(), roomserver.MembershipRequest{RoomID: roomID, Sender: sender,
		Target: target, Membership: membership, Kick: membership == spec.Leave && sender != target})
	if err != nil {
		k.t.Fatalf("%s of %s: %v", membership, target, err)
	}
	return sent.EventID
}

// waitFor waits until cond holds, failing the test after a deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// waitDrained waits until a destination's queue is empty.
func (k *kit) waitDrained(dest string) {
	k.t.Helper()
	waitFor(k.t, dest+"'s queue to drain", func() bool {
		p, e, err := k.db.FederationQueueCounts(context.Background(), dest)
		return err == nil && p == 0 && e == 0
	})
}

// fakeTransport answers transactions as the other servers would: each
// destination can be down, lose its answers, or hold requests at a gate.
type fakeTransport struct {
	mu    sync.Mutex
	dests map[spec.ServerName]*fakeDest
}

type fakeDest struct {
	down error // every request fails with it, unprocessed
	// lose: the next that many transactions are processed but their
	// answer is lost; then the destination goes down with downAfter.
	lose      int
	downAfter error
	// gate, when set, holds each request until it receives a value.
	gate chan struct{}
	// latency is added to every request.
	latency time.Duration
	// took, when set, runs once a transaction was processed, before the
	// answer goes back.
	took func(ctx context.Context)

	inFlight, maxInFlight int
	attempts              int
	requests              []gomatrixserverlib.Transaction // requests that reached the server
	seen                  map[gomatrixserverlib.TransactionID]bool
	events                []string // event IDs processed, once per transaction ID
	edus                  []gomatrixserverlib.EDU
}

func newFakeTransport() *fakeTransport {
	return &fakeTransport{dests: map[spec.ServerName]*fakeDest{}}
}

// dest returns a destination's state; call with mu held.
func (f *fakeTransport) dest(name spec.ServerName) *fakeDest {
	d := f.dests[name]
	if d == nil {
		d = &fakeDest{seen: map[gomatrixserverlib.TransactionID]bool{}}
		f.dests[name] = d
	}
	return d
}

// with runs fn on a destination's state under the lock.
func (f *fakeTransport) with(name string, fn func(d *fakeDest)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f.dest(spec.ServerName(name)))
}

func (f *fakeTransport) events(name string) []string {
	var out []string
	f.with(name, func(d *fakeDest) { out = slices.Clone(d.events) })
	return out
}

func (f *fakeTransport) requests(name string) []gomatrixserverlib.Transaction {
	var out []gomatrixserverlib.Transaction
	f.with(name, func(d *fakeDest) { out = slices.Clone(d.requests) })
	return out
}

var v11 = gomatrixserverlib.MustGetRoomVersion("11")

func (f *fakeTransport) SendTransaction(ctx context.Context, t gomatrixserverlib.Transaction) (fclient.RespSend, error) {
	f.mu.Lock()
	d := f.dest(t.Destination)
	d.attempts++
	d.inFlight++
	d.maxInFlight = max(d.maxInFlight, d.inFlight)
	gate, latency := d.gate, d.latency
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		d.inFlight--
		f.mu.Unlock()
	}()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return fclient.RespSend{}, ctx.Err()
		}
	}
	if latency > 0 {
		select {
		case <-time.After(latency):
		case <-ctx.Done():
			return fclient.RespSend{}, ctx.Err()
		}
	}
	f.mu.Lock()
	resp, err := d.process(t)
	took := d.took
	f.mu.Unlock()
	if err == nil && took != nil {
		took(ctx)
	}
	return resp, err
}

// process handles a transaction that reached the server; call with the
// transport's lock held.
func (d *fakeDest) process(t gomatrixserverlib.Transaction) (fclient.RespSend, error) {
	if d.down != nil {
		return fclient.RespSend{}, d.down
	}
	d.requests = append(d.requests, t)
	resp := fclient.RespSend{PDUs: map[string]fclient.PDUResult{}}
	if !d.seen[t.TransactionID] {
		d.seen[t.TransactionID] = true
		for _, raw := range t.PDUs {
			pdu, err := v11.NewEventFromTrustedJSON(raw, false)
			if err != nil {
				return fclient.RespSend{}, fmt.Errorf("bad PDU: %w", err)
			}
			d.events = append(d.events, pdu.EventID())
			resp.PDUs[pdu.EventID()] = fclient.PDUResult{}
		}
		d.edus = append(d.edus, t.EDUs...)
	}
	if d.lose > 0 {
		d.lose--
		if d.lose == 0 {
			d.down = d.downAfter
		}
		return fclient.RespSend{}, errors.New("connection reset by peer")
	}
	return resp, nil
}
