package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

// Membership changes of users of other servers, which this server serves
// as a resident of the room (make_join/send_join, make_leave/send_leave,
// make_knock/send_knock), and what a remote join brings here
// (InputRemoteJoin).

// ErrNotInRoom: no member of this server is joined to the room, so its view
// of the room may be stale (the make_* endpoints answer 404).
var ErrNotInRoom = errors.New("this server is not in the room")

// ErrUnableToAuthorise: a restricted join this server cannot authorise (it
// is not in every allowed room, or none of its users may invite):
// M_UNABLE_TO_AUTHORISE_JOIN, so the joining server tries another.
var ErrUnableToAuthorise = errors.New("this server cannot authorise the join")

// RoomVersion is a room's version (ErrRoomNotFound when unknown).
func (rs *Roomserver) RoomVersion(ctx context.Context, roomID string) (gomatrixserverlib.IRoomVersion, error) {
	r, err := rs.room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	return r.version, nil
}

// participatingRoom is the room's head when a local user is joined to it.
func (rs *Roomserver) participatingRoom(ctx context.Context, roomID string) (*room, error) {
	p, r, err := rs.presence(ctx, roomID)
	if err != nil {
		return nil, err
	}
	if !p.known {
		return nil, ErrRoomNotFound
	}
	if !p.participating {
		return nil, ErrNotInRoom
	}
	return r, nil
}

