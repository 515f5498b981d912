package sender

import (
	"context"
	"encoding/json"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/sirupsen/logrus"

	"matrixhs/storage"
)

// worker is the goroutine sending one destination's queue; it exists only
// while the destination has something queued (sleeping through its
// backoff).
type worker struct {
	dest string
	// again: work may have been queued since the worker last looked;
	// reset: the destination was heard from, drop the backoff. Both are
	// guarded by Sender.mu.
	again, reset bool
	// wake cuts a backoff short (ResetBackoff).
	wake chan struct{}
}

// staleEDUTypes are dropped from the queue of a destination that missed
// many events: they describe a moment that has passed.
var staleEDUTypes = []string{"m.typing", "m.presence"}

// outcome is what became of one step of a worker.
type outcome int

const (
	idle     outcome = iota // nothing (more) to send
	progress                // a transaction was answered
	waiting                 // back off until the time step returned
)

func (s *Sender) work(w *worker) {
	defer s.wg.Done()
	for {
		if s.ctx.Err() != nil {
			s.finish(w)
			return
		}
		out, until := s.step(w)
		switch out {
		case idle:
			if s.finish(w) {
				return
			}
		case waiting:
			s.sleep(w, until)
		}
	}
}

// finish retires w unless it was poked since it last looked for work.
func (s *Sender) finish(w *worker) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.again && s.ctx.Err() == nil {
		w.again = false
		return false
	}
	delete(s.workers, w.dest)
	return true
}

func (s *Sender) takeReset(w *worker) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := w.reset
	w.reset = false
	return r
}

// sleep waits until the given time, shutdown or ResetBackoff.
func (s *Sender) sleep(w *worker, until time.Time) {
	d := until.Sub(s.now())
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.ctx.Done():
	case <-t.C:
	case <-w.wake:
	}
}

// step sends the destination's transaction in flight, or starts the next
// one, unless the destination is in backoff.
func (s *Sender) step(w *worker) (outcome, time.Time) {
	ctx := s.ctx
	log := s.log.WithField("destination", w.dest)
	st, err := s.db.FederationDestination(ctx, w.dest)
	if err != nil {
		log.WithError(err).Warn("reading destination state")
		return waiting, s.now().Add(s.opts.InitialBackoff)
	}
	// A destination that was failing may have missed many events, also
	// when it is retried early because it was heard from.
	catchUp := st.Failures > 0
	if s.takeReset(w) && (st.Failures > 0 || st.RetryAt > 0) {
		if err := s.write(func(ctx context.Context, tx *storage.Tx) error { return tx.SetFederationBackoff(ctx, w.dest, 0, 0) }); err != nil {
			log.WithError(err).Warn("resetting destination backoff")
			return waiting, s.now().Add(s.opts.InitialBackoff)
		}
		log.Info("destination was heard from: retrying now")
		st.Failures, st.RetryAt = 0, 0
	}
	now := s.now()
	if st.RetryAt > now.UnixMilli() {
		// The cap also bounds a retry time saved before a clock change.
		until := time.UnixMilli(st.RetryAt)
		if limit := now.Add(s.opts.MaxBackoff); until.After(limit) {
			until = limit
		}
		return waiting, until
	}
	if catchUp {
		s.catchUp(log, w.dest)
	}
	txnID := st.TxnID
	if txnID == "" {
		err := s.write(func(ctx context.Context, tx *storage.Tx) (err error) {
			txnID, err = tx.StartFederationTxn(ctx, w.dest, MaxPDUsPerTxn, MaxEDUsPerTxn, now.UnixMilli())
			return err
		})
		if err != nil {
			log.WithError(err).Warn("starting a transaction")
			return waiting, now.Add(s.opts.InitialBackoff)
		}
		if txnID == "" {
			return idle, time.Time{}
		}
	}
	log = log.WithField("txn_id", txnID)
	items, err := s.db.FederationTxnItems(ctx, w.dest, txnID)
	if err != nil {
		log.WithError(err).Warn("reading a transaction")
		return waiting, now.Add(s.opts.InitialBackoff)
	}
	txn := s.transaction(w.dest, txnID, items)
	if len(txn.PDUs) == 0 && len(txn.EDUs) == 0 {
		// Its events are gone (catch-up dropped them, or a purged room):
		// nothing to send, and nothing learnt of the destination.
		if err := s.write(func(ctx context.Context, tx *storage.Tx) error { return tx.DropFederationTxn(ctx, w.dest, txnID) }); err != nil {
			log.WithError(err).Warn("dropping an empty transaction")
			return waiting, now.Add(s.opts.InitialBackoff)
		}
		return progress, time.Time{}
	}
	resp, err := s.send(txn)
	if err == nil {
		for id, r := range resp.PDUs {
			if r.Error != "" {
				log.WithFields(logrus.Fields{"event_id": id, "error": r.Error}).Warn("destination did not accept an event")
			}
		}
		return s.finishTxn(log, w.dest, txnID, len(txn.PDUs) > 0)
	}
	if s.ctx.Err() != nil {
		return idle, time.Time{} // stopping: the transaction stays queued
	}
	if code, ok := refused(err); ok {
		log.WithError(err).WithFields(logrus.Fields{"status": code, "pdus": len(txn.PDUs), "edus": len(txn.EDUs)}).
			Error("destination refused a transaction: dropping it")
		return s.finishTxn(log, w.dest, txnID, false)
	}
	failures := st.Failures + 1
	retry := now.Add(s.backoff(failures))
	if err := s.write(func(ctx context.Context, tx *storage.Tx) error {
		return tx.RecordFederationFailure(ctx, w.dest, failures, now.UnixMilli(), retry.UnixMilli())
	}); err != nil {
		log.WithError(err).Warn("saving destination backoff")
	}
	log.WithError(err).WithFields(logrus.Fields{"failures": failures, "retry_in": retry.Sub(now).Round(time.Millisecond).String()}).
		Warn("sending a transaction failed: backing off")
	return waiting, retry
}

