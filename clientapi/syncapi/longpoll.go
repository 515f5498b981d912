package syncapi

import (
	"context"
	"time"
)

// longPoll runs pass over the committed stream position and ephemeral
// version until it reports something to answer with, the timeout passes, the
// server stops or the client goes away. Between passes it waits for a change
// that concerns the user or one of their rooms (the notifier), so commits in
// other rooms cost it nothing. Each pass reads in one read transaction.
func (a *API) longPoll(ctx context.Context, userID string, timeout time.Duration, pass func(ctx context.Context, upTo, eph int64) (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for final := false; ; {
		// Take the notifier's sequence before reading, so a change in
		// between still wakes us.
		seq := a.notify.Seq()
		upTo, eph := a.db.StreamPosition(), a.eph.Version()
		snap, release, err := a.db.ReadTx(ctx)
		if err != nil {
			return err
		}
		done, err := pass(snap, upTo, eph)
		var rooms []int64
		if err == nil && !done && !final {
			rooms, err = a.db.ListeningRooms(snap, userID)
		}
		release()
		if err != nil || done || final {
			return err
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return nil
		}
		woken, stop := a.notify.Listen(userID, rooms, seq)
		timer := time.NewTimer(wait)
		select {
		case <-woken:
		case <-timer.C:
			// Nothing for this user; one last pass answers with a token as
			// of now if the stream moved on (clients that wait for a new
			// next_batch, as matrix-nio does, are not kept waiting).
			final = a.db.StreamPosition() != upTo || a.eph.Version() != eph
			if !final {
				stop()
				return nil
			}
		case <-a.stopping:
			// Shutting down: answer now so the graceful stop is quick.
			stop()
			timer.Stop()
			return nil
		case <-ctx.Done():
			stop()
			timer.Stop()
			return ctx.Err()
		}
		stop()
		timer.Stop()
	}
}
