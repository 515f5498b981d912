package fede2ee

import (
	"fmt"
	"net/http"
	"testing"

	"matrixhs/tests/fedtest"
)

// BenchmarkQueryRemoteKeys: a client's /keys/query for 20 users of 5
// other servers (4 each, one device with keys each), over TLS on loopback.
// uncached: no room is shared, so every query asks the 5 servers
// (/user/keys/query, concurrently); cached: all share a room with the
// asker, so after the first query their device lists are kept current by
// EDUs and served from the cache.
//
//	go test ./tests/fede2ee -run x -bench QueryRemoteKeys -benchtime 50x
func BenchmarkQueryRemoteKeys(b *testing.B) {
	n := fedtest.NewNetwork(b)
	hs := n.StartN(6)
	alice := newUser(b, hs[0], "alice", "ALICE1")
	var users []*user
	for i, s := range hs[1:] {
		for j := range 4 {
			u := newUser(b, s, fmt.Sprintf("user%d", j), fmt.Sprintf("DEV%d%d", i, j))
			u.uploadKeys(1)
			users = append(users, u)
		}
	}
	ids := make([]string, len(users))
	for i, u := range users {
		ids[i] = u.ID
	}
	check := func(r response) {
		if len(asMap(r.Body["failures"])) != 0 {
			b.Fatalf("failures: %s", r.Raw)
		}
		for _, u := range users {
			if !hasDevice(r, u.ID, u.DeviceID) {
				b.Fatalf("no keys of %s: %s", u.ID, r.Raw)
			}
		}
	}
	run := func(b *testing.B) {
		check(alice.query(0, ids...)) // warm: connections, keys, cache
		b.ResetTimer()
		for range b.N {
			r := alice.query(0, ids...)
			if r.Status != http.StatusOK {
				b.Fatal(r.Status)
			}
		}
		b.StopTimer()
		check(alice.query(0, ids...))
	}
	b.Run("uncached", run)

	roomID := alice.createRoom(map[string]any{"preset": "public_chat"})
	for _, u := range users {
		u.join(roomID, hs[0].Name)
	}
	alice.waitMembers(roomID, append([]string{alice.ID}, ids...)...)
	b.Run("cached", run)
}