// finishTxn removes an answered transaction from the queue; delivered
// records its events as taken (for the admin API; false when it had none).
func (s *Sender) finishTxn(log logrus.FieldLogger, dest, txnID string, delivered bool) (outcome, time.Time) {
	err := s.write(func(ctx context.Context, tx *storage.Tx) error {
		if delivered {
			if err := tx.RecordFederationDelivered(ctx, dest, txnID); err != nil {
				return err
			}
		}
		return tx.FinishFederationTxn(ctx, dest, txnID)
	})
	if err != nil {
		log.WithError(err).Warn("removing a sent transaction")
		return waiting, s.now().Add(s.opts.InitialBackoff)
	}
	return progress, time.Time{}
}

// catchUp collapses the queue of a destination coming out of backoff (as
// Synapse does): it gets the newest events of each room, those of the
// transaction it had in flight included, and fetches what came before
// them as it would any gap. Replaying old events instead, or the stale
// ones of the transaction in flight, would make them the newest there:
// other servers of the room may have delivered newer events already.
func (s *Sender) catchUp(log logrus.FieldLogger, dest string) {
	if s.opts.CatchUpThreshold < 0 {
		return
	}
	if s.opts.CatchUpThreshold > 0 {
		n, _, err := s.db.FederationQueueCounts(s.ctx, dest)
		if err != nil {
			log.WithError(err).Warn("counting queued events")
			return
		}
		if n <= s.opts.CatchUpThreshold {
			return
		}
	}
	var removed int64
	err := s.write(func(ctx context.Context, tx *storage.Tx) (err error) {
		removed, err = tx.CollapseFederationQueue(ctx, dest, s.opts.CatchUpPerRoom, staleEDUTypes)
		return err
	})
	if err != nil {
		log.WithError(err).Warn("collapsing the queue")
		return
	}
	if removed > 0 {
		log.WithField("removed", removed).Info("destination missed events: sending the newest of each room")
	}
}

// transaction builds the request for a transaction's rows.
func (s *Sender) transaction(dest, txnID string, items []storage.FederationItem) gomatrixserverlib.Transaction {
	txn := gomatrixserverlib.Transaction{
		TransactionID:  gomatrixserverlib.TransactionID(txnID),
		Origin:         spec.ServerName(s.serverName),
		Destination:    spec.ServerName(dest),
		OriginServerTS: spec.AsTimestamp(s.now()),
		PDUs:           []json.RawMessage{},
	}
	for _, it := range items {
		switch {
		case it.IsEDU:
			txn.EDUs = append(txn.EDUs, gomatrixserverlib.EDU{
				Type: it.EDUType, Origin: s.serverName, Destination: dest, Content: spec.RawJSON(it.EDUContent),
			})
		case it.JSON != nil:
			txn.PDUs = append(txn.PDUs, json.RawMessage(it.JSON))
		}
	}
	return txn
}

// send makes the request, within the bound on requests in flight.
func (s *Sender) send(txn gomatrixserverlib.Transaction) (fclient.RespSend, error) {
	select {
	case s.slots <- struct{}{}:
	case <-s.ctx.Done():
		return fclient.RespSend{}, s.ctx.Err()
	}
	defer func() { <-s.slots }()
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.RequestTimeout)
	defer cancel()
	return s.transport.SendTransaction(ctx, txn)
}
