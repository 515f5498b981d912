package roomserver

import (
	"context"
	"encoding/json"
	"fmt"
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
	// OriginTS is the event's origin_server_ts (zero: now). Only
	// appservices may choose it (timestamp massaging, the ts parameter).
	OriginTS time.Time
}

// Sent is the outcome of a send.
type Sent struct {
	EventID   string
	StreamPos int64
}

// Send builds, authorises and stores a local event. A repeated transaction
// ID returns the first event's ID, also when both requests arrive together.
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
		current, err := rs.stateEvent(ctx, r, ev.Type, *ev.StateKey)
		if err != nil {
			r.mu.Unlock()
			return Sent{}, err
		}
		if id, ok := identicalState(current, ev.Sender, ev.Content); ok {
			r.mu.Unlock()
			return Sent{EventID: id}, nil
		}
	}
	if err := rs.checkLocalRedaction(ctx, r, &ev); err != nil {
		r.mu.Unlock()
		return Sent{}, err
	}
	ts := ev.OriginTS
	if ts.IsZero() {
		ts = rs.now()
	}
	pdu, err := rs.buildAt(ctx, r, ev, ts)
	if err != nil {
		r.mu.Unlock()
		return Sent{}, err
	}
	w, err := rs.advance(ctx, r, pdu, eventMeta{senderDevice: ev.DeviceID, txnID: ev.TxnID, txnScope: ev.TxnScope})
	if err != nil {
		r.mu.Unlock()
		return Sent{}, err
	}
	wait := rs.enqueue(ctx, r, w)
	r.mu.Unlock()
	if err := wait(); err != nil {
		return Sent{}, err
	}
	if pdu.Type() == "m.room.tombstone" && ev.StateKey != nil && *ev.StateKey == "" {
		// The tombstone stands even if the client has gone: finish the upgrade.
		rs.afterTombstone(context.WithoutCancel(ctx), r.id, pdu)
	}
	return Sent{EventID: pdu.EventID(), StreamPos: w.stored.StreamPos}, nil
}

// build makes a signed local event on top of the room's head and checks it
// against the auth rules. r.mu must be held.
func (rs *Roomserver) build(ctx context.Context, r *room, ev LocalEvent) (gomatrixserverlib.PDU, error) {
	return rs.buildAt(ctx, r, ev, rs.now())
}

// buildAt is build with the event's origin_server_ts given.
func (rs *Roomserver) buildAt(ctx context.Context, r *room, ev LocalEvent, ts time.Time) (gomatrixserverlib.PDU, error) {
	if len(ev.Content) == 0 {
		ev.Content = json.RawMessage("{}")
	}
	if err := rs.checkLocalContent(ctx, r, ev); err != nil {
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
	return rs.buildProto(ctx, r, &proto, ts)
}

func (rs *Roomserver) buildProto(ctx context.Context, r *room, proto *gomatrixserverlib.ProtoEvent, ts time.Time) (gomatrixserverlib.PDU, error) {
	needed, err := gomatrixserverlib.StateNeededForProtoEvent(proto)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	provider, err := rs.authEvents(ctx, r, needed)
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
	if err := gomatrixserverlib.Allowed(pdu, provider, userIDForSender); err != nil {
		return nil, &ForbiddenError{Reason: err.Error()}
	}
	return pdu, nil
}

// advance moves the room head (r.mu held) past a local event that extends
// the current state and returns its write, not yet queued.
func (rs *Roomserver) advance(ctx context.Context, r *room, pdu gomatrixserverlib.PDU, meta eventMeta) (*eventWrite, error) {
	w := &eventWrite{pdu: pdu, meta: meta, placement: storage.Timeline, extends: true}
	if sk := pdu.StateKey(); sk != nil {
		extra, err := rs.replacesState(ctx, r, pdu)
		if err != nil {
			return nil, err
		}
		w.extra = extra
	}
	if err := rs.redactInHead(ctx, r, pdu, w); err != nil {
		return nil, err
	}
	// Until its write is in, later events built on the head (createRoom
	// builds all of its events first) find this one pinned.
	r.pin(pdu)
	rs.applyToHead(r, pdu)
	r.extremities = []string{pdu.EventID()}
	if pdu.Depth() > r.maxDepth {
		r.maxDepth = pdu.Depth()
	}
	w.head = &storage.RoomHead{Extremities: r.extremities, MaxDepth: r.maxDepth}
	push, err := rs.pushActions(ctx, r, pdu)
	if err != nil {
		return nil, err
	}
	w.push = push
	return w, nil
}

// replacesState is the unsigned data of a state event replacing another in
// the room's current state (r.mu held).
func (rs *Roomserver) replacesState(ctx context.Context, r *room, pdu gomatrixserverlib.PDU) ([]byte, error) {
	old, err := rs.stateEvent(ctx, r, pdu.Type(), *pdu.StateKey())
	if err != nil || old == nil {
		return nil, err
	}
	return replacesStateOf(old), nil
}

func replacesStateOf(old gomatrixserverlib.PDU) []byte {
	extra, _ := json.Marshal(map[string]any{
		"replaces_state": old.EventID(), "prev_content": json.RawMessage(old.Content()), "prev_sender": string(old.SenderID()),
	})
	return extra
}
