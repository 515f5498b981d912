package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

// Remote is what the roomserver asks of other servers: membership changes
// of local users in rooms this server is not in, and the invitee's
// signature on invites of their users. Federation implements it
// (federationapi/membership); without one (federation disabled) every room
// is local and an invite of another server's user is a plain room event
// (the client API refuses those then).
//
// SetMembership decides: a local user joining or knocking on a room this
// server has no joined member in, or leaving a room they were invited to
// (or knocked on) out of band, goes through Remote; everything else is a
// local event, which the federation sender carries to the room's servers.
type Remote interface {
	// Join joins a local user to a room through one of req.Servers
	// (make_join, send_join) and stores what it brought through
	// InputRemoteJoin.
	Join(ctx context.Context, req RemoteMembership) (Sent, error)
	// Leave rejects an invite or withdraws a knock through one of
	// req.Servers (make_leave, send_leave) and stores the leave through
	// StoreOutOfBand.
	Leave(ctx context.Context, req RemoteMembership) (Sent, error)
	// Knock knocks on a room through one of req.Servers (make_knock,
	// send_knock) and stores the knock through StoreOutOfBand.
	Knock(ctx context.Context, req RemoteMembership) (Sent, error)
	// Invite sends an invite of a user of another server to that server
	// (PUT /invite) with the room's stripped state (StrippedState) and
	// returns the event as it came back, signed by that server.
	Invite(ctx context.Context, invite gomatrixserverlib.PDU, strippedState []json.RawMessage) (gomatrixserverlib.PDU, error)
	// Alias resolves an alias of another server (/query/directory).
	Alias(ctx context.Context, alias string) (roomID string, servers []string, err error)
}

// RemoteMembership is a local user's membership change in a room this
// server is not in.
type RemoteMembership struct {
	RoomID string
	UserID string
	// Servers are the servers to try, in order (never this one).
	Servers []spec.ServerName
	// Content is the member content (profile, reason, the client's keys);
	// the membership is set by the remote call.
	Content map[string]any
}

// ErrNoServers: a room this server is not in, and no server to reach it
// through (a 404, as in Synapse).
var ErrNoServers = fmt.Errorf("%w: no known servers", ErrRoomNotFound)

// SetRemote plugs federation in; call it before serving requests.
func (rs *Roomserver) SetRemote(r Remote) { rs.remote = r }

// Federates reports whether rooms can reach other servers.
func (rs *Roomserver) Federates() bool { return rs.remote != nil }

// roomPresence is what this server holds of a room.
type roomPresence struct {
	known bool // a room row exists
	// hasState: the room's state is known (its create event is in it).
	hasState bool
	// participating: a local user is joined.
	participating bool
}

