package roomserver

import (
	"context"
	"errors"
	"sync"

	"github.com/matrix-org/gomatrixserverlib"

	"matrixhs/storage"
)

// eventWrite is one event on its way to storage, with everything the
// persist step needs decided while the room lock was held.
type eventWrite struct {
	pdu       gomatrixserverlib.PDU
	meta      eventMeta
	placement storage.Placement
	// extra is unsigned data stored beside the event (prev_content ...).
	extra []byte
	// stateBefore is the state before the event when it is not the room's
	// current state (a fork, backfill, a trusted state); nil means the
	// current state.
	stateBefore stateMap
	// base, when not nil, says how stateBefore derives from a stored
	// snapshot: it is stored as that snapshot or a delta over it.
	base *stateBase
	// extends is set for a state event that simply extends the current
	// state; resolved is the room's new current state after a fork.
	extends  bool
	resolved stateMap
	head     *storage.RoomHead
	// push holds the recipients' notifying push rule outcomes.
	push []storage.PushAction
	// redacts is a redaction's target, to strip once stored (the policy was
	// checked already); pendingRedactions are redactions stored earlier that
	// this event's arrival lets apply.
	redacts           string
	pendingRedactions []gomatrixserverlib.PDU
	// promote turns an outlier already stored into this placement.
	promote bool
	// sentByResident: a local user's join from send_join, which the
	// resident server sends on (never this server's federation sender).
	sentByResident bool
	// gap: a timeline event whose prev events are not all in the timeline.
	gap bool

	stored storage.StoredEvent // filled in by persist
}

// enqueue queues w for storage in room order (r.mu held); the returned wait
// reports the outcome and evicts the room's head when the write failed.
func (rs *Roomserver) enqueue(ctx context.Context, r *room, w *eventWrite) (wait func() error) {
	// Once the room head has moved past the event, its write must happen
	// even if the requester goes away: a cancelled write would fail every
	// later queued write of the room.
	ctx = context.WithoutCancel(ctx)
	r.queued.Add(1)
	if w.placement != storage.Rejected {
		r.pin(w.pdu)
	}
	committed := rs.db.Enqueue(ctx, func(tx *storage.Tx) error {
		if r.broken.Load() {
			return errors.New("room state is being reloaded after a failed write; retry")
		}
		tx.OnAbort(func() { rs.evict(r) })
		tx.OnCommit(func() {
			if len(w.pendingRedactions) == 0 { // else it is stored redacted: read it back when needed
				rs.events.Add(w.pdu.EventID(), cachedEvent{pdu: w.pdu, status: EventStatus(w.placement.Status())})
			}
			r.unpin(w.pdu.EventID())
			if w.redacts != "" {
				rs.events.Remove(w.redacts, nil)
				r.unpin(w.redacts)
			}
			r.queued.Add(-1)
		})
		return rs.persist(ctx, tx, r, w)
	})
	var once sync.Once
	var result error
	wait = func() error {
		once.Do(func() {
			result = committed()
			if result != nil {
				rs.evict(r)
				r.queued.Add(-1)
			}
		})
		return result
	}
	r.pending = wait
	return wait
}

// persist writes one event with its state and the room head. It runs on the
// storage writer goroutine, in the order events were enqueued.
func (rs *Roomserver) persist(ctx context.Context, tx *storage.Tx, r *room, w *eventWrite) error {
	pdu := w.pdu
	if r.nid.Load() == 0 {
		// The create event of a new room brings the room row (or takes
		// over the one out-of-band memberships made).
		nid, err := tx.AdoptRoom(ctx, r.id, string(r.version.Version()), rs.now().UnixMilli())
		if err != nil {
			return err
		}
		r.nid.Store(nid)
	}
	relTarget, relType := relation(pdu.Content())
	ew := storage.EventWrite{
		Event: storage.NewEvent{
			RoomNID: r.nid.Load(), EventID: pdu.EventID(), Type: pdu.Type(), StateKey: pdu.StateKey(), Sender: string(pdu.SenderID()),
			Depth: pdu.Depth(), OriginTS: int64(pdu.OriginServerTS()), RelatesTo: relTarget, RelType: relType,
			SenderDevice: w.meta.senderDevice, TxnID: w.meta.txnID, UnsignedExtra: w.extra, JSON: pdu.JSON(),
			PrevEvents: pdu.PrevEventIDs(), Redacts: pdu.Redacts(), SentByResident: w.sentByResident,
		},
		Placement: w.placement,
		RoomID:    r.id,
		Extends:   w.extends,
		Head:      w.head,
		Push:      w.push,
		Promote:   w.promote,
		Gap:       w.gap,
	}
	switch {
	case w.stateBefore != nil && w.base != nil:
		ew.StateBefore, ew.StateBeforeDelta = w.base.stored()
		if ew.StateBefore == 0 { // the state before a create event: nothing to build on
			ew.StateBefore, ew.StateBeforeDelta, ew.StateBeforeIDs = 0, nil, stateIDs(w.stateBefore)
		}
	case w.stateBefore != nil:
		ew.StateBeforeIDs = stateIDs(w.stateBefore)
	}
	if w.resolved != nil {
		ew.Resolved = stateIDs(w.resolved)
	}
	if w.meta.txnID != "" {
		ew.Txn = &storage.TxnRecord{UserID: string(pdu.SenderID()), DeviceID: w.meta.senderDevice, Scope: w.meta.txnScope, TxnID: w.meta.txnID}
	}
	stored, err := tx.StoreEvent(ctx, ew)
	if err != nil {
		return err
	}
	w.stored = stored
	if w.redacts != "" {
		if err := rs.applyRedaction(ctx, tx, r, pdu.EventID(), w.redacts); err != nil {
			return err
		}
	}
	for _, red := range w.pendingRedactions {
		if err := rs.applyRedaction(ctx, tx, r, red.EventID(), pdu.EventID()); err != nil {
			return err
		}
	}
	return nil
}

func stateIDs(state stateMap) map[storage.StateKey]string {
	out := make(map[storage.StateKey]string, len(state))
	for t, ev := range state {
		out[storage.StateKey{Type: t.EventType, StateKey: t.StateKey}] = ev.EventID()
	}
	return out
}

// applyRedaction strips the target of a redaction in the same room, once.
func (rs *Roomserver) applyRedaction(ctx context.Context, tx *storage.Tx, r *room, redactionID, targetID string) error {
	target, err := tx.EventByID(ctx, targetID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil // may arrive later: applied then
	}
	if err != nil {
		return err
	}
	if target.RoomNID != r.nid.Load() || target.RedactedBy != "" {
		return nil
	}
	redacted, err := r.version.RedactEventJSON(target.JSON)
	if err != nil {
		return err
	}
	return tx.RedactEvent(ctx, target.NID, redactionID, redacted)
}

func redactPDU(ver gomatrixserverlib.IRoomVersion, pdu gomatrixserverlib.PDU) (gomatrixserverlib.PDU, error) {
	redacted, err := ver.RedactEventJSON(pdu.JSON())
	if err != nil {
		return nil, err
	}
	return ver.NewEventFromTrustedJSONWithEventID(pdu.EventID(), redacted, true)
}
