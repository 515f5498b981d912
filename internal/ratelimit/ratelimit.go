// Package ratelimit is a keyed token-bucket limiter with bounded memory that
// never forgets a penalty early: an entry is dropped only once its bucket is
// full again, and keys that arrive while the table is full of penalised
// entries share one overflow bucket instead of evicting anyone.
package ratelimit

import (
	"container/heap"
	"sync"
	"time"
)

// Limiter allows each key Burst actions at once, then one per Interval.
//
// A bucket is stored as the time it will be full again (the GCRA form of a
// token bucket): with full ≤ now it holds Burst tokens and is forgotten;
// otherwise it holds Burst - (full-now)/Interval tokens. Entries sit in a
// heap ordered by that time, so dropping the refilled ones is cheap and
// nothing ever scans the whole table.
type Limiter struct {
	mu       sync.Mutex
	burst    int
	interval time.Duration
	max      int
	now      func() time.Time
	entries  map[string]*entry
	byFull   fullHeap
	// overflow stands in for every key that finds the table full.
	overflow time.Time
}

// Options configure a Limiter.
type Options struct {
	Burst    int           // actions allowed at once (at least 1)
	Interval time.Duration // time to regain one action
	MaxKeys  int           // entries kept before keys share the overflow bucket
	Now      func() time.Time
}

type entry struct {
	key  string
	full time.Time
	idx  int
}

// New returns a limiter.
func New(o Options) *Limiter {
	if o.Burst < 1 {
		o.Burst = 1
	}
	if o.MaxKeys < 1 {
		o.MaxKeys = 10_000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Limiter{burst: o.Burst, interval: o.Interval, max: o.MaxKeys, now: o.Now, entries: make(map[string]*entry)}
}

// Wait is how long key must wait before its next action (0: it may act now).
func (l *Limiter) Wait(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.forgetFull(now)
	return l.wait(*l.slot(key, now, false), now)
}

// Take records an action of key, whether or not it was allowed.
func (l *Limiter) Take(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.forgetFull(now)
	l.take(key, now)
}

// Allow takes an action for key if it may act now; otherwise it records
// nothing and returns how long to wait.
func (l *Limiter) Allow(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.forgetFull(now)
	if w := l.wait(*l.slot(key, now, false), now); w > 0 {
		return w
	}
	l.take(key, now)
	return 0
}

// Len is the number of keys holding a penalty.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.forgetFull(l.now())
	return len(l.entries)
}

// wait: an action needs one whole token, i.e. full - now ≤ (burst-1)·interval.
func (l *Limiter) wait(full, now time.Time) time.Duration {
	return max(0, full.Sub(now)-time.Duration(l.burst-1)*l.interval)
}

func (l *Limiter) take(key string, now time.Time) {
	full := l.slot(key, now, true)
	*full = later(*full, now).Add(l.interval)
	if e := l.entries[key]; e != nil {
		heap.Fix(&l.byFull, e.idx)
	}
}

// slot is the bucket time of key: its own entry; else, while the table is
// full, the shared overflow bucket; else a full bucket, stored only when
// create.
func (l *Limiter) slot(key string, now time.Time, create bool) *time.Time {
	if e := l.entries[key]; e != nil {
		return &e.full
	}
	if len(l.entries) >= l.max {
		return &l.overflow
	}
	if !create {
		return &now
	}
	e := &entry{key: key, full: now}
	l.entries[key] = e
	heap.Push(&l.byFull, e)
	return &e.full
}

// forgetFull drops the entries whose buckets have refilled.
func (l *Limiter) forgetFull(now time.Time) {
	for len(l.byFull) > 0 && !l.byFull[0].full.After(now) {
		e := heap.Pop(&l.byFull).(*entry)
		delete(l.entries, e.key)
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// fullHeap orders entries by the time their buckets are full again.
type fullHeap []*entry

func (h fullHeap) Len() int           { return len(h) }
func (h fullHeap) Less(i, j int) bool { return h[i].full.Before(h[j].full) }
func (h fullHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *fullHeap) Push(x any) {
	e := x.(*entry)
	e.idx = len(*h)
	*h = append(*h, e)
}
func (h *fullHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
