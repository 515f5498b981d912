package clientapi

import (
	"fmt"
	"testing"
	"time"
)

// Anyone can start registration sessions: they are bounded, expire in
// creation order, and a flood of them never evicts signed-in users'
// sessions.
func TestUIASessionsBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	u := newUIASessions(func() time.Time { return now })
	u.mu.Lock()
	defer u.mu.Unlock()
	mine := u.create("DELETE /devices/X", "@alice:hs.test")
	first := u.create("POST /register", "")
	for i := 0; i < maxRegistrationSessions+500; i++ {
		u.create("POST /register", "")
	}
	if n := u.anon.Len(); n != maxRegistrationSessions || len(u.byID) != maxRegistrationSessions+1 {
		t.Fatalf("%d registration sessions (%d in all), cap %d", n, len(u.byID), maxRegistrationSessions)
	}
	if u.get(first.id, "") != nil {
		t.Fatal("the oldest registration session should have made room")
	}
	if u.get(mine.id, "@alice:hs.test") != mine {
		t.Fatal("a registration flood evicted a user's session")
	}
	if u.get(mine.id, "@mallory:hs.test") != nil || u.get(mine.id, "") != nil {
		t.Fatal("another user (or anyone) can continue a user's session")
	}
	// One user's sessions are capped on their own.
	var bobs []*uiaSession
	for i := 0; i < maxSessionsPerUser+3; i++ {
		bobs = append(bobs, u.create(fmt.Sprintf("POST /op%d", i), "@bob:hs.test"))
	}
	if len(u.perUser["@bob:hs.test"]) != maxSessionsPerUser || u.get(bobs[0].id, "@bob:hs.test") != nil ||
		u.get(bobs[len(bobs)-1].id, "@bob:hs.test") == nil || u.get(mine.id, "@alice:hs.test") == nil {
		t.Fatalf("per-user cap: bob holds %d sessions", len(u.perUser["@bob:hs.test"]))
	}
	// After their lifetime everything goes, on the next creation.
	now = now.Add(uiaSessionLifetime + time.Second)
	if u.get(mine.id, "@alice:hs.test") != nil {
		t.Fatal("an expired session is still usable")
	}
	u.create("POST /register", "")
	if len(u.byID) != 1 || u.users.Len() != 0 || len(u.perUser) != 0 {
		t.Fatalf("expired sessions left: %d (%d users)", len(u.byID), len(u.perUser))
	}
}

// BenchmarkUIASessionCreate starts registration sessions with 20,000 live
// ones (the old store scanned them all on every creation).
func BenchmarkUIASessionCreate(b *testing.B) {
	now := time.Unix(1000, 0)
	u := newUIASessions(func() time.Time { return now })
	for i := 0; i < 20_000; i++ {
		u.create("POST /register", "")
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now = now.Add(time.Millisecond)
		u.mu.Lock()
		u.create("POST /register", "")
		u.mu.Unlock()
	}
}
