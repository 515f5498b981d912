package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

// LocalEvent is an event a local user asks to send.
type LocalEvent struct {
	RoomID   string
	Sender   string
	DeviceID string
	Type     string
	StateKey *string
	Content  json.RawMessage
	Redacts  string
	// TxnID makes the send idempotent per device and scope.
	TxnID    string
	TxnScope string
}

// Sent is the outcome of a send.
type Sent struct {
	EventID   string
	StreamPos int64
}

// Send builds, authorises and stores a local event. A repeated transaction
// ID returns the first event's ID.
func (rs *Roomserver) Send(ctx context.Context, ev LocalEvent) (Sent, error) {
	if uid, err := spec.NewUserID(ev.Sender, true); err != nil || uid.Domain() != rs.origin {
		return Sent{}, forbidden("%s is not a user of this server", ev.Sender)
	}
	if ev.TxnID != "" {
		key := txnKey{user: ev.Sender, device: ev.DeviceID, scope: ev.TxnScope, txn: ev.TxnID}
		return rs.sendOnce(ctx, key, func() (Sent, error) { return rs.send(ctx, ev) })
	}
	return rs.send(ctx, ev)
}

// send builds, authorises and stores a local event. Setting state to what
// the same sender already set answers the existing event (as Synapse does).
func (rs *Roomserver) send(ctx context.Context, ev LocalEvent) (Sent, error) {
	if len(ev.Content) == 0 {
		ev.Content = json.RawMessage("{}")
	}
	if ev.Type == spec.MRoomCreate && ev.StateKey != nil {
		return Sent{}, invalidParam("cannot resend the m.room.create event of an existing room")
	}
	r, err := rs.room(ctx, ev.RoomID)
	if err != nil {
		return Sent{}, err
	}
	r.mu.Lock()
	if r.broken.Load() {
		r.mu.Unlock()
		return rs.send(ctx, ev) // reload and retry once the room is fresh
	}
	if ev.StateKey != nil {
		if id, ok := identicalState(r.stateEvent(ev.Type, *ev.StateKey), ev.Sender, ev.Content); ok {
			r.mu.Unlock()
			return Sent{EventID: id}, nil
		}
	}
	if err := rs.checkRedaction(ctx, r, &ev); err != nil {
		r.mu.Unlock()
		return Sent{}, err
	}
	pdu, err := rs.build(r, ev)
	if err != nil {
		r.mu.Unlock()
		return Sent{}, err
	}
	wait, pos := rs.append(ctx, r, pdu, eventMeta{senderDevice: ev.DeviceID, txnID: ev.TxnID, txnScope: ev.TxnScope})
	r.mu.Unlock()
	if err := wait(); err != nil {
		return Sent{}, err
	}
	if pdu.Type() == "m.room.tombstone" && ev.StateKey != nil && *ev.StateKey == "" {
		// The tombstone stands even if the client has gone: finish the upgrade.
		rs.afterTombstone(context.WithoutCancel(ctx), r.id, pdu)
	}
	return Sent{EventID: pdu.EventID(), StreamPos: *pos}, nil
}

// build makes a signed local event on top of the room's head and checks it
// against the auth rules. r.mu must be held.
func (rs *Roomserver) build(r *room, ev LocalEvent) (gomatrixserverlib.PDU, error) {
	return rs.buildAt(r, ev, rs.now())
}

// buildAt is build with the event's origin_server_ts given.
func (rs *Roomserver) buildAt(r *room, ev LocalEvent, ts time.Time) (gomatrixserverlib.PDU, error) {
	if len(ev.Content) == 0 {
		ev.Content = json.RawMessage("{}")
	}
	if err := checkLocalContent(r, ev); err != nil {
		return nil, err
	}
	prev := append([]string{}, r.extremities...)
	if len(prev) > maxPrevEvents {
		prev = prev[len(prev)-maxPrevEvents:]
	}
	proto := gomatrixserverlib.ProtoEvent{
		SenderID:   ev.Sender,
		RoomID:     r.id,
		Type:       ev.Type,
		StateKey:   ev.StateKey,
		Content:    spec.RawJSON(ev.Content),
		Redacts:    ev.Redacts,
		PrevEvents: prev,
		Depth:      r.maxDepth + 1,
	}
	if ev.Type == spec.MRoomCreate && r.version.DomainlessRoomIDs() {
		proto.RoomID = ""
	}
	return rs.buildProto(r, &proto, ts)
}

