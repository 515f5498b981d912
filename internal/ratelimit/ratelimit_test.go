package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newTest(c *clock, maxKeys int) *Limiter {
	return New(Options{Burst: 5, Interval: 20 * time.Second, MaxKeys: maxKeys, Now: c.now})
}

func TestBurstThenRefill(t *testing.T) {
	c := &clock{time.Unix(1000, 0)}
	l := newTest(c, 100)
	for i := 0; i < 5; i++ {
		if w := l.Allow("a"); w != 0 {
			t.Fatalf("action %d refused (wait %s)", i+1, w)
		}
	}
	if w := l.Wait("a"); w != 20*time.Second {
		t.Fatalf("wait after the burst = %s, want 20s", w)
	}
	if w := l.Allow("a"); w == 0 {
		t.Fatal("sixth action allowed")
	}
	if l.Wait("b") != 0 {
		t.Fatal("another key is limited")
	}
	c.add(20 * time.Second)
	if l.Allow("a") != 0 || l.Wait("a") == 0 {
		t.Fatal("one action should come back per interval, and only one")
	}
	c.add(5 * 20 * time.Second)
	if l.Wait("a") != 0 || l.Len() != 0 {
		t.Fatalf("a refilled bucket should be forgotten: %d entries", l.Len())
	}
}

// Filling the table with other keys never unlocks a locked key: new keys
// share the overflow bucket instead of evicting anyone.
func TestFullTableKeepsPenalties(t *testing.T) {
	c := &clock{time.Unix(1000, 0)}
	l := newTest(c, 50)
	for i := 0; i < 5; i++ {
		l.Take("victim")
	}
	for i := 0; i < 5200; i++ {
		l.Take(fmt.Sprintf("spoof%d", i))
	}
	if l.Len() > 50 {
		t.Fatalf("table grew to %d entries, cap 50", l.Len())
	}
	if l.Wait("victim") == 0 {
		t.Fatal("the locked key was unlocked by a flood of other keys")
	}
	// The flood exhausted the overflow bucket: untracked keys wait too.
	if l.Wait("newcomer") == 0 {
		t.Fatal("untracked keys should share the exhausted overflow bucket")
	}
	// Once the penalties run out, the table empties and keys are free.
	c.add(time.Duration(5200) * 20 * time.Second)
	if l.Wait("victim") != 0 || l.Wait("newcomer") != 0 || l.Len() != 0 {
		t.Fatalf("penalties did not expire: %d entries", l.Len())
	}
}

func TestTakeCountsRefusedActions(t *testing.T) {
	c := &clock{time.Unix(1000, 0)}
	l := newTest(c, 10)
	for i := 0; i < 7; i++ {
		l.Take("k")
	}
	if w := l.Wait("k"); w != 3*20*time.Second {
		t.Fatalf("wait after 7 actions = %s, want 60s", w)
	}
}

func BenchmarkTakeManyKeys(b *testing.B) {
	c := &clock{time.Unix(1000, 0)}
	l := New(Options{Burst: 5, Interval: 20 * time.Second, MaxKeys: 20_000, Now: c.now})
	for i := 0; i < b.N; i++ {
		c.add(time.Millisecond)
		l.Take(fmt.Sprintf("k%d", i%50_000))
	}
}
