package roomserver

import (
	"context"

	"matrixhs/storage"
)

// TrimExtremities drops all forward extremities of a room but the deepest
// (Synapse's admin remedy for a room slowed by too many of them): the
// room's next event names only that one as its prev event. It returns how
// many it dropped.
func (rs *Roomserver) TrimExtremities(ctx context.Context, roomID string) (int, error) {
	r, err := rs.room(ctx, roomID)
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	if r.broken.Load() {
		r.mu.Unlock()
		return rs.TrimExtremities(ctx, roomID)
	}
	if len(r.extremities) <= 1 {
		r.mu.Unlock()
		return 0, nil
	}
	keep, keepDepth := "", int64(-1)
	for _, id := range r.extremities {
		pdu, err := rs.loadEvent(ctx, r, id)
		if err != nil {
			r.mu.Unlock()
			return 0, err
		}
		if pdu.Depth() > keepDepth {
			keep, keepDepth = id, pdu.Depth()
		}
	}
	dropped := len(r.extremities) - 1
	nid := r.nid.Load()
	// Queued behind the room's pending writes, so they cannot overwrite it.
	wait := rs.db.Enqueue(context.WithoutCancel(ctx), func(tx *storage.Tx) error {
		return tx.SetForwardExtremities(ctx, nid, []string{keep})
	})
	r.extremities = []string{keep}
	r.mu.Unlock()
	if err := wait(); err != nil {
		rs.evict(r)
		return 0, err
	}
	return dropped, nil
}