func (rs *Roomserver) buildProto(r *room, proto *gomatrixserverlib.ProtoEvent, ts time.Time) (gomatrixserverlib.PDU, error) {
	needed, err := gomatrixserverlib.StateNeededForProtoEvent(proto)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	provider, err := r.authProvider(needed)
	if err != nil {
		return nil, err
	}
	builder := r.version.NewEventBuilderFromProtoEvent(proto)
	if err := builder.AddAuthEvents(provider); err != nil {
		return nil, fmt.Errorf("selecting auth events: %w", err)
	}
	pdu, err := builder.Build(ts, rs.origin, rs.keyID, rs.key)
	if tooLarge(err) {
		return nil, fmt.Errorf("%w: %v", ErrEventTooLarge, err)
	}
	if err != nil {
		return nil, badRequest("building event: %v", err)
	}
	if len(pdu.JSON()) > maxEventSize {
		return nil, ErrEventTooLarge
	}
	// The auth rules also need the create event in v12 rooms, where it is
	// not listed in auth_events.
	if create := r.stateEvent(spec.MRoomCreate, ""); create != nil {
		provider.AddEvent(create)
	}
	if err := gomatrixserverlib.Allowed(pdu, provider, userIDForSender); err != nil {
		return nil, &ForbiddenError{Reason: err.Error()}
	}
	return pdu, nil
}

// eventWrite is one event on its way to storage, with everything the
// persist step needs decided while the room lock was held.
type eventWrite struct {
	pdu    gomatrixserverlib.PDU
	meta   eventMeta
	status int
	// extra is unsigned data stored beside the event (prev_content ...).
	extra []byte
	// stateBefore is the state before the event when it is not the room's
	// current state (a fork); nil means the current state.
	stateBefore stateMap
	// newCurrent is the room's state after the event when the event does
	// not simply extend the current state (a fork was resolved); nil means
	// current state plus the event.
	newCurrent  stateMap
	extremities []string
	depth       int64
	// push holds the recipients' notifying push rule outcomes.
	push []storage.PushAction
}

type stateMap = map[gomatrixserverlib.StateKeyTuple]gomatrixserverlib.PDU

// append advances the room head past a local event that extends the
// current state and queues its persistence. r.mu must be held.
func (rs *Roomserver) append(ctx context.Context, r *room, pdu gomatrixserverlib.PDU, meta eventMeta) (wait func() error, pos *int64) {
	return rs.enqueue(ctx, r, rs.advance(ctx, r, pdu, meta))
}

// advance moves the room head (r.mu held) past a local event that extends
// the current state and returns its write, not yet queued.
func (rs *Roomserver) advance(ctx context.Context, r *room, pdu gomatrixserverlib.PDU, meta eventMeta) *eventWrite {
	w := &eventWrite{pdu: pdu, meta: meta, status: storage.EventAccepted}
	if sk := pdu.StateKey(); sk != nil {
		w.extra = replacesState(r.state, pdu)
		r.state[gomatrixserverlib.StateKeyTuple{EventType: pdu.Type(), StateKey: *sk}] = pdu
	}
	r.applyRedactionToState(pdu)
	r.extremities = []string{pdu.EventID()}
	if pdu.Depth() > r.maxDepth {
		r.maxDepth = pdu.Depth()
	}
	w.extremities, w.depth = r.extremities, r.maxDepth
	w.push = rs.pushActions(ctx, r, pdu)
	return w
}

