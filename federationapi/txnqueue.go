package federationapi

import (
	"context"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/httputil"
)

// txnQueue orders the transactions of each origin: one is processed at a
// time, the others wait in arrival order (a retry of the one under way
// waits too, then finds its stored answer). Origins do not wait for each
// other.
type txnQueue struct {
	mu      sync.Mutex
	origins map[spec.ServerName]*originTurn
	// lastPrune is when old transaction answers were last deleted.
	lastPrune time.Time
}

// maxTxnWaiters bounds the transactions of one origin waiting their turn
// (each holds its body): a sender has one in flight, and retries of a slow
// one add a few; past the bound the answer is 429, which a sender retries.
const maxTxnWaiters = 8

// originTurn is one origin's turn: a ticket queue so that waiters are
// served in arrival order.
type originTurn struct {
	waiters []chan struct{}
	busy    bool
}

func newTxnQueue() *txnQueue { return &txnQueue{origins: map[spec.ServerName]*originTurn{}} }

// acquire waits for origin's turn (or for ctx to end: the sender hung up)
// and returns the function that ends it.
func (q *txnQueue) acquire(ctx context.Context, origin spec.ServerName) (release func(), err error) {
	q.mu.Lock()
	t, ok := q.origins[origin]
	if !ok {
		t = &originTurn{}
		q.origins[origin] = t
	}
	if !t.busy {
		t.busy = true
		q.mu.Unlock()
		return func() { q.release(origin) }, nil
	}
	if len(t.waiters) >= maxTxnWaiters {
		q.mu.Unlock()
		return nil, httputil.LimitExceeded(time.Second.Milliseconds(), "Too many transactions from %s waiting", origin)
	}
	ready := make(chan struct{})
	t.waiters = append(t.waiters, ready)
	q.mu.Unlock()
	select {
	case <-ready:
		return func() { q.release(origin) }, nil
	case <-ctx.Done():
		q.mu.Lock()
		defer q.mu.Unlock()
		for i, w := range t.waiters {
			if w == ready {
				t.waiters = append(t.waiters[:i], t.waiters[i+1:]...)
				return nil, ctx.Err()
			}
		}
		// The turn was handed over just as ctx ended: pass it on.
		q.handOver(origin, t)
		return nil, ctx.Err()
	}
}

func (q *txnQueue) release(origin spec.ServerName) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.handOver(origin, q.origins[origin])
}

// handOver gives the turn to the next waiter, or ends it (q.mu held).
func (q *txnQueue) handOver(origin spec.ServerName, t *originTurn) {
	if len(t.waiters) == 0 {
		delete(q.origins, origin)
		return
	}
	next := t.waiters[0]
	t.waiters = t.waiters[1:]
	close(next)
}

// dueForPrune reports whether old answers should be deleted now (at most
// once every txnPruneEvery).
func (q *txnQueue) dueForPrune(now time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if now.Sub(q.lastPrune) < txnPruneEvery {
		return false
	}
	q.lastPrune = now
	return true
}

// roomTurns lets one transaction at a time work on a room, whatever its
// origin (as Synapse's per-room inbound lock): the events two servers send
// of a room are checked, their gaps filled and stored in turn, so the
// events fetched for one never interleave with another's in the room's
// timeline (which then holds them in DAG order), and the same missing
// events are not fetched twice at once.
type roomTurns struct {
	mu    sync.Mutex
	rooms map[string]*roomTurn
}

// roomTurn is one room's turn: a slot, and how many hold or wait for it.
type roomTurn struct {
	slot chan struct{}
	refs int
}

func newRoomTurns() *roomTurns { return &roomTurns{rooms: map[string]*roomTurn{}} }

// acquire waits for the room's turn (or for ctx to end) and returns the
// function that ends it.
func (q *roomTurns) acquire(ctx context.Context, roomID string) (release func(), err error) {
	q.mu.Lock()
	t := q.rooms[roomID]
	if t == nil {
		t = &roomTurn{slot: make(chan struct{}, 1)}
		q.rooms[roomID] = t
	}
	t.refs++
	q.mu.Unlock()
	select {
	case t.slot <- struct{}{}:
		return func() { <-t.slot; q.unref(roomID, t) }, nil
	case <-ctx.Done():
		q.unref(roomID, t)
		return nil, ctx.Err()
	}
}

func (q *roomTurns) unref(roomID string, t *roomTurn) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if t.refs--; t.refs == 0 {
		delete(q.rooms, roomID)
	}
}