func (rs *Roomserver) presence(ctx context.Context, roomID string) (roomPresence, *room, error) {
	r, err := rs.room(ctx, roomID)
	if errors.Is(err, ErrRoomNotFound) {
		return roomPresence{}, nil, nil
	}
	if err != nil {
		return roomPresence{}, nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	_, hasState := r.ref(spec.MRoomCreate, "")
	return roomPresence{known: true, hasState: hasState, participating: hasState && len(r.local) > 0}, r, nil
}

// setRemoteMembership performs a local user's own join, knock or leave
// through Remote when the room is not this server's to change; handled is
// false when the change is a local event.
func (rs *Roomserver) setRemoteMembership(ctx context.Context, req MembershipRequest, content map[string]any) (sent Sent, handled bool, err error) {
	if rs.remote == nil || req.Sender != req.Target || !rs.isLocal(req.Target) {
		return Sent{}, false, nil
	}
	if req.Membership != spec.Join && req.Membership != spec.Leave && req.Membership != spec.Knock {
		return Sent{}, false, nil
	}
	p, r, err := rs.presence(ctx, req.RoomID)
	if err != nil {
		return Sent{}, true, err
	}
	oob, err := rs.db.CurrentOutOfBand(ctx, req.RoomID, req.Target)
	if errors.Is(err, storage.ErrNotFound) {
		oob, err = nil, nil
	}
	if err != nil {
		return Sent{}, true, err
	}
	switch req.Membership {
	case spec.Join:
		// A user invited out of band to a room this server is in, whose
		// invite has not reached the room here yet, joins through the
		// inviter's server.
		if p.participating && !(oob != nil && oob.Membership == spec.Invite && headMembership(r, req.Target) != spec.Invite) {
			authorisers, err := rs.restrictedJoinAuthorisers(ctx, r, req.Target)
			if err != nil || len(authorisers) == 0 {
				return Sent{}, err != nil, err
			}
			sent, err := rs.remote.Join(ctx, RemoteMembership{RoomID: req.RoomID, UserID: req.Target, Servers: authorisers, Content: content})
			return sent, true, err
		}
	case spec.Knock:
		if p.participating {
			return Sent{}, false, nil
		}
	case spec.Leave:
		if oob == nil || (oob.Membership != spec.Invite && oob.Membership != spec.Knock) {
			return Sent{}, false, nil
		}
	}
	servers, err := rs.candidateServers(ctx, req, p, oob)
	if err != nil {
		return Sent{}, true, err
	}
	rreq := RemoteMembership{RoomID: req.RoomID, UserID: req.Target, Servers: servers, Content: content}
	switch req.Membership {
	case spec.Join:
		if len(servers) == 0 {
			if p.hasState {
				return Sent{}, false, nil // every member left: try locally
			}
			return Sent{}, true, ErrNoServers
		}
		sent, err = rs.remote.Join(ctx, rreq)
	case spec.Knock:
		if len(servers) == 0 {
			if p.hasState {
				return Sent{}, false, nil
			}
			return Sent{}, true, ErrNoServers
		}
		sent, err = rs.remote.Knock(ctx, rreq)
	case spec.Leave:
		if len(servers) > 0 {
			sent, err = rs.remote.Leave(ctx, rreq)
		}
		if len(servers) == 0 || err != nil {
			// As Synapse: when no server takes the rejection, the user
			// leaves here at least, with a leave we make ourselves.
			return rs.leaveOutOfBandLocally(ctx, oob, content)
		}
	}
	return sent, true, err
}

// restrictedJoinAuthorisers: a local user's join to a restricted room this
// server is in goes through another server when no member of this one may
// authorise it (invite), as Synapse decides: the servers whose joined
// members may invite are returned, and nil when the join is local (the
// room is not restricted, the user is invited or joined, a local member
// may invite, or no other server can).
func (rs *Roomserver) restrictedJoinAuthorisers(ctx context.Context, r *room, userID string) ([]spec.ServerName, error) {
	if r.version.CheckRestrictedJoinsAllowed() != nil {
		return nil, nil
	}
	if m := headMembership(r, userID); m == spec.Join || m == spec.Invite {
		return nil, nil
	}
	jr, err := rs.currentEvent(ctx, r, spec.MRoomJoinRules, "")
	if err != nil || jr == nil {
		return nil, err
	}
	var rules struct {
		JoinRule string `json:"join_rule"`
	}
	if json.Unmarshal(jr.Content(), &rules) != nil || (rules.JoinRule != spec.Restricted && rules.JoinRule != spec.KnockRestricted) {
		return nil, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	pl, err := rs.powerLevels(ctx, r)
	if err != nil {
		return nil, err
	}
	mayInvite := func(u string) bool { return pl.UserLevel(spec.SenderID(u)) >= pl.Invite || r.isCreator(u) }
	for u := range r.local {
		if mayInvite(u) {
			return nil, nil
		}
	}
	var servers []spec.ServerName
	seen := map[spec.ServerName]bool{rs.origin: true}
	for t, ref := range r.state {
		if t.EventType != spec.MRoomMember || ref.value != spec.Join || !mayInvite(t.StateKey) {
			continue
		}
		if s := spec.ServerName(serverOfID(t.StateKey)); s != "" && !seen[s] {
			seen[s] = true
			servers = append(servers, s)
		}
	}
	sort.Slice(servers, func(i, j int) bool { return servers[i] < servers[j] })
	return servers, nil
}

func headMembership(r *room, userID string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.membership(userID)
}

// candidateServers lists the servers to reach a room through: those the
// client named, the inviter's (as Synapse), the senders of the invite's
// stripped state, or, when there are none of those, the servers joined in
// the state this server holds; never this server. As in Synapse, a room
// ID's domain is no candidate.
func (rs *Roomserver) candidateServers(ctx context.Context, req MembershipRequest, p roomPresence, oob *storage.OutOfBand) ([]spec.ServerName, error) {
	var out []spec.ServerName
	seen := map[spec.ServerName]bool{rs.origin: true}
	add := func(s string) {
		name := spec.ServerName(s)
		if _, _, ok := spec.ParseAndValidateServerName(name); !ok || seen[name] {
			return
		}
		seen[name] = true
		out = append(out, name)
	}
	for _, s := range req.Servers {
		add(s)
	}
	if oob != nil {
		add(serverOfID(oob.Sender))
		var stripped []struct {
			Sender string `json:"sender"`
		}
		json.Unmarshal(oob.StrippedState, &stripped)
		for _, e := range stripped {
			add(serverOfID(e.Sender))
		}
	}
	// The servers the held state names are asked only when there is no
	// other: Synapse asks only the named ones (so a client can pick the
	// server it trusts to authorise a restricted join).
	if p.hasState && len(out) == 0 {
		info, err := rs.db.Room(ctx, req.RoomID)
		if err != nil {
			return nil, err
		}
		joined, err := rs.db.CurrentJoinedServers(ctx, info.NID)
		if err != nil {
			return nil, err
		}
		for _, s := range joined {
			add(s)
		}
	}
	return out, nil
}

// serverOfID is the server part of a user, room or event ID ("" when it has
// none, as v12 room IDs).
func serverOfID(id string) string {
	_, domain, _ := strings.Cut(id, ":")
	return domain
}

// inviteRemote invites a user of another server: the event is built on the
// room's head, signed by the invitee's server (Remote.Invite) and then
// input like an event from elsewhere (the head may have moved meanwhile).
func (rs *Roomserver) inviteRemote(ctx context.Context, r *room, req MembershipRequest, content []byte) (Sent, error) {
	if !rs.isLocal(req.Sender) {
		return Sent{}, forbidden("%s is not a user of this server", req.Sender)
	}
	target := req.Target
	r.mu.Lock()
	if r.broken.Load() {
		r.mu.Unlock()
		fresh, err := rs.room(ctx, r.id)
		if err != nil {
			return Sent{}, err
		}
		return rs.inviteRemote(ctx, fresh, req, content)
	}
	pdu, err := rs.build(ctx, r, LocalEvent{
		RoomID: r.id, Sender: req.Sender, Type: spec.MRoomMember, StateKey: &target, Content: content,
	})
	var stripped []json.RawMessage
	if err == nil {
		stripped, err = rs.strippedState(ctx, r, req.Sender)
	}
	r.mu.Unlock()
	if err != nil {
		return Sent{}, err
	}
	returned, err := rs.remote.Invite(ctx, pdu, stripped)
	if err != nil {
		return Sent{}, err
	}
	signed, err := GraftSignatures(r.version, pdu, returned, spec.ServerName(serverOfID(target)))
	if err != nil {
		return Sent{}, err
	}
	return rs.inputLocal(ctx, signed)
}

// GraftSignatures adds the signatures of servers from theirs (the same
// event as another server returned it: its ID must match) to ours: the
// event kept is the one built here, whatever else came back.
func GraftSignatures(ver gomatrixserverlib.IRoomVersion, ours, theirs gomatrixserverlib.PDU, servers ...spec.ServerName) (gomatrixserverlib.PDU, error) {
	if theirs.EventID() != ours.EventID() {
		return nil, badRequest("the other server returned another event (%s, not %s)", theirs.EventID(), ours.EventID())
	}
	var their struct {
		Signatures map[string]json.RawMessage `json:"signatures"`
	}
	if err := json.Unmarshal(theirs.JSON(), &their); err != nil {
		return nil, badRequest("the other server returned an unreadable event: %v", err)
	}
	var ev map[string]json.RawMessage
	if err := json.Unmarshal(ours.JSON(), &ev); err != nil {
		return nil, err
	}
	var sigs map[string]json.RawMessage
	if err := json.Unmarshal(ev["signatures"], &sigs); err != nil || sigs == nil {
		sigs = map[string]json.RawMessage{}
	}
	for _, server := range servers {
		sig := their.Signatures[string(server)]
		if sig == nil {
			return nil, forbidden("%s did not sign the event", server)
		}
		sigs[string(server)] = sig
	}
	raw, err := json.Marshal(sigs)
	if err != nil {
		return nil, err
	}
	ev["signatures"] = raw
	js, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	if js, err = gomatrixserverlib.CanonicalJSON(js); err != nil {
		return nil, err
	}
	return ver.NewEventFromTrustedJSONWithEventID(ours.EventID(), js, false)
}

// inputLocal inputs an event of this server that had to leave the room's
// lock on its way (signatures of other servers) and reports it as sent.
func (rs *Roomserver) inputLocal(ctx context.Context, pdu gomatrixserverlib.PDU) (Sent, error) {
	res, err := rs.Input(ctx, []InputEvent{{Kind: KindNew, Event: pdu, Origin: rs.origin}})
	if err != nil {
		return Sent{}, err
	}
	return sentOf(res[0])
}

// sentOf maps an input outcome to Send's answer: only an event accepted
// into the timeline counts.
func sentOf(res InputResult) (Sent, error) {
	var ma *MissingAuthEventsError
	var mp *MissingPrevEventsError
	var ms *MissingStateError
	switch {
	case errors.Is(res.Err, ErrUnverified):
		return Sent{}, forbidden("%v", res.Err)
	case errors.As(res.Err, &ma), errors.As(res.Err, &mp), errors.As(res.Err, &ms):
		return Sent{}, badRequest("%v", res.Err)
	case res.Err != nil:
		return Sent{}, fmt.Errorf("storing event %s: %w", res.EventID, res.Err)
	case res.Status == StatusRejected || res.Status == StatusSoftFailed:
		return Sent{}, forbidden("%s", res.Reason)
	}
	return Sent{EventID: res.EventID, StreamPos: res.StreamPos}, nil
}

// LookupAlias resolves an alias of another server through it (Remote.Alias):
// the room and servers to join it through. ErrRoomNotFound when it is
// unknown or this server does not federate.
func (rs *Roomserver) LookupAlias(ctx context.Context, alias string) (string, []string, error) {
	if rs.remote == nil {
		return "", nil, ErrRoomNotFound
	}
	return rs.remote.Alias(ctx, alias)
}