// replacesState is the unsigned data of a state event replacing another.
func replacesState(state stateMap, pdu gomatrixserverlib.PDU) []byte {
	old, ok := state[gomatrixserverlib.StateKeyTuple{EventType: pdu.Type(), StateKey: *pdu.StateKey()}]
	if !ok {
		return nil
	}
	extra, _ := json.Marshal(map[string]any{
		"replaces_state": old.EventID(), "prev_content": json.RawMessage(old.Content()), "prev_sender": string(old.SenderID()),
	})
	return extra
}

// applyRedactionToState makes the auth rules see redacted state redacted.
func (r *room) applyRedactionToState(pdu gomatrixserverlib.PDU) {
	if pdu.Type() != spec.MRoomRedaction || pdu.Redacts() == "" {
		return
	}
	for tuple, st := range r.state {
		if st.EventID() == pdu.Redacts() {
			if red, err := redactPDU(r.version, st); err == nil {
				r.state[tuple] = red
			}
		}
	}
}

// enqueue queues w for storage in room order; the returned wait reports
// the outcome and evicts the room's in-memory head when the write failed.
func (rs *Roomserver) enqueue(ctx context.Context, r *room, w *eventWrite) (wait func() error, pos *int64) {
	out := new(int64)
	// Once the room head has moved past the event, its write must happen
	// even if the requester goes away: a cancelled write would fail every
	// later queued write of the room.
	ctx = context.WithoutCancel(ctx)
	committed := rs.db.Enqueue(ctx, func(tx *storage.Tx) error {
		if r.broken.Load() {
			return errors.New("room state is being reloaded after a failed write; retry")
		}
		tx.OnAbort(func() { rs.evict(r) })
		p, err := rs.persist(ctx, tx, r, w)
		*out = p
		return err
	})
	var once sync.Once
	var result error
	wait = func() error {
		once.Do(func() {
			result = committed()
			if result != nil {
				rs.evict(r)
			}
		})
		return result
	}
	r.pending = wait
	return wait, out
}

