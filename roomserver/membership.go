package roomserver

import (
	"context"
	"encoding/json"
	"sort"

	"github.com/matrix-org/gomatrixserverlib/spec"
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
	// Profile fields copied into join events.
	DisplayName string
	AvatarURL   string
}

// SetMembership sends the member event for a membership change; the auth
// rules decide whether the sender may make it.
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
	content := map[string]any{"membership": req.Membership}
	if req.Reason != "" {
		content["reason"] = req.Reason
	}
	if req.DisplayName != "" {
		content["displayname"] = req.DisplayName
	}
	if req.AvatarURL != "" {
		content["avatar_url"] = req.AvatarURL
	}
	if req.IsDirect {
		content["is_direct"] = true
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
	if req.Membership == spec.Leave && req.Sender == req.Target {
		r.mu.Lock()
		m := r.membership(req.Target)
		r.mu.Unlock()
		if m != spec.Join && m != spec.Invite && m != spec.Knock {
			return Sent{}, forbidden("you are not in this room")
		}
	}
	raw, err := json.Marshal(content)
	if err != nil {
		return Sent{}, err
	}
	target := req.Target
	return rs.Send(ctx, LocalEvent{
		RoomID: req.RoomID, Sender: req.Sender, DeviceID: req.DeviceID,
		Type: spec.MRoomMember, StateKey: &target, Content: raw,
	})
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
	jr, err := rs.stateEvent(ctx, r, spec.MRoomJoinRules, "")
	current := r.membership(userID)
	r.mu.Unlock()
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
