package roomserver

import (
	"context"
	"errors"
	"sync"

	"matrixhs/storage"
)

// txnKey names one client transaction: the spec makes a transaction ID
// idempotent per device (and endpoint, the scope).
type txnKey struct{ user, device, scope, txn string }

// txnCall is a send with a transaction ID that is under way; concurrent
// requests with the same key wait for it instead of building a second event.
type txnCall struct {
	done chan struct{}
	sent Sent
	err  error
}

// txnCalls tracks the transactions under way.
type txnCalls struct {
	mu    sync.Mutex
	calls map[txnKey]*txnCall
}

// sendOnce runs send for a transaction unless the same transaction is under
// way or already stored, in which case the first event's ID is returned.
// The stored transaction row is committed with the event, and the in-flight
// entry is dropped only after that commit, so no window lets a second event
// through. A failed send is not remembered: a retry builds the event anew.
func (rs *Roomserver) sendOnce(ctx context.Context, key txnKey, send func() (Sent, error)) (Sent, error) {
	for {
		rs.txns.mu.Lock()
		if c, ok := rs.txns.calls[key]; ok {
			rs.txns.mu.Unlock()
			select {
			case <-c.done:
			case <-ctx.Done():
				return Sent{}, ctx.Err()
			}
			if c.err == nil {
				return c.sent, nil
			}
			continue // the first attempt failed: try again ourselves
		}
		c := &txnCall{done: make(chan struct{})}
		if rs.txns.calls == nil {
			rs.txns.calls = map[txnKey]*txnCall{}
		}
		rs.txns.calls[key] = c
		rs.txns.mu.Unlock()

		c.sent, c.err = rs.storedOrSend(ctx, key, send)
		rs.txns.mu.Lock()
		delete(rs.txns.calls, key)
		rs.txns.mu.Unlock()
		close(c.done)
		return c.sent, c.err
	}
}

func (rs *Roomserver) storedOrSend(ctx context.Context, key txnKey, send func() (Sent, error)) (Sent, error) {
	id, err := rs.db.TxnEventID(ctx, key.user, key.device, key.scope, key.txn)
	if err == nil {
		return Sent{EventID: id}, nil
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return Sent{}, err
	}
	return send()
}
