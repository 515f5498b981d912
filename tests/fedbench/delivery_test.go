package fedbench

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"matrixhs/tests/fedtest"
)

// BenchmarkFederatedDelivery: alice on hs1 sends a message to a room that
// bob on hs2 joined; bob is waiting in a /sync long-poll on hs2. Reported:
// the p50 and p99 time from the start of alice's send request until bob's
// /sync returned the event (hs1 persists it, its federation sender queues
// it and sends a transaction to hs2, which checks and persists it and
// wakes the long-poll), and the same counted from alice's 200. One message
// at a time, so each finds hs1's sender idle for hs2.
//
//	go test -tags goolm ./tests/fedbench -run x -bench FederatedDelivery -benchtime 300x
func BenchmarkFederatedDelivery(b *testing.B) {
	n := fedtest.NewNetwork(b)
	hs1, hs2 := startServer(n, "hs1"), startServer(n, "hs2")
	alice, bob := newUser(b, hs1, "alice"), newUser(b, hs2, "bob")
	room := alice.createRoom(b, map[string]any{"preset": "public_chat"})
	bob.join(b, room, hs1.Name)

	since := bob.sync(b, "", 0, "").NextBatch
	// deliver sends one message and waits for bob's long-poll to return it;
	// it returns the times from the send's start and from its answer.
	deliver := func(i int) (time.Duration, time.Duration) {
		arrived := make(chan time.Time, 1)
		polling := make(chan struct{})
		go func() {
			close(polling)
			for {
				resp := bob.sync(b, since, 30*time.Second, "")
				since = resp.NextBatch
				if slices.ContainsFunc(resp.Rooms.Join[room].Timeline.Events, func(e clientEvent) bool { return e.Type == "m.room.message" }) {
					arrived <- time.Now()
					return
				}
			}
		}()
		<-polling
		// The long-poll needs a moment to reach its wait on hs2; the
		// measurement starts only then (as in tests/bench's SyncDelivery).
		time.Sleep(2 * time.Millisecond)
		t0 := time.Now()
		alice.send(b, room, fmt.Sprintf("ping %d", i))
		t1 := time.Now()
		at := <-arrived
		return at.Sub(t0), max(0, at.Sub(t1))
	}
	// Warm up: connections, keys, caches.
	for i := range 5 {
		deliver(-i)
	}
	var total, afterSend []time.Duration
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := range b.N {
		d, a := deliver(i)
		total, afterSend = append(total, d), append(afterSend, a)
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/msg")
	sortDurations(total)
	sortDurations(afterSend)
	b.ReportMetric(percentileMS(total, 50), "p50-ms")
	b.ReportMetric(percentileMS(total, 99), "p99-ms")
	b.ReportMetric(percentileMS(afterSend, 50), "p50-after-200-ms")
}