// persist writes one event, its state and the room head. It runs on the
// storage writer goroutine, in the order events were enqueued.
func (rs *Roomserver) persist(ctx context.Context, tx *storage.Tx, r *room, w *eventWrite) (int64, error) {
	pdu := w.pdu
	if r.nid == 0 {
		// The create event of a new room brings the room row.
		nid, err := tx.InsertRoom(ctx, r.id, string(r.version.Version()), rs.now().UnixMilli())
		if err != nil {
			return 0, err
		}
		r.nid = nid
	}
	stateBefore := r.snapshot
	if w.stateBefore != nil {
		nids, err := stateNIDs(ctx, tx, w.stateBefore, "", 0)
		if err != nil {
			return 0, err
		}
		if stateBefore, err = tx.InsertSnapshot(ctx, r.nid, 0, 0, nids); err != nil {
			return 0, err
		}
	}
	if w.status == storage.EventOutlier || w.status == storage.EventRejected {
		stateBefore = 0
	}
	relTarget, relType := relation(pdu.Content())
	nid, pos, err := tx.InsertEvent(ctx, storage.NewEvent{
		RoomNID: r.nid, EventID: pdu.EventID(), Type: pdu.Type(), StateKey: pdu.StateKey(), Sender: string(pdu.SenderID()),
		Depth: pdu.Depth(), OriginTS: int64(pdu.OriginServerTS()), StateBefore: stateBefore, Status: w.status,
		RelatesTo: relTarget, RelType: relType, SenderDevice: w.meta.senderDevice, TxnID: w.meta.txnID,
		UnsignedExtra: w.extra, JSON: pdu.JSON(), PrevEvents: pdu.PrevEventIDs(),
	})
	if err != nil {
		return 0, err
	}
	if w.status != storage.EventAccepted {
		return 0, nil
	}
	// Search index: message/name/topic text in, a redaction's target out.
	if err := tx.IndexEventText(ctx, nid, r.nid, pdu.Type(), pdu.Content(), pdu.Redacts()); err != nil {
		return 0, err
	}
	if len(w.push) > 0 {
		if err := tx.InsertPushActions(ctx, r.nid, nid, pos, w.push); err != nil {
			return 0, err
		}
	}
	if w.newCurrent != nil {
		if err := rs.replaceCurrentState(ctx, tx, r, w.newCurrent, pdu.EventID(), nid, pos); err != nil {
			return 0, err
		}
	} else if sk := pdu.StateKey(); sk != nil {
		key := storage.StateKey{Type: pdu.Type(), StateKey: *sk}
		if r.nids == nil {
			r.nids = map[storage.StateKey]int64{}
		}
		r.nids[key] = nid
		entries, parent, chain := map[storage.StateKey]int64{key: nid}, r.snapshot, r.chainLen+1
		if r.snapshot == 0 || r.chainLen >= maxChainLen {
			entries, parent, chain = r.nids, 0, 0
		}
		snap, err := tx.InsertSnapshot(ctx, r.nid, parent, chain, entries)
		if err != nil {
			return 0, err
		}
		r.snapshot, r.chainLen = snap, chain
		if err := tx.SetCurrentState(ctx, r.nid, key, nid, membershipOf(pdu), pos); err != nil {
			return 0, err
		}
		// Others' delayed events (MSC4140) for this state are void now.
		if err := tx.CancelDelayedStateEvents(ctx, r.id, key.Type, key.StateKey, string(pdu.SenderID())); err != nil {
			return 0, err
		}
	}
	if err := tx.UpdateRoomHead(ctx, r.nid, r.snapshot, w.extremities, w.depth); err != nil {
		return 0, err
	}
	if w.meta.txnID != "" {
		if err := tx.InsertTxnID(ctx, string(pdu.SenderID()), w.meta.senderDevice, w.meta.txnScope, w.meta.txnID, pdu.EventID()); err != nil {
			return 0, err
		}
	}
	if pdu.Type() == spec.MRoomRedaction && pdu.Redacts() != "" {
		if err := rs.applyRedaction(ctx, tx, r, pdu); err != nil {
			return 0, err
		}
	}
	return pos, nil
}

func membershipOf(pdu gomatrixserverlib.PDU) string {
	if pdu.Type() != spec.MRoomMember {
		return ""
	}
	m, _ := pdu.Membership()
	return m
}

// stateNIDs maps a state map to event NIDs; selfID/selfNID name an event
// inserted in this same write.
func stateNIDs(ctx context.Context, tx *storage.Tx, state stateMap, selfID string, selfNID int64) (map[storage.StateKey]int64, error) {
	ids := make([]string, 0, len(state))
	for _, ev := range state {
		if ev.EventID() != selfID {
			ids = append(ids, ev.EventID())
		}
	}
	found, err := tx.EventNIDs(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[storage.StateKey]int64, len(state))
	for t, ev := range state {
		nid, ok := found[ev.EventID()]
		if ev.EventID() == selfID {
			nid, ok = selfNID, true
		}
		if !ok {
			return nil, fmt.Errorf("state event %s is not stored", ev.EventID())
		}
		out[storage.StateKey{Type: t.EventType, StateKey: t.StateKey}] = nid
	}
	return out, nil
}

// replaceCurrentState stores a resolved current state as a full snapshot
// and brings current_state in line with it.
func (rs *Roomserver) replaceCurrentState(ctx context.Context, tx *storage.Tx, r *room, state stateMap, selfID string, selfNID, pos int64) error {
	nids, err := stateNIDs(ctx, tx, state, selfID, selfNID)
	if err != nil {
		return err
	}
	snap, err := tx.InsertSnapshot(ctx, r.nid, 0, 0, nids)
	if err != nil {
		return err
	}
	for key, nid := range nids {
		if r.nids[key] == nid {
			continue
		}
		ev := state[gomatrixserverlib.StateKeyTuple{EventType: key.Type, StateKey: key.StateKey}]
		if err := tx.SetCurrentState(ctx, r.nid, key, nid, membershipOf(ev), pos); err != nil {
			return err
		}
	}
	for key := range r.nids {
		if _, ok := nids[key]; !ok {
			if err := tx.DeleteCurrentState(ctx, r.nid, key); err != nil {
				return err
			}
		}
	}
	r.nids, r.snapshot, r.chainLen = nids, snap, 0
	return nil
}

