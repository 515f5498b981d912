package fedbench

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"matrixhs/tests/fedtest"
)

// missedMessages is how many messages the stopped server misses, and
// historyBefore how many it has of the room before.
const (
	missedMessages = 1000
	historyBefore  = 200
)

// BenchmarkCatchUp1000: bob on hs2 is in alice's room on hs1 and holds its
// last 200 messages; hs2 stops, alice sends 1,000 messages (hs1's sender
// fails to reach hs2 and backs off), then hs2 starts again. Measured from
// the restart (the server's start included) until bob has every one of
// the 1,000 messages: his /sync from before the downtime (its timeline is
// limited), then /messages backwards from the sync's prev_batch, 100 at a
// time, as a client scrolling back does. hs1 sends again when its backoff
// runs out (or at once when hs2 asks it something): the newest events of
// the room only, as it missed many; hs2 closes the gap before them with
// /get_missing_events and /state_ids, and backfills the rest of the hole
// in its history as bob pages into it.
//
//	go test -tags goolm ./tests/fedbench -run x -bench CatchUp1000 -benchtime 3x
//
// Reported per catch-up:
//   - catchup-s: restart to all 1,000 seen by bob;
//   - first-s: restart to bob's /sync showing the newest message (mostly
//     the wait for hs1's backoff to run out, which depends on when in it
//     hs2 comes back: up to the 8 s step here);
//   - cpu-s: process CPU over catchup-s (both servers).
func BenchmarkCatchUp1000(b *testing.B) {
	n := fedtest.NewNetwork(b)
	hs1, hs2 := startServer(n, "hs1"), startServer(n, "hs2")
	alice, bob := newUser(b, hs1, "alice"), newUser(b, hs2, "bob")
	var total, first, cpu time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		room := alice.createRoom(b, map[string]any{"preset": "public_chat"})
		bob.join(b, room, hs1.Name)
		// Some history before the downtime, which hs2 holds.
		parallel(historyBefore, 4, func(j int) { alice.send(b, room, fmt.Sprintf("before the downtime %d", j)) })
		since := bob.sync(b, "", 0, "").NextBatch
		hs2.Stop()
		sent := make([]string, missedMessages)
		parallel(missedMessages, 4, func(j int) { sent[j] = alice.send(b, room, fmt.Sprintf("missed message %d of round %d", j, i)) })
		last := alice.send(b, room, "the newest")
		// hs1's sender has queued them all (and collapsed its queue for
		// hs2 to the newest events, as its backoff came round).
		lastEvent, err := hs1.DB.EventByID(context.Background(), last)
		if err != nil {
			b.Fatal(err)
		}
		waitUntil(b, "hs1's sender to queue every message", time.Minute, func() bool {
			pos, err := hs1.DB.FederationCursor(context.Background())
			return err == nil && pos >= lastEvent.StreamPos
		})

		stopProfile := profileTimed(b, i)
		cpu0, t0 := cpuTime(), time.Now()
		b.StartTimer()
		hs2.Restart()
		prevBatch := ""
		seen := map[string]bool{}
		for prevBatch == "" {
			resp := bob.sync(b, since, 10*time.Second, `{"room":{"timeline":{"limit":50}}}`)
			since = resp.NextBatch
			tl := resp.Rooms.Join[room].Timeline
			for _, e := range tl.Events {
				seen[e.EventID] = true
			}
			if seen[last] {
				first += time.Since(t0)
				prevBatch = tl.PrevBatch
			}
		}
		missing := func() int {
			m := 0
			for _, id := range sent {
				if !seen[id] {
					m++
				}
			}
			return m
		}
		deadline := time.Now().Add(2 * time.Minute)
		from := prevBatch
		for missing() > 0 {
			if time.Now().After(deadline) {
				b.Fatalf("bob still misses %d of the messages", missing())
			}
			var page struct {
				Chunk []clientEvent `json:"chunk"`
				End   string        `json:"end"`
			}
			bob.do(b, "GET", roomPath(room, "/messages?dir=b&limit=100&from="+url.QueryEscape(from)), nil, &page)
			for _, e := range page.Chunk {
				seen[e.EventID] = true
			}
			if page.End == "" || len(page.Chunk) == 0 {
				// The start of what hs2 holds: page again from the newest
				// (later pages may find what backfill brought since).
				from = prevBatch
				continue
			}
			from = page.End
		}
		b.StopTimer()
		total += time.Since(t0)
		cpu += cpuTime() - cpu0
		stopProfile()
	}
	per := float64(b.N)
	b.ReportMetric(total.Seconds()/per, "catchup-s")
	b.ReportMetric(first.Seconds()/per, "first-s")
	b.ReportMetric(cpu.Seconds()/per, "cpu-s")
}
