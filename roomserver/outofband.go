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

// Out-of-band memberships (storage/outofband.go): a local user's invite,
// knock or leave in a room this server is not in. The event cannot be
// checked against the room's state (there is none here), so it is stored
// as an outlier and only the user's membership moves; sync serves the
// stripped state the other server gave.

// StoreOutOfBand stores a local user's membership event of a room this
// server is not in, with the room summary given with it (a JSON array of
// stripped events, nil for none). The caller vouches for the event (it
// checked its signatures, or built it).
func (rs *Roomserver) StoreOutOfBand(ctx context.Context, pdu gomatrixserverlib.PDU, stripped []byte) (Sent, error) {
	sk := pdu.StateKey()
	if pdu.Type() != spec.MRoomMember || sk == nil || !rs.isLocal(*sk) {
		return Sent{}, badRequest("an out-of-band membership is a member event of a local user")
	}
	var stored storage.StoredEvent
	err := rs.db.Write(ctx, func(tx *storage.Tx) error {
		var err error
		stored, err = tx.StoreOutOfBand(ctx, storage.OutOfBandWrite{
			RoomID: pdu.RoomID().String(), RoomVersion: string(pdu.Version()),
			Event: storage.NewEvent{
				EventID: pdu.EventID(), Type: pdu.Type(), StateKey: sk, Sender: string(pdu.SenderID()),
				Depth: pdu.Depth(), OriginTS: int64(pdu.OriginServerTS()), JSON: pdu.JSON(), PrevEvents: pdu.PrevEventIDs(),
			},
			StrippedState: stripped,
			Now:           rs.now().UnixMilli(),
		})
		return err
	})
	if err != nil {
		return Sent{}, fmt.Errorf("storing out-of-band membership %s: %w", pdu.EventID(), err)
	}
	return Sent{EventID: pdu.EventID(), StreamPos: stored.StreamPos}, nil
}

// ReceiveInvite stores an invite of a local user from another server (the
// caller checked the inviting server's signature and added this server's):
// out of band, with the stripped state the inviting server gave. When this
// server is in the room, the invite must also pass the auth rules against
// the room's current state.
func (rs *Roomserver) ReceiveInvite(ctx context.Context, pdu gomatrixserverlib.PDU, stripped []byte) (Sent, error) {
	if m, err := pdu.Membership(); err != nil || m != spec.Invite || pdu.StateKey() == nil || !rs.isLocal(*pdu.StateKey()) {
		return Sent{}, badRequest("not an invite of a user of this server")
	}
	if by, err := rs.db.RoomBlockedBy(ctx, pdu.RoomID().String()); err != nil {
		return Sent{}, err
	} else if by != "" {
		return Sent{}, forbidden("this room has been blocked on this server")
	}
	p, r, err := rs.presence(ctx, pdu.RoomID().String())
	if err != nil {
		return Sent{}, err
	}
	if p.hasState {
		if r.version.Version() != pdu.Version() {
			return Sent{}, badRequest("room %s has version %s, not %s", r.id, r.version.Version(), pdu.Version())
		}
		if p.participating {
			if err := rs.allowedNow(ctx, r, pdu); err != nil {
				return Sent{}, &ForbiddenError{Reason: err.Error()}
			}
		}
	}
	return rs.StoreOutOfBand(ctx, pdu, stripped)
}

// allowedNow checks an event against the room's current state.
func (rs *Roomserver) allowedNow(ctx context.Context, r *room, pdu gomatrixserverlib.PDU) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := rs.currentStateFor(ctx, r, pdu)
	if err != nil {
		return err
	}
	return allowedBy(pdu, st)
}