// applyRedaction strips the target event of a redaction in the same room.
func (rs *Roomserver) applyRedaction(ctx context.Context, tx *storage.Tx, r *room, redaction gomatrixserverlib.PDU) error {
	target, err := tx.EventByID(ctx, redaction.Redacts())
	if errors.Is(err, storage.ErrNotFound) {
		return nil // may arrive later; nothing to strip now
	}
	if err != nil {
		return err
	}
	if target.RoomNID != r.nid || target.RedactedBy != "" {
		return nil
	}
	redacted, err := r.version.RedactEventJSON(target.JSON)
	if err != nil {
		return fmt.Errorf("redacting %s: %w", target.EventID, err)
	}
	return tx.RedactEvent(ctx, target.NID, redaction.EventID(), redacted)
}

func redactPDU(ver gomatrixserverlib.IRoomVersion, pdu gomatrixserverlib.PDU) (gomatrixserverlib.PDU, error) {
	redacted, err := ver.RedactEventJSON(pdu.JSON())
	if err != nil {
		return nil, err
	}
	return ver.NewEventFromTrustedJSONWithEventID(pdu.EventID(), redacted, true)
}

// checkRedaction enforces who may redact what: the auth rules only check the
// redact power level, and leave "own events" to the server.
func (rs *Roomserver) checkRedaction(ctx context.Context, r *room, ev *LocalEvent) error {
	if ev.Type != spec.MRoomRedaction {
		return nil
	}
	if ev.Redacts == "" {
		return badRequest("redaction without a target")
	}
	target, err := rs.db.EventByID(ctx, ev.Redacts)
	if errors.Is(err, storage.ErrNotFound) {
		return nil // unknown target: the redaction is stored and applies if the event arrives
	}
	if err != nil {
		return err
	}
	if target.RoomID != r.id {
		return badRequest("event %s is not in this room", ev.Redacts)
	}
	if target.Sender == ev.Sender {
		return nil
	}
	pl, err := powerLevels(r)
	if err != nil {
		return err
	}
	if pl.UserLevel(spec.SenderID(ev.Sender)) < pl.Redact && !isCreator(r, ev.Sender) {
		return forbidden("you may only redact your own events")
	}
	return nil
}

// powerLevels returns the room's power levels (defaults when unset).
func powerLevels(r *room) (*gomatrixserverlib.PowerLevelContent, error) {
	if ev := r.stateEvent(spec.MRoomPowerLevels, ""); ev != nil {
		pl, err := gomatrixserverlib.NewPowerLevelContentFromEvent(ev)
		return &pl, err
	}
	pl := gomatrixserverlib.PowerLevelContent{}
	pl.Defaults()
	if create := r.stateEvent(spec.MRoomCreate, ""); create != nil {
		pl.Users = map[string]int64{string(create.SenderID()): 100}
	}
	return &pl, nil
}

// isCreator reports whether a user is a creator of a room whose version
// gives creators unlimited power (v12).
func isCreator(r *room, userID string) bool {
	if !r.version.PrivilegedCreators() {
		return false
	}
	create := r.stateEvent(spec.MRoomCreate, "")
	if create == nil {
		return false
	}
	if string(create.SenderID()) == userID {
		return true
	}
	var c struct {
		AdditionalCreators []string `json:"additional_creators"`
	}
	json.Unmarshal(create.Content(), &c)
	for _, u := range c.AdditionalCreators {
		if u == userID {
			return true
		}
	}
	return false
}
