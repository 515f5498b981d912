package sender

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkCatchUp1000 measures this side of a catch-up: a destination was
// down while 1,000 local events (over 1 or 10 rooms) queued for it; it comes
// back (ResetBackoff) and the time is until its queue is empty. "collapse"
// is the default (newest 5 events per room, the destination fills the gap
// itself); "replay" sends every event (CatchUpThreshold -1). rtt is the
// destination's answer time per transaction (in-process, no network).
//
//	go test -tags goolm -run x -bench CatchUp1000 -benchtime 3x ./federationapi/sender
func BenchmarkCatchUp1000(b *testing.B) {
	collapse := Options{InitialBackoff: time.Minute}
	replay := Options{InitialBackoff: time.Minute, CatchUpThreshold: -1}
	for _, bc := range []struct {
		name  string
		opts  Options
		rooms int
		rtt   time.Duration
	}{
		{"collapse/1room", collapse, 1, 0},
		{"collapse/10rooms", collapse, 10, 0},
		{"collapse/10rooms/rtt100ms", collapse, 10, 100 * time.Millisecond},
		{"replay/10rooms", replay, 10, 0},
		{"replay/10rooms/rtt100ms", replay, 10, 100 * time.Millisecond},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var txns, pdus int
			for range b.N {
				b.StopTimer()
				k := missedEvents(b, bc.opts, bc.rooms, 1000)
				k.tr.with("b.test", func(d *fakeDest) { d.down, d.latency = nil, bc.rtt })
				b.StartTimer()
				k.s.ResetBackoff("b.test")
				k.waitDrained("b.test")
				b.StopTimer()
				txns += len(k.tr.requests("b.test"))
				pdus += len(k.tr.events("b.test"))
				k.close()
			}
			b.ReportMetric(float64(txns)/float64(b.N), "txns/op")
			b.ReportMetric(float64(pdus)/float64(b.N), "pdus/op")
		})
	}
}

// missedEvents builds a kit whose destination b.test failed and then missed
// n events spread over rooms, all queued.
func missedEvents(b *testing.B, opts Options, rooms, n int) *kit {
	k := newKit(b, opts)
	ctx := context.Background()
	srv := newRemote(b, "b.test")
	ids := make([]string, rooms)
	for i := range ids {
		ids[i] = k.createRoom(alice)
		k.join(srv, ids[i], "@bob:b.test")
	}
	k.tr.with("b.test", func(d *fakeDest) { d.down = errDown })
	k.send(ids[0], alice, "first")
	waitFor(b, "the failure", func() bool {
		st, _ := k.db.FederationDestination(ctx, "b.test")
		return st.Failures == 1
	})
	for i := 1; i < n; i++ {
		k.send(ids[i%rooms], alice, fmt.Sprint(i))
	}
	waitFor(b, "the queue to fill", func() bool {
		p, _, _ := k.db.FederationQueueCounts(ctx, "b.test")
		return p == n
	})
	return k
}
