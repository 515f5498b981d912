package fedauth

import (
	"crypto/ed25519"
	"strings"
	"sync"
	"testing"
	"time"
)

// Each origin's budget is spent only by requests signed by it: forged ones
// (refused 401) cost it nothing; once spent, 429 M_LIMIT_EXCEEDED until it
// refills.
func TestOriginRateLimit(t *testing.T) {
	f := newAuthFixture(t)
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	f.auth.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	f.auth.LimitOrigins(1, 2)
	_, forger, _ := ed25519.GenerateKey(nil)
	for range 5 {
		if status, _ := f.send(t, f.signed(t, "GET", "/x", nil, "origin.test", "dest.test", forger)); status != 401 {
			t.Fatalf("forged request: %d", status)
		}
	}
	for i := range 2 {
		if status, code := f.send(t, f.signed(t, "GET", "/x", nil, "origin.test", "dest.test", f.priv)); status != 200 {
			t.Fatalf("request %d within the budget: %d %s", i, status, code)
		}
		<-f.got
	}
	if status, code := f.send(t, f.signed(t, "GET", "/x", nil, "origin.test", "dest.test", f.priv)); status != 429 || code != "M_LIMIT_EXCEEDED" {
		t.Fatalf("past the budget: %d %s", status, code)
	}
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	if status, code := f.send(t, f.signed(t, "GET", "/x", nil, "origin.test", "dest.test", f.priv)); status != 200 {
		t.Fatalf("after the refill: %d %s", status, code)
	}
	<-f.got
}

// Bodies past DefaultMaxBody are refused before the handler runs (the
// signature check reads them whole).
func TestBodyLimit(t *testing.T) {
	f := newAuthFixture(t)
	big := map[string]string{"p": strings.Repeat("x", DefaultMaxBody)}
	if status, code := f.send(t, f.signed(t, "PUT", "/x", big, "origin.test", "dest.test", f.priv)); status != 413 || code != "M_TOO_LARGE" {
		t.Fatalf("large body: %d %s", status, code)
	}
	if len(f.got) != 0 {
		t.Fatal("the handler ran")
	}
}
