package mediaapi

import (
	"context"
	"sync"
)

// memBudget is a semaphore over bytes: image decodes take what they will
// need (imageInfo.cost) before they start, so concurrent decodes together
// stay within the budget. Waiters are served in turn: a large decode is not
// starved by a stream of small ones behind it.
type memBudget struct {
	capacity int64
	turn     chan struct{} // held by the waiter at the head of the queue

	mu    sync.Mutex
	used  int64
	freed chan struct{} // closed (and replaced) on every release
}

func newMemBudget(capacity int64) *memBudget {
	return &memBudget{capacity: capacity, turn: make(chan struct{}, 1), freed: make(chan struct{})}
}

// acquire waits until n bytes are free (n is capped at the capacity, so a
// caller must refuse larger requests itself).
func (b *memBudget) acquire(ctx context.Context, n int64) error {
	n = min(n, b.capacity)
	select {
	case b.turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-b.turn }()
	for {
		b.mu.Lock()
		if b.used+n <= b.capacity {
			b.used += n
			b.mu.Unlock()
			return nil
		}
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// release returns n bytes taken by acquire.
func (b *memBudget) release(n int64) {
	n = min(n, b.capacity)
	b.mu.Lock()
	b.used -= n
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}
