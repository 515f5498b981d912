package roomserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sort"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

// MembershipRequest changes a user's membership of a room: join, leave
// (also kick and unban), invite, ban or knock.
type MembershipRequest struct {
	RoomID     string
	Sender     string
	DeviceID   string
	Target     string
	Membership string
	Reason     string
	IsDirect   bool
	// Kick marks a leave that removes another user: refused unless the
	// target is in the room (invited, joined or knocking).
	Kick bool
	// Content holds further member content a client chose (a join through
	// /join/{roomIdOrAlias} keeps its whole body, as in Synapse).
	Content map[string]any
	// Servers are the servers to join or knock through when this server
	// is not in the room (the client's via / server_name, an alias's
	// servers).
	Servers []string
	// Profile fields copied into join and knock events.
	DisplayName string
	AvatarURL   string
}

// SetMembership sends the member event for a membership change; the auth
// rules decide whether the sender may make it. Repeating the current
// membership with the same content answers the existing event.
func (rs *Roomserver) SetMembership(ctx context.Context, req MembershipRequest) (Sent, error) {
	switch req.Membership {
	case spec.Join, spec.Invite, spec.Knock:
		// An admin may have blocked the room (admin API).
		if by, err := rs.db.RoomBlockedBy(ctx, req.RoomID); err != nil {
			return Sent{}, err
		} else if by != "" {
			return Sent{}, &ForbiddenError{Reason: "this room has been blocked on this server"}
		}
	}
	if req.Membership == spec.Invite && rs.noticesUser != "" && req.Target == rs.noticesUser {
		return Sent{}, forbidden("cannot invite this user")
	}
	content, err := rs.memberContent(ctx, req)
	if err != nil {
		return Sent{}, err
	}
	if sent, handled, err := rs.setRemoteMembership(ctx, req, content); handled {
		return sent, err
	}
	r, err := rs.room(ctx, req.RoomID)
	if err != nil {
		return Sent{}, err
	}
	if req.Membership == spec.Join {
		if err := rs.authoriseRestrictedJoin(ctx, r, req.Target, content); err != nil {
			return Sent{}, err
		}
	}
	raw, err := json.Marshal(content)
	if err != nil {
		return Sent{}, err
	}
	r.mu.Lock()
	currentMembership := r.membership(req.Target)
	r.mu.Unlock()
	current, err := rs.currentEvent(ctx, r, spec.MRoomMember, req.Target)
	if err != nil {
		return Sent{}, err
	}
	if id, ok := identicalState(current, req.Sender, raw); ok {
		return Sent{EventID: id}, nil
	}
	if err := rs.checkMembershipChange(r, req, currentMembership); err != nil {
		return Sent{}, err
	}
	if req.Membership == spec.Invite && !rs.isLocal(req.Target) && rs.remote != nil {
		return rs.inviteRemote(ctx, r, req, raw)
	}
	target := req.Target
	sent, err := rs.Send(ctx, LocalEvent{
		RoomID: req.RoomID, Sender: req.Sender, DeviceID: req.DeviceID,
		Type: spec.MRoomMember, StateKey: &target, Content: raw,
	})
	if err == nil && req.Membership == spec.Join && currentMembership != spec.Join && rs.isLocal(target) {
		rs.afterJoiningSuccessor(context.WithoutCancel(ctx), req.RoomID, []string{target})
	}
	return sent, err
}

// memberContent is the content of a membership change: the client's extra
// keys, the reason, and for joins, knocks and invites of local users the
// target's profile unless the client gave its own (as Synapse does).
func (rs *Roomserver) memberContent(ctx context.Context, req MembershipRequest) (map[string]any, error) {
	content := map[string]any{}
	for k, v := range req.Content {
		content[k] = v
	}
	// The authorising user is the server's to choose (restricted joins).
	delete(content, "join_authorised_via_users_server")
	content["membership"] = req.Membership
	if req.Reason != "" {
		content["reason"] = req.Reason
	}
	if req.IsDirect {
		content["is_direct"] = true
	}
	name, avatar := req.DisplayName, req.AvatarURL
	if req.Membership == spec.Invite {
		var err error
		if name, avatar, err = rs.localProfile(ctx, req.Target); err != nil {
			return nil, err
		}
	}
	if _, ok := content["displayname"]; !ok && name != "" {
		content["displayname"] = name
	}
	if _, ok := content["avatar_url"]; !ok && avatar != "" {
		content["avatar_url"] = avatar
	}
	return content, nil
}

