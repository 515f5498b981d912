package syncapi

import (
	"fmt"
	"testing"
)

// open starts connection key and returns the pos of a first response.
func openConn(t *testing.T, c *ssConns, key ssConnKey) string {
	t.Helper()
	conn, _, err := c.begin(key, "")
	if err != nil {
		t.Fatalf("begin %v: %v", key, err)
	}
	return conn.commit(&ssSent{})
}

func alive(c *ssConns, key ssConnKey, pos string) bool {
	_, _, err := c.begin(key, pos)
	return err == nil
}

// Each bound evicts within its own scope, least recently used first; the
// server-wide bound takes from the user holding the most connections.
func TestSSConnsEviction(t *testing.T) {
	c := newSSConns()
	c.perDevice, c.perUser, c.max = 2, 3, 6

	// Per device: a third connection on d1 drops d1's least recently used.
	k := func(user, dev, conn string) ssConnKey { return ssConnKey{user, dev, conn} }
	p1 := openConn(t, c, k("@a", "d1", "1"))
	p2 := openConn(t, c, k("@a", "d1", "2"))
	if !alive(c, k("@a", "d1", "1"), p1) { // touch 1: 2 is now the LRU
		t.Fatal("connection 1 lost")
	}
	p3 := openConn(t, c, k("@a", "d1", "3"))
	if alive(c, k("@a", "d1", "2"), p2) || !alive(c, k("@a", "d1", "1"), p1) || !alive(c, k("@a", "d1", "3"), p3) {
		t.Fatal("per-device bound did not drop the device's least recently used connection")
	}

	// Per user: a fourth connection across devices drops the user's LRU.
	p4 := openConn(t, c, k("@a", "d2", "1"))
	p5 := openConn(t, c, k("@a", "d3", "1"))
	if alive(c, k("@a", "d1", "1"), p1) || !alive(c, k("@a", "d1", "3"), p3) || !alive(c, k("@a", "d2", "1"), p4) ||
		!alive(c, k("@a", "d3", "1"), p5) {
		t.Fatal("per-user bound did not drop the user's least recently used connection")
	}

	// Server-wide: @b and @c fill up to the bound; then a newcomer takes a
	// slot from the heaviest user (@a, 3), and @a opening more only ever
	// drops @a's own.
	pb := openConn(t, c, k("@b", "d", "1"))
	pc := openConn(t, c, k("@c", "d", "1"))
	openConn(t, c, k("@c", "d", "2"))
	if c.total != 6 {
		t.Fatalf("total = %d, want 6", c.total)
	}
	pn := openConn(t, c, k("@new", "d", "1"))
	if c.total != 6 || len(c.users["@a"]) != 2 || !alive(c, k("@b", "d", "1"), pb) || !alive(c, k("@new", "d", "1"), pn) {
		t.Fatalf("server-wide bound: total %d, @a holds %d", c.total, len(c.users["@a"]))
	}
	for i := 0; i < 20; i++ {
		openConn(t, c, k("@a", fmt.Sprint("x", i), "1"))
	}
	if !alive(c, k("@b", "d", "1"), pb) || !alive(c, k("@c", "d", "1"), pc) || !alive(c, k("@new", "d", "1"), pn) {
		t.Fatal("one user's connections evicted another user's")
	}
	if c.total > c.max {
		t.Fatalf("total = %d over the bound %d", c.total, c.max)
	}
}
