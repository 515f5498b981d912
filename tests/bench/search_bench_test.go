package bench

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"matrixhs/roomserver"
	"matrixhs/tests/testserver"
)

// Search benchmark corpus: searchMessages messages in searchRooms rooms,
// each of eight words drawn from a Zipf-distributed vocabulary (as in
// real chat: a few words are everywhere, most are rare), plus marker
// words of known frequency.
const (
	searchMessages = 100_000
	searchRooms    = 10
	searchVocab    = 5000
)

// markers are appended to every n-th message, so their hit counts are known.
var searchMarkers = []struct {
	word  string
	every int
}{
	{"quasar", 10_000}, // 10 hits
	{"nebula", 100},    // 1,000 hits
	{"galaxy", 10},     // 10,000 hits
}

type searchCorpus struct {
	s        *testserver.Server
	searcher *client // in every room
	single   *client // in one room
	vocab    []string
	setup    time.Duration
}

// buildSearchCorpus stores the messages through the roomserver (the path
// every client send takes after HTTP), many rooms and senders at once so
// the writer batches them.
func buildSearchCorpus(b *testing.B) *searchCorpus {
	t0 := time.Now()
	s := testserver.Start(b, nil)
	c := &searchCorpus{s: s}
	c.searcher = register(b, s, "searcher")
	c.single = register(b, s, "single")
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < searchVocab; i++ {
		var w strings.Builder
		for n := 3 + rng.IntN(6); n > 0; n-- {
			w.WriteByte(byte('a' + rng.IntN(26)))
		}
		c.vocab = append(c.vocab, w.String())
	}
	zipf := rand.NewZipf(rand.New(rand.NewPCG(3, 4)), 1.1, 1, searchVocab-1)
	var rooms []string
	for i := 0; i < searchRooms; i++ {
		room := c.searcher.do(b, "POST", "/createRoom", map[string]any{"preset": "public_chat"})["room_id"].(string)
		rooms = append(rooms, room)
	}
	c.single.do(b, "POST", "/join/"+rooms[0], map[string]any{})
	bodies := make([]string, searchMessages)
	for i := range bodies {
		words := make([]string, 0, 10)
		for j := 0; j < 8; j++ {
			words = append(words, c.vocab[zipf.Uint64()])
		}
		for _, m := range searchMarkers {
			if i%m.every == 0 {
				words = append(words, m.word)
			}
		}
		bodies[i] = strings.Join(words, " ")
	}
	ctx := context.Background()
	sender := s.UserID("searcher")
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	const perRoom = 6 // concurrent senders per room: the roomserver pipelines a room's writes
	for w := 0; w < searchRooms*perRoom; w++ {
		wg.Add(1)
		go func(room string) {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= searchMessages {
					return
				}
				content, _ := json.Marshal(map[string]any{"msgtype": "m.text", "body": bodies[i]})
				if _, err := s.Rooms.Send(ctx, roomserver.LocalEvent{RoomID: room, Sender: sender, Type: "m.room.message", Content: content}); err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		}(rooms[w%searchRooms])
	}
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatalf("sending: %v", err)
	default:
	}
	c.setup = time.Since(t0)
	return c
}

var (
	searchCorpusOnce sync.Once
	searchCorpusVal  *searchCorpus
)

// BenchmarkSearch runs POST /search over 100,000 messages and reports
// milliseconds per query (through HTTP, in process). The corpus is built
// once (about a minute on two cores) and shared by the sub-benchmarks.
// Run: CGO_ENABLED=0 go test ./tests/bench -run x -bench Search -benchtime 20x
func BenchmarkSearch(b *testing.B) {
	searchCorpusOnce.Do(func() { searchCorpusVal = buildSearchCorpus(b) })
	c := searchCorpusVal
	if c == nil {
		b.Skip("corpus setup failed")
	}
	b.Logf("corpus: %d messages in %d rooms, stored in %s", searchMessages, searchRooms, c.setup.Round(time.Millisecond))
	groups := map[string]any{"group_by": []any{map[string]any{"key": "room_id"}}}
	cases := []struct {
		name string
		who  *client
		crit map[string]any
		hits int // expected count, 0 for any
	}{
		{"rare-10hits", c.searcher, map[string]any{"search_term": "quasar"}, 10},
		{"medium-1k-rank", c.searcher, map[string]any{"search_term": "nebula"}, 1000},
		{"medium-1k-recent", c.searcher, map[string]any{"search_term": "nebula", "order_by": "recent"}, 1000},
		{"common-10k-rank", c.searcher, map[string]any{"search_term": "galaxy"}, 10_000},
		{"common-10k-recent", c.searcher, map[string]any{"search_term": "galaxy", "order_by": "recent"}, 10_000},
		{"common-1k-one-room", c.single, map[string]any{"search_term": "galaxy"}, 0},
		{"two-words-1k", c.searcher, map[string]any{"search_term": "galaxy nebula"}, 1000},
		{"top-vocab-word", c.searcher, map[string]any{"search_term": c.vocab[1]}, 0},
		{"prefix-2-letters", c.searcher, map[string]any{"search_term": c.vocab[1][:2]}, 0},
		{"groups+context+state", c.searcher, map[string]any{"search_term": "nebula", "groupings": groups,
			"event_context": map[string]any{"include_profile": true}, "include_state": true}, 1000},
		{"page-3-rank", c.searcher, map[string]any{"search_term": "galaxy"}, 10_000},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			body := map[string]any{"search_categories": map[string]any{"room_events": tc.crit}}
			path := "/search"
			if tc.name == "page-3-rank" {
				for i := 0; i < 2; i++ {
					res := tc.who.do(b, "POST", path, body)
					path = "/search?next_batch=" + url.QueryEscape(roomEvents(res)["next_batch"].(string))
				}
			}
			res := tc.who.do(b, "POST", path, body)
			count := int(roomEvents(res)["count"].(float64))
			if tc.hits != 0 && count != tc.hits {
				b.Fatalf("count = %d, want %d", count, tc.hits)
			}
			if n := len(roomEvents(res)["results"].([]any)); n == 0 {
				b.Fatal("no results")
			}
			b.ResetTimer()
			t0 := time.Now()
			for i := 0; i < b.N; i++ {
				tc.who.do(b, "POST", path, body)
			}
			b.ReportMetric(float64(time.Since(t0).Microseconds())/1000/float64(b.N), "ms/query")
			b.ReportMetric(float64(count), "hits")
		})
	}
}

func roomEvents(res map[string]any) map[string]any {
	return res["search_categories"].(map[string]any)["room_events"].(map[string]any)
}