// localProfile is a local user's display name and avatar ("" for remote or
// unknown users).
func (rs *Roomserver) localProfile(ctx context.Context, userID string) (string, string, error) {
	if !rs.isLocal(userID) {
		return "", "", nil
	}
	acc, err := rs.db.Account(ctx, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return "", "", nil
	}
	if err != nil {
		return "", "", err
	}
	return acc.DisplayName, acc.AvatarURL, nil
}

// identicalState reports whether current (may be nil) is already the state
// a sender asks for: same sender, same content. Synapse then answers the
// existing event instead of sending a duplicate.
func identicalState(current gomatrixserverlib.PDU, sender string, content []byte) (string, bool) {
	if current == nil || string(current.SenderID()) != sender || !sameContent(current.Content(), content) {
		return "", false
	}
	return current.EventID(), true
}

// sameContent compares two contents in canonical form.
func sameContent(x, y []byte) bool {
	a, err1 := gomatrixserverlib.CanonicalJSON(x)
	b, err2 := gomatrixserverlib.CanonicalJSON(y)
	return err1 == nil && err2 == nil && bytes.Equal(a, b)
}

// checkMembershipChange refuses changes the auth rules would allow but
// Synapse does not: kicking a user who is not in the room, leaving a room
// one is not in, and rejecting the invite to a server notices room.
func (rs *Roomserver) checkMembershipChange(r *room, req MembershipRequest, current string) error {
	if req.Membership != spec.Leave {
		return nil
	}
	inRoom := current == spec.Join || current == spec.Invite || current == spec.Knock
	if req.Kick && !inRoom {
		return forbidden("the target user is not in the room")
	}
	if req.Sender != req.Target {
		return nil
	}
	if !inRoom {
		return forbidden("you are not in this room")
	}
	if current == spec.Invite && rs.isNoticesRoom(r) {
		return &ForbiddenError{Reason: "you cannot reject this invite", Code: "M_CANNOT_LEAVE_SERVER_NOTICE_ROOM"}
	}
	return nil
}

// Membership returns a user's current membership of a room ("" for none).
func (rs *Roomserver) Membership(ctx context.Context, roomID, userID string) (string, error) {
	r, err := rs.room(ctx, roomID)
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.membership(userID), nil
}

// authoriseRestrictedJoin fills join_authorised_via_users_server for a join
// to a restricted room (v8+) by a user who is not invited, when the user is
// joined to one of the allowed rooms and a local member may invite.
func (rs *Roomserver) authoriseRestrictedJoin(ctx context.Context, r *room, userID string, content map[string]any) error {
	r.mu.Lock()
	current := r.membership(userID)
	r.mu.Unlock()
	jr, err := rs.currentEvent(ctx, r, spec.MRoomJoinRules, "")
	if err != nil {
		return err
	}
	if jr == nil || current == spec.Join || current == spec.Invite {
		return nil
	}
	var rules struct {
		JoinRule string `json:"join_rule"`
		Allow    []struct {
			Type   string `json:"type"`
			RoomID string `json:"room_id"`
		} `json:"allow"`
	}
	if json.Unmarshal(jr.Content(), &rules) != nil || (rules.JoinRule != "restricted" && rules.JoinRule != "knock_restricted") {
		return nil
	}
	allowed := false
	for _, a := range rules.Allow {
		if a.Type != "m.room_membership" {
			continue
		}
		m, err := rs.Membership(ctx, a.RoomID, userID)
		if err == nil && m == spec.Join {
			allowed = true
			break
		}
	}
	if !allowed {
		return forbidden("you are not a member of a room this room allows joining from")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	pl, err := rs.powerLevels(ctx, r)
	if err != nil {
		return err
	}
	members := make([]string, 0, len(r.local))
	for u := range r.local {
		members = append(members, u)
	}
	sort.Strings(members) // the same authoriser every time
	for _, u := range members {
		if pl.UserLevel(spec.SenderID(u)) >= pl.Invite || r.isCreator(u) {
			content["join_authorised_via_users_server"] = u
			return nil
		}
	}
	return forbidden("no member of this server may authorise your join")
}
