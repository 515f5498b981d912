package federationapi

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"matrixhs/internal/dbtest"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/sirupsen/logrus"

	"matrixhs/federationapi/sender"
	"matrixhs/internal/ephemeral"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

// BenchmarkTypingFanOut20 measures the fan-out of one typing notification
// in a room shared with 20 other servers, on this server's side: the
// ephemeral service records it and tells federation; the outbound worker
// reads the room's servers and queues one m.typing EDU for each (one
// write); then ("queue+send") the sender's 20 destination workers each
// start a transaction, read it back, build the request and finish it once
// answered. The 20 destinations answer in process at once (no network, no
// TLS: what the other servers and the wire cost is not counted). "queue"
// stops once the EDUs are queued (the sender is not running). Each op
// alternates start and stop, so each is a change that goes out. cpu-ms/op
// is the process's CPU time per notification (getrusage), ms/op the wall
// time until the last destination answered (or the EDUs were queued).
//
//	go test -tags goolm -run x -bench TypingFanOut20 -benchtime 200x ./federationapi
func BenchmarkTypingFanOut20(b *testing.B) {
	b.Run("queue", func(b *testing.B) { benchTypingFanOut(b, false) })
	b.Run("queue+send", func(b *testing.B) { benchTypingFanOut(b, true) })
}

func benchTypingFanOut(b *testing.B, send bool) {
	const servers = 20
	ctx := context.Background()
	db, err := dbtest.Open(b, ctx, filepath.Join(b.TempDir(), "hs.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	log := logrus.New()
	log.SetOutput(io.Discard)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	rs := roomserver.New(db, roomserver.Options{ServerName: "a.test", KeyID: "ed25519:a", PrivateKey: key})
	const alice = "@alice:a.test"
	roomID, err := rs.CreateRoom(ctx, roomserver.CreateRoomRequest{Creator: alice, Version: "11", Preset: roomserver.PresetPublicChat})
	if err != nil {
		b.Fatal(err)
	}
	for i := range servers {
		joinFrom(b, db, rs, roomID, spec.ServerName(fmt.Sprintf("s%02d.test", i)))
	}
	tr := &countingTransport{got: make(chan int, 4*servers)}
	snd := sender.New(db, "a.test", tr, log, sender.Options{})
	if send {
		snd.Start()
	}
	defer snd.Stop()
	queued := &signalQueue{q: snd, done: make(chan error, 1)}
	eph := ephemeral.New(db, rs, nil, log)
	out := newEphemeralOut(db, "a.test", eph, queued, EDUOptions{}.withDefaults(), log, time.Now)
	defer out.stop()
	eph.SetFederation(out)

	cpu0, start := cpuTime(), time.Now()
	b.ResetTimer()
	for i := range b.N {
		if err := eph.SetTyping(ctx, alice, roomID, i%2 == 0, 30*time.Second); err != nil {
			b.Fatal(err)
		}
		timeout := time.After(20 * time.Second)
		if !send {
			select {
			case err := <-queued.done:
				if err != nil {
					b.Fatal(err)
				}
			case <-timeout:
				b.Fatalf("op %d: not queued", i)
			}
			continue
		}
		for n := 0; n < servers; {
			select {
			case k := <-tr.got:
				n += k
			case <-timeout:
				b.Fatalf("op %d: %d of %d EDUs delivered", i, n, servers)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/op")
	b.ReportMetric(float64(tr.txns.Load())/float64(b.N), "txns/op")
}

// signalQueue tells done when an EDU was queued.
type signalQueue struct {
	q    EDUQueue
	done chan error
}

func (s *signalQueue) QueueEDU(ctx context.Context, destinations []string, edu gomatrixserverlib.EDU) error {
	err := s.q.QueueEDU(ctx, destinations, edu)
	select {
	case s.done <- err:
	default:
	}
	return err
}

// countingTransport answers every transaction at once, counts them and
// tells got how many EDUs each carried.
type countingTransport struct {
	txns atomic.Int64
	got  chan int
}

func (c *countingTransport) SendTransaction(_ context.Context, t gomatrixserverlib.Transaction) (fclient.RespSend, error) {
	c.txns.Add(1)
	c.got <- len(t.EDUs)
	return fclient.RespSend{}, nil
}

// joinFrom inputs the join of a user of server, built on the room's
// current state and signed by the server (the roomserver has no verifier
// here).
func joinFrom(b *testing.B, db *storage.DB, rs *roomserver.Roomserver, roomID string, server spec.ServerName) {
	b.Helper()
	ctx := context.Background()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	info, err := db.Room(ctx, roomID)
	if err != nil {
		b.Fatal(err)
	}
	ver := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersion(info.Version))
	stored, err := db.CurrentStateEvents(ctx, info.NID, "")
	if err != nil {
		b.Fatal(err)
	}
	var state []gomatrixserverlib.PDU
	for _, e := range stored {
		pdu, err := ver.NewEventFromTrustedJSONWithEventID(e.EventID, e.JSON, false)
		if err != nil {
			b.Fatal(err)
		}
		state = append(state, pdu)
	}
	userID := "@u:" + string(server)
	content, _ := json.Marshal(map[string]string{"membership": spec.Join})
	proto := gomatrixserverlib.ProtoEvent{SenderID: userID, RoomID: roomID, Type: spec.MRoomMember, StateKey: &userID,
		Content: content, PrevEvents: info.Extremities, Depth: info.MaxDepth + 1}
	builder := ver.NewEventBuilderFromProtoEvent(&proto)
	provider, err := gomatrixserverlib.NewAuthEvents(state)
	if err != nil {
		b.Fatal(err)
	}
	if err := builder.AddAuthEvents(provider); err != nil {
		b.Fatal(err)
	}
	pdu, err := builder.Build(time.Now(), server, "ed25519:k", key)
	if err != nil {
		b.Fatal(err)
	}
	res, err := rs.Input(ctx, []roomserver.InputEvent{{Kind: roomserver.KindNew, Event: pdu, Origin: server}})
	if err != nil || res[0].Err != nil || res[0].Status != roomserver.StatusAccepted {
		b.Fatalf("join from %s: %+v, %v", server, res, err)
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