// MembershipTemplate builds the member event a user of another server
// would send to change their own membership (make_join, make_leave,
// make_knock): on the room's head, with its auth events, unsigned. It must
// pass the auth rules against the current state; restricted joins name a
// local user who may invite (join_authorised_via_users_server).
func (rs *Roomserver) MembershipTemplate(ctx context.Context, roomID, userID, membership string) (json.RawMessage, gomatrixserverlib.IRoomVersion, error) {
	var proto gomatrixserverlib.ProtoEvent
	r, err := rs.participatingRoom(ctx, roomID)
	if err != nil {
		return nil, nil, err
	}
	if err := checkRemoteLeave(r, userID, membership); err != nil {
		return nil, nil, err
	}
	content := map[string]any{"membership": membership}
	if membership == spec.Join {
		via, err := rs.remoteJoinAuthoriser(ctx, r, userID)
		if err != nil {
			return nil, nil, err
		}
		if via != "" {
			content["join_authorised_via_users_server"] = via
		}
	}
	raw, err := json.Marshal(content)
	if err != nil {
		return nil, nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	prev := append([]string{}, r.extremities...)
	if len(prev) > maxPrevEvents {
		prev = prev[len(prev)-maxPrevEvents:]
	}
	user := userID
	proto = gomatrixserverlib.ProtoEvent{
		SenderID: userID, RoomID: r.id, Type: spec.MRoomMember, StateKey: &user, Content: raw,
		PrevEvents: prev, Depth: r.maxDepth + 1,
	}
	needed, err := gomatrixserverlib.StateNeededForProtoEvent(&proto)
	if err != nil {
		return nil, nil, badRequest("%v", err)
	}
	provider, err := rs.authEvents(ctx, r, needed)
	if err != nil {
		return nil, nil, err
	}
	builder := r.version.NewEventBuilderFromProtoEvent(&proto)
	if err := builder.AddAuthEvents(provider); err != nil {
		return nil, nil, fmt.Errorf("selecting auth events: %w", err)
	}
	proto.AuthEvents = builder.AuthEvents
	// A trial build (signed by us, which the auth rules do not look at)
	// tells whether the change would be allowed now.
	trial, err := builder.Build(rs.now(), rs.origin, rs.keyID, rs.key)
	if err != nil {
		return nil, nil, badRequest("building event: %v", err)
	}
	if err := gomatrixserverlib.Allowed(trial, provider, userIDForSender); err != nil {
		return nil, nil, &ForbiddenError{Reason: err.Error()}
	}
	template, err := templateOf(trial)
	return template, r.version, err
}

// templateOf is a built event without what its sender's server adds (the
// hashes, signatures, timestamp and, for v1/v2 rooms, the event ID): the
// trial build gives prev_events and auth_events the format of the room's
// version.
func templateOf(trial gomatrixserverlib.PDU) (json.RawMessage, error) {
	var ev map[string]json.RawMessage
	if err := json.Unmarshal(trial.JSON(), &ev); err != nil {
		return nil, err
	}
	for _, k := range []string{"hashes", "signatures", "unsigned", "origin_server_ts", "origin", "event_id"} {
		delete(ev, k)
	}
	return json.Marshal(ev)
}

// checkRemoteLeave refuses the leave of a user who is not in the room
// (invited, joined or knocking), which the auth rules let pass (leave to
// leave) but Synapse refuses as "not in room".
func checkRemoteLeave(r *room, userID, membership string) error {
	if membership != spec.Leave {
		return nil
	}
	r.mu.Lock()
	current := r.membership(userID)
	r.mu.Unlock()
	if current != spec.Join && current != spec.Invite && current != spec.Knock {
		return forbidden("%s is not in room %s", userID, r.id)
	}
	return nil
}

// remoteJoinAuthoriser picks the local user who authorises a restricted
// join of a user of another server ("" when the room is not restricted or
// the user is invited or joined): the user must be joined to an allowed
// room this server is in, and a local member of this room must be able to
// invite. When this server is not in some allowed room (so the user may be
// in it unbeknown to us), or no local member may invite, another server
// has to authorise.
func (rs *Roomserver) remoteJoinAuthoriser(ctx context.Context, r *room, userID string) (string, error) {
	r.mu.Lock()
	current := r.membership(userID)
	r.mu.Unlock()
	if current == spec.Join || current == spec.Invite {
		return "", nil
	}
	jr, err := rs.currentEvent(ctx, r, spec.MRoomJoinRules, "")
	if err != nil || jr == nil {
		return "", err
	}
	var rules struct {
		JoinRule string `json:"join_rule"`
		Allow    []struct {
			Type   string `json:"type"`
			RoomID string `json:"room_id"`
		} `json:"allow"`
	}
	if json.Unmarshal(jr.Content(), &rules) != nil || (rules.JoinRule != spec.Restricted && rules.JoinRule != spec.KnockRestricted) {
		return "", nil
	}
	resident, member := true, false
	for _, a := range rules.Allow {
		if a.Type != spec.MRoomMembership || a.RoomID == r.id {
			continue
		}
		p, ar, err := rs.presence(ctx, a.RoomID)
		if err != nil {
			return "", err
		}
		if !p.participating {
			resident = false
			continue
		}
		ar.mu.Lock()
		m := ar.membership(userID)
		ar.mu.Unlock()
		if m == spec.Join {
			member = true
			break
		}
	}
	if !member {
		if !resident {
			return "", ErrUnableToAuthorise
		}
		return "", forbidden("you are not joined to any of the rooms this room allows joining from")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	pl, err := rs.powerLevels(ctx, r)
	if err != nil {
		return "", err
	}
	members := make([]string, 0, len(r.local))
	for u := range r.local {
		members = append(members, u)
	}
	sort.Strings(members)
	for _, u := range members {
		if r.isCreator(u) || pl.UserLevel(spec.SenderID(u)) >= pl.Invite {
			return u, nil
		}
	}
	return "", ErrUnableToAuthorise
}

// InputRemoteMembership accepts a member event a user of another server
// built from a template (send_join, send_leave, send_knock; the caller
// checked its sender, signatures and membership, and signed it): it must
// be accepted into the room's timeline.
func (rs *Roomserver) InputRemoteMembership(ctx context.Context, origin spec.ServerName, pdu gomatrixserverlib.PDU) (Sent, error) {
	r, err := rs.participatingRoom(ctx, pdu.RoomID().String())
	if err != nil {
		return Sent{}, err
	}
	if m, _ := pdu.Membership(); pdu.StateKey() != nil {
		if err := checkRemoteLeave(r, *pdu.StateKey(), m); err != nil {
			return Sent{}, err
		}
	}
	res, err := rs.Input(ctx, []InputEvent{{Kind: KindNew, Event: pdu, Origin: origin}})
	if err != nil {
		return Sent{}, err
	}
	return sentOf(res[0])
}

// StateEventsBefore is the room's state before a stored event of its
// timeline.
func (rs *Roomserver) StateEventsBefore(ctx context.Context, roomID, eventID string) ([]gomatrixserverlib.PDU, error) {
	r, err := rs.room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	e, err := rs.db.EventByID(ctx, eventID)
	if err != nil {
		return nil, err
	}
	if e.RoomID != roomID || e.Status == storage.EventOutlier || e.Status == storage.EventRejected {
		return nil, fmt.Errorf("event %s has no state in room %s: %w", eventID, roomID, storage.ErrNotFound)
	}
	st, err := rs.snapshotState(ctx, r, e.StateBefore)
	if err != nil {
		return nil, err
	}
	out := make([]gomatrixserverlib.PDU, 0, len(st))
	for _, ev := range st {
		out = append(out, ev)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].EventID() < out[j].EventID() })
	return out, nil
}