// leaveOutOfBandLocally makes a local user's leave of a room they were
// invited to (or knocked on) out of band, when no server of the room took
// the rejection: as Synapse, the leave follows the membership event it
// replaces and is authorised by its auth events and itself.
func (rs *Roomserver) leaveOutOfBandLocally(ctx context.Context, oob *storage.OutOfBand, content map[string]any) (Sent, bool, error) {
	info, err := rs.db.EventsByNID(ctx, []int64{oob.EventNID})
	if err != nil || len(info) != 1 {
		return Sent{}, true, fmt.Errorf("loading membership %s: %w", oob.EventID, errors.Join(err, storage.ErrNotFound))
	}
	prev, err := ParseEvent(&info[0])
	if err != nil {
		return Sent{}, true, err
	}
	ver, err := gomatrixserverlib.GetRoomVersion(prev.Version())
	if err != nil {
		return Sent{}, true, ErrUnsupportedVersion
	}
	c := map[string]any{}
	for k, v := range content {
		c[k] = v
	}
	c["membership"] = spec.Leave
	raw, err := json.Marshal(c)
	if err != nil {
		return Sent{}, true, err
	}
	user := *prev.StateKey()
	proto := gomatrixserverlib.ProtoEvent{
		SenderID: user, RoomID: prev.RoomID().String(), Type: spec.MRoomMember, StateKey: &user,
		PrevEvents: []string{prev.EventID()}, AuthEvents: append(append([]string{}, prev.AuthEventIDs()...), prev.EventID()),
		Depth: prev.Depth() + 1, Content: raw,
	}
	pdu, err := ver.NewEventBuilderFromProtoEvent(&proto).Build(rs.now(), rs.origin, rs.keyID, rs.key)
	if err != nil {
		return Sent{}, true, fmt.Errorf("building leave: %w", err)
	}
	sent, err := rs.StoreOutOfBand(ctx, pdu, nil)
	return sent, true, err
}

// rescindsInvite reports whether an event from elsewhere withdraws a local
// user's out-of-band invite: a leave for them sent by whoever invited them
// (Synapse's rule), in a room this server is not in. The event is then
// stored out of band instead of entering the room's DAG.
func (rs *Roomserver) rescindsInvite(ctx context.Context, pdu gomatrixserverlib.PDU) (*storage.OutOfBand, error) {
	sk := pdu.StateKey()
	if pdu.Type() != spec.MRoomMember || sk == nil || !rs.isLocal(*sk) || rs.isLocal(string(pdu.SenderID())) {
		return nil, nil
	}
	if m, err := pdu.Membership(); err != nil || m != spec.Leave {
		return nil, nil
	}
	oob, err := rs.db.CurrentOutOfBand(ctx, pdu.RoomID().String(), *sk)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil || oob.Membership != spec.Invite || oob.Sender != string(pdu.SenderID()) {
		return nil, err
	}
	return oob, nil
}

// inputOutOfBand handles an event of a room whose state this server does
// not hold: an inviter's rescission of a local user's invite is stored
// out of band; anything else is for a room this server is not in.
func (rs *Roomserver) inputOutOfBand(ctx context.Context, in InputEvent) InputResult {
	pdu := in.Event
	res := InputResult{EventID: pdu.EventID()}
	oob, err := rs.rescindsInvite(ctx, pdu)
	if err != nil {
		res.Err = err
		return res
	}
	if oob == nil {
		res.Err = ErrRoomNotFound
		return res
	}
	if err := rs.verifySignatures(ctx, pdu); err != nil {
		res.Err = err
		return res
	}
	sent, err := rs.StoreOutOfBand(ctx, pdu, nil)
	if err != nil {
		res.Err = err
		return res
	}
	res.Status, res.StreamPos = StatusOutlier, sent.StreamPos
	return res
}

// InputRescindedInvite takes an event from another server (as /send
// receives it) for a room this server is not in, when it withdraws a local
// user's out-of-band invite: a leave of that user sent by whoever invited
// them, whose signatures check out, is stored out of band. handled is false
// for any other event, which the caller drops as it drops events of rooms
// this server is not in. (Input itself takes rescissions too; this entry
// point serves callers that do not input events of such rooms.)
func (rs *Roomserver) InputRescindedInvite(ctx context.Context, origin spec.ServerName, raw json.RawMessage) (handled bool, err error) {
	var probe struct {
		RoomID   string  `json:"room_id"`
		Type     string  `json:"type"`
		StateKey *string `json:"state_key"`
		Content  struct {
			Membership string `json:"membership"`
		} `json:"content"`
	}
	if json.Unmarshal(raw, &probe) != nil || probe.Type != spec.MRoomMember || probe.StateKey == nil ||
		!rs.isLocal(*probe.StateKey) || probe.Content.Membership != spec.Leave {
		return false, nil
	}
	info, err := rs.db.Room(ctx, probe.RoomID)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	ver, err := gomatrixserverlib.GetRoomVersion(gomatrixserverlib.RoomVersion(info.Version))
	if err != nil {
		return false, nil
	}
	pdu, err := ver.NewEventFromUntrustedJSON(raw)
	if err != nil {
		return false, nil
	}
	if p, _, err := rs.presence(ctx, probe.RoomID); err != nil || p.participating {
		return false, err
	}
	res := rs.inputOutOfBand(ctx, InputEvent{Kind: KindNew, Event: pdu, Origin: origin})
	if errors.Is(res.Err, ErrRoomNotFound) {
		return false, nil
	}
	return true, res.Err
}
