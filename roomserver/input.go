package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

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
	if ev.TxnID != "" {
		id, err := rs.db.TxnEventID(ctx, ev.Sender, ev.DeviceID, ev.TxnScope, ev.TxnID)
		if err == nil {
			return Sent{EventID: id}, nil
		}
		if !errors.Is(err, storage.ErrNotFound) {
			return Sent{}, err
		}
	}
	r, err := rs.room(ctx, ev.RoomID)
	if err != nil {
		return Sent{}, err
	}
	r.mu.Lock()
	if r.broken.Load() {
		r.mu.Unlock()
		return rs.Send(ctx, ev) // reload and retry once the room is fresh
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
	return Sent{EventID: pdu.EventID(), StreamPos: *pos}, nil
}

// build makes a signed local event on top of the room's head and checks it
// against the auth rules. r.mu must be held.
func (rs *Roomserver) build(r *room, ev LocalEvent) (gomatrixserverlib.PDU, error) {
	if len(ev.Content) == 0 {
		ev.Content = json.RawMessage("{}")
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
	return rs.buildProto(r, &proto)
}

func (rs *Roomserver) buildProto(r *room, proto *gomatrixserverlib.ProtoEvent) (gomatrixserverlib.PDU, error) {
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
	pdu, err := builder.Build(rs.now(), rs.origin, rs.keyID, rs.key)
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

// append advances the room head past pdu and queues its persistence in
// order. r.mu must be held; the caller waits (after unlocking) with wait.
func (rs *Roomserver) append(ctx context.Context, r *room, pdu gomatrixserverlib.PDU, meta eventMeta) (wait func() error, pos *int64) {
	var extra []byte
	if sk := pdu.StateKey(); sk != nil {
		tuple := gomatrixserverlib.StateKeyTuple{EventType: pdu.Type(), StateKey: *sk}
		if old, ok := r.state[tuple]; ok {
			extra, _ = json.Marshal(map[string]any{
				"replaces_state": old.EventID(), "prev_content": json.RawMessage(old.Content()), "prev_sender": string(old.SenderID()),
			})
		}
		r.state[tuple] = pdu
	}
	if pdu.Type() == spec.MRoomRedaction && pdu.Redacts() != "" {
		// Redacted state must be seen redacted by the auth rules from now on.
		for tuple, st := range r.state {
			if st.EventID() == pdu.Redacts() {
				if red, err := redactPDU(r.version, st); err == nil {
					r.state[tuple] = red
				}
			}
		}
	}
	r.extremities = []string{pdu.EventID()}
	if pdu.Depth() > r.maxDepth {
		r.maxDepth = pdu.Depth()
	}
	depth := r.maxDepth
	extremities := r.extremities
	out := new(int64)
	committed := rs.db.Enqueue(context.WithoutCancel(ctx), func(tx *storage.Tx) error {
		if r.broken.Load() {
			return errors.New("room state is being reloaded after a failed write; retry")
		}
		tx.OnAbort(func() { rs.evict(r) })
		p, err := rs.persist(ctx, tx, r, pdu, meta, extra, extremities, depth)
		*out = p
		return err
	})
	return func() error {
		err := committed()
		if err != nil {
			rs.evict(r)
		}
		return err
	}, out
}

// persist writes one accepted event, its state and the room head. It runs
// on the storage writer goroutine.
func (rs *Roomserver) persist(ctx context.Context, tx *storage.Tx, r *room, pdu gomatrixserverlib.PDU, meta eventMeta,
	extra []byte, extremities []string, depth int64) (int64, error) {
	if r.nid == 0 {
		// The create event of a new room brings the room row.
		nid, err := tx.InsertRoom(ctx, r.id, string(r.version.Version()), rs.now().UnixMilli())
		if err != nil {
			return 0, err
		}
		r.nid = nid
	}
	relTarget, relType := relation(pdu.Content())
	nid, pos, err := tx.InsertEvent(ctx, storage.NewEvent{
		RoomNID: r.nid, EventID: pdu.EventID(), Type: pdu.Type(), StateKey: pdu.StateKey(), Sender: string(pdu.SenderID()),
		Depth: pdu.Depth(), OriginTS: int64(pdu.OriginServerTS()), StateBefore: r.snapshot, Status: storage.EventAccepted,
		RelatesTo: relTarget, RelType: relType, SenderDevice: meta.senderDevice, TxnID: meta.txnID,
		UnsignedExtra: extra, JSON: pdu.JSON(), PrevEvents: pdu.PrevEventIDs(),
	})
	if err != nil {
		return 0, err
	}
	if sk := pdu.StateKey(); sk != nil {
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
		membership := ""
		if pdu.Type() == spec.MRoomMember {
			membership, _ = pdu.Membership()
		}
		if err := tx.SetCurrentState(ctx, r.nid, key, nid, membership, pos); err != nil {
			return 0, err
		}
	}
	if err := tx.UpdateRoomHead(ctx, r.nid, r.snapshot, extremities, depth); err != nil {
		return 0, err
	}
	if meta.txnID != "" {
		if err := tx.InsertTxnID(ctx, string(pdu.SenderID()), meta.senderDevice, meta.txnScope, meta.txnID, pdu.EventID()); err != nil {
			return 0, err
		}
	}
	if pdu.Type() == spec.MRoomRedaction && pdu.Redacts() != "" {
		if err := rs.applyRedaction(ctx, tx, r, pdu); err != nil {
			return 0, err
		}
	}
	tx.OnCommit(func() { rs.Notifier.Notify(pos) })
	return pos, nil
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
