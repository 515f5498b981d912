package federationapi

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"matrixhs/internal/httputil"
)

// TestTxnQueueOrdersEachOrigin: an origin's transactions take turns in
// arrival order, a waiter that gives up is passed over, and other origins
// never wait.
func TestTxnQueueOrdersEachOrigin(t *testing.T) {
	q := newTxnQueue()
	ctx := context.Background()
	release, err := q.acquire(ctx, "a.test")
	if err != nil {
		t.Fatal(err)
	}
	if other, err := q.acquire(ctx, "b.test"); err != nil {
		t.Fatal(err)
	} else {
		other()
	}
	order := make(chan int, 3)
	queued := func(i int, ctx context.Context) chan error {
		done := make(chan error, 1)
		go func() {
			rel, err := q.acquire(ctx, "a.test")
			if err == nil {
				order <- i
				rel()
			}
			done <- err
		}()
		waitFor(t, func() bool {
			q.mu.Lock()
			defer q.mu.Unlock()
			return len(q.origins["a.test"].waiters) == i
		})
		return done
	}
	first := queued(1, ctx)
	gaveUpCtx, giveUp := context.WithCancel(ctx)
	gaveUp := queued(2, gaveUpCtx)
	third := queued(3, ctx)
	giveUp()
	if err := <-gaveUp; err == nil {
		t.Fatal("a cancelled waiter got the turn")
	}
	release()
	for _, done := range []chan error{first, third} {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if a, b := <-order, <-order; a != 1 || b != 3 {
		t.Fatalf("turns taken in order %d, %d", a, b)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.origins) != 0 {
		t.Fatalf("turns left behind: %v", q.origins)
	}
}

// waitFor polls cond until it holds (a deadline fails the test).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition never held")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestTxnQueueBoundsWaiters: past maxTxnWaiters an origin's transaction is
// refused with 429 (each waiter holds its body); others still get turns.
func TestTxnQueueBoundsWaiters(t *testing.T) {
	q := newTxnQueue()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	release, err := q.acquire(ctx, "a.test")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	for i := range maxTxnWaiters {
		go q.acquire(ctx, "a.test")
		waitFor(t, func() bool {
			q.mu.Lock()
			defer q.mu.Unlock()
			return len(q.origins["a.test"].waiters) == i+1
		})
	}
	_, err = q.acquire(ctx, "a.test")
	var he *httputil.Error
	if !errors.As(err, &he) || he.Status != http.StatusTooManyRequests || he.Code != "M_LIMIT_EXCEEDED" {
		t.Fatalf("waiter past the bound: %v", err)
	}
	if other, err := q.acquire(ctx, "b.test"); err != nil {
		t.Fatalf("another origin: %v", err)
	} else {
		other()
	}
}

// TestRoomTurnsOneAtATime: a room is worked on by one transaction at a
// time whatever its origin, a waiter that gives up leaves, other rooms
// never wait, and nothing is left behind.
func TestRoomTurnsOneAtATime(t *testing.T) {
	q := newRoomTurns()
	ctx := context.Background()
	release, err := q.acquire(ctx, "!a:x")
	if err != nil {
		t.Fatal(err)
	}
	if other, err := q.acquire(ctx, "!b:x"); err != nil {
		t.Fatal(err)
	} else {
		other()
	}
	waiting := make(chan error, 1)
	go func() {
		rel, err := q.acquire(ctx, "!a:x")
		if err == nil {
			rel()
		}
		waiting <- err
	}()
	gaveUpCtx, giveUp := context.WithCancel(ctx)
	gaveUp := make(chan error, 1)
	go func() {
		_, err := q.acquire(gaveUpCtx, "!a:x")
		gaveUp <- err
	}()
	waitFor(t, func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.rooms["!a:x"].refs == 3
	})
	giveUp()
	if err := <-gaveUp; err == nil {
		t.Fatal("a cancelled waiter got the turn while it was held")
	}
	select {
	case err := <-waiting:
		t.Fatalf("a second transaction got the room while it was held (%v)", err)
	default:
	}
	release()
	if err := <-waiting; err != nil {
		t.Fatal(err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.rooms) != 0 {
		t.Fatalf("turns left behind: %v", q.rooms)
	}
}