// AuthChainOf is the union of the auth chains of events of a room.
func (rs *Roomserver) AuthChainOf(ctx context.Context, roomID string, events []gomatrixserverlib.PDU) ([]gomatrixserverlib.PDU, error) {
	r, err := rs.room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	chain, err := rs.authChain(ctx, r, events)
	if err != nil {
		return nil, err
	}
	sort.Slice(chain, func(i, j int) bool { return chain[i].EventID() < chain[j].EventID() })
	return chain, nil
}

// InputRemoteJoin stores what a send_join brought for a local user's join:
// the room's auth chain and state as outliers (each after its auth events;
// signatures and auth events are checked as for any input, and events that
// fail are left out of the state), then the join with that state before
// it. The room's row, if out-of-band memberships made one, takes the
// version of the room joined.
func (rs *Roomserver) InputRemoteJoin(ctx context.Context, origin spec.ServerName, join gomatrixserverlib.PDU, events []gomatrixserverlib.PDU, stateIDs []string) (Sent, error) {
	roomID := join.RoomID().String()
	if err := rs.adoptVersion(ctx, roomID, join.Version()); err != nil {
		return Sent{}, err
	}
	seen := map[string]bool{}
	var outliers []InputEvent
	for _, p := range authOrder(events) {
		if p.RoomID().String() != roomID || seen[p.EventID()] || p.EventID() == join.EventID() {
			continue
		}
		seen[p.EventID()] = true
		outliers = append(outliers, InputEvent{Kind: KindOutlier, Event: p, Origin: origin})
	}
	res, err := rs.Input(ctx, outliers)
	if err != nil {
		return Sent{}, err
	}
	held := map[string]bool{}
	for _, r := range res {
		if r.Err == nil && r.Status != StatusRejected {
			held[r.EventID] = true
		}
	}
	state := make([]string, 0, len(stateIDs))
	for _, id := range stateIDs {
		if held[id] {
			state = append(state, id)
		}
	}
	res, err = rs.Input(ctx, []InputEvent{{Kind: KindNew, Event: join, Origin: origin, StateBefore: state, remoteJoin: true}})
	if err != nil {
		return Sent{}, err
	}
	sent, err := sentOf(res[0])
	if err == nil {
		rs.afterJoiningSuccessor(context.WithoutCancel(ctx), roomID, nil)
	}
	return sent, err
}

// adoptVersion gives a room known only through out-of-band memberships
// (whose version the inviting server claimed) the version of the room
// being joined; a room with state keeps its own.
func (rs *Roomserver) adoptVersion(ctx context.Context, roomID string, ver gomatrixserverlib.RoomVersion) error {
	info, err := rs.db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil || info.Version == string(ver) {
		return err
	}
	if info.Snapshot != 0 {
		return badRequest("room %s has version %s here, not %s", roomID, info.Version, ver)
	}
	if err := rs.db.Write(ctx, func(tx *storage.Tx) error { return tx.SetRoomVersion(ctx, info.NID, string(ver)) }); err != nil {
		return err
	}
	if r, ok := rs.rooms.Get(roomID); ok {
		rs.evict(r)
	}
	return nil
}

// strippedTypes are the state a user invited to or knocking on a room sees
// of it (Synapse's room_prejoin_state defaults).
var strippedTypes = []string{
	spec.MRoomCreate, spec.MRoomJoinRules, "m.room.canonical_alias", "m.room.avatar", "m.room.encryption",
	spec.MRoomName, spec.MRoomTopic,
}

// StrippedState is the room's summary for a user invited to it or knocking
// on it (invite_room_state, knock_room_state): the create event in full
// (MSC4311: the invitee's server can check it against the room ID), the
// others stripped to type, state key, sender and content, and the member
// event of sender when given (the inviter).
func (rs *Roomserver) StrippedState(ctx context.Context, roomID, sender string) ([]json.RawMessage, error) {
	r, err := rs.room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return rs.strippedState(ctx, r, sender)
}

func (rs *Roomserver) strippedState(ctx context.Context, r *room, sender string) ([]json.RawMessage, error) {
	var out []json.RawMessage
	add := func(typ, key string) error {
		ev, err := rs.stateEvent(ctx, r, typ, key)
		if err != nil || ev == nil {
			return err
		}
		if typ == spec.MRoomCreate {
			out = append(out, json.RawMessage(ev.JSON()))
			return nil
		}
		raw, err := json.Marshal(map[string]any{
			"type": ev.Type(), "state_key": key, "sender": string(ev.SenderID()), "content": json.RawMessage(ev.Content()),
		})
		out = append(out, raw)
		return err
	}
	for _, typ := range strippedTypes {
		if err := add(typ, ""); err != nil {
			return nil, err
		}
	}
	if sender != "" {
		if err := add(spec.MRoomMember, sender); err != nil {
			return nil, err
		}
	}
	return out, nil
}
