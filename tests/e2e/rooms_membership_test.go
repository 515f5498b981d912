package e2e

import (
	"net/http"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// TestRoomJoinLeaveForget: joining a public room by ID (both endpoints) and
// by alias, leaving, and forgetting (only after leaving).
func TestRoomJoinLeaveForget(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	carol := newUser(t, s, "carol")
	dave := newUser(t, s, "dave")
	roomID := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomAliasName: "pub"})

	// POST /rooms/{roomId}/join
	r := do(t, "POST", roomURL(s, roomID, "join"), bob.AccessToken, map[string]any{"reason": "hi"}).want(t, 200, "")
	if r.Body["room_id"] != string(roomID) {
		t.Fatalf("/rooms/{id}/join = %s", r.Raw)
	}
	if c := stateContent(t, s, alice.AccessToken, roomID, "m.room.member", string(bob.UserID)); c["membership"] != "join" || c["reason"] != "hi" {
		t.Fatalf("bob's member event = %v, want join with reason", c)
	}
	// POST /join/{roomIdOrAlias} with an alias, and with an ID.
	res, err := carol.JoinRoom(ctxT(t), "#pub:hs.test", nil)
	if err != nil || res.RoomID != roomID {
		t.Fatalf("join by alias = %+v, %v", res, err)
	}
	r = do(t, "POST", v3(s, "join", string(roomID)), dave.AccessToken, map[string]any{}).want(t, 200, "")
	if r.Body["room_id"] != string(roomID) {
		t.Fatalf("/join/{roomId} = %s", r.Raw)
	}
	// Joining again is fine (idempotent).
	do(t, "POST", v3(s, "join", string(roomID)), dave.AccessToken, map[string]any{}).want(t, 200, "")

	jm, err := alice.JoinedMembers(ctxT(t), roomID)
	if err != nil {
		t.Fatal(err)
	}
	if len(jm.Joined) != 4 {
		t.Fatalf("joined members = %v, want alice, bob, carol, dave", jm.Joined)
	}
	for _, u := range []id.UserID{alice.UserID, bob.UserID, carol.UserID, dave.UserID} {
		if _, ok := jm.Joined[u]; !ok {
			t.Fatalf("joined members %v lack %s", jm.Joined, u)
		}
	}
	if !slices.Contains(joinedRooms(t, bob), roomID) {
		t.Fatal("bob's joined_rooms lacks the room")
	}

	// Forgetting while joined is refused.
	do(t, "POST", roomURL(s, roomID, "forget"), carol.AccessToken, map[string]any{}).want(t, http.StatusBadRequest, "M_UNKNOWN")

	// Bob leaves (with a reason) and forgets.
	if _, err := bob.LeaveRoom(ctxT(t), roomID, &mautrix.ReqLeave{Reason: "bye"}); err != nil {
		t.Fatalf("leave: %v", err)
	}
	if c := stateContent(t, s, alice.AccessToken, roomID, "m.room.member", string(bob.UserID)); c["membership"] != "leave" || c["reason"] != "bye" {
		t.Fatalf("bob's member event after leave = %v", c)
	}
	if slices.Contains(joinedRooms(t, bob), roomID) {
		t.Fatal("bob's joined_rooms still lists the room after leaving")
	}
	if _, err := bob.ForgetRoom(ctxT(t), roomID); err != nil {
		t.Fatalf("forget after leave: %v", err)
	}
	// A forgotten room's history is no longer readable.
	do(t, "GET", roomURL(s, roomID, "messages")+"?dir=b", bob.AccessToken, nil).want(t, http.StatusForbidden, "M_FORBIDDEN")
	// Bob can rejoin the public room afterwards.
	join(t, bob, roomID)
	if !slices.Contains(joinedRooms(t, bob), roomID) {
		t.Fatal("rejoined room missing from joined_rooms")
	}
	// Leaving a room one is not in.
	do(t, "POST", roomURL(s, roomID, "leave"), newUser(t, s, "erin").AccessToken, map[string]any{}).want(t, http.StatusForbidden, "M_FORBIDDEN")
}

// TestRoomInvite: invite-only rooms refuse uninvited joins; invites need the
// inviter in the room; an invite carries its reason and can be accepted or
// rejected.
func TestRoomInvite(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	carol := newUser(t, s, "carol")
	dave := newUser(t, s, "dave")
	roomID := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})

	do(t, "POST", roomURL(s, roomID, "join"), bob.AccessToken, map[string]any{}).want(t, http.StatusForbidden, "M_FORBIDDEN")
	do(t, "POST", v3(s, "join", string(roomID)), bob.AccessToken, map[string]any{}).want(t, http.StatusForbidden, "M_FORBIDDEN")
	// Carol is not in the room: she cannot invite.
	do(t, "POST", roomURL(s, roomID, "invite"), carol.AccessToken, map[string]any{"user_id": string(bob.UserID)}).
		want(t, http.StatusForbidden, "M_FORBIDDEN")
	if r := do(t, "GET", roomURL(s, roomID, "state", "m.room.member", string(bob.UserID)), alice.AccessToken, nil); r.Status != 404 {
		t.Fatalf("bob has a member event after refused join/invite: %d %s", r.Status, r.Raw)
	}

	if _, err := alice.InviteUser(ctxT(t), roomID, &mautrix.ReqInviteUser{UserID: bob.UserID, Reason: "come along"}); err != nil {
		t.Fatalf("invite: %v", err)
	}
	st := fullState(t, s, alice.AccessToken, roomID)
	inv := stateEvent(t, st, "m.room.member", string(bob.UserID))
	if inv.Content["membership"] != "invite" || inv.Content["reason"] != "come along" || inv.Sender != string(alice.UserID) {
		t.Fatalf("invite event = %+v", inv)
	}
	join(t, bob, roomID)
	if m := membership(t, s, bob.AccessToken, roomID, string(bob.UserID)); m != "join" {
		t.Fatalf("bob membership = %q", m)
	}
	// Inviting someone already joined is refused.
	do(t, "POST", roomURL(s, roomID, "invite"), alice.AccessToken, map[string]any{"user_id": string(bob.UserID)}).
		want(t, http.StatusForbidden, "M_FORBIDDEN")

	// Dave rejects an invite by leaving; the room then refuses his join.
	if _, err := alice.InviteUser(ctxT(t), roomID, &mautrix.ReqInviteUser{UserID: dave.UserID}); err != nil {
		t.Fatalf("invite dave: %v", err)
	}
	if _, err := dave.LeaveRoom(ctxT(t), roomID); err != nil {
		t.Fatalf("rejecting invite: %v", err)
	}
	if m := membership(t, s, alice.AccessToken, roomID, string(dave.UserID)); m != "leave" {
		t.Fatalf("dave's membership after rejecting = %q", m)
	}
	do(t, "POST", roomURL(s, roomID, "join"), dave.AccessToken, map[string]any{}).want(t, http.StatusForbidden, "M_FORBIDDEN")
}

// TestRoomKickBan: kick and ban need power (PL 50); a banned user cannot
// join until unbanned.
func TestRoomKickBan(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	carol := newUser(t, s, "carol")
	dave := newUser(t, s, "dave")
	eve := newUser(t, s, "eve")
	roomID := mkRoomRaw(t, s, alice.AccessToken, map[string]any{
		"preset":                       "public_chat",
		"power_level_content_override": map[string]any{"users": map[string]any{string(bob.UserID): 50, string(alice.UserID): 100}},
	})
	for _, c := range []*mautrix.Client{bob, carol, dave, eve} {
		join(t, c, roomID)
	}
	kick := func(by *mautrix.Client, who id.UserID, reason string) *resp {
		return do(t, "POST", roomURL(s, roomID, "kick"), by.AccessToken, map[string]any{"user_id": string(who), "reason": reason})
	}
	ban := func(by *mautrix.Client, who id.UserID) *resp {
		return do(t, "POST", roomURL(s, roomID, "ban"), by.AccessToken, map[string]any{"user_id": string(who), "reason": "spam"})
	}
	unban := func(by *mautrix.Client, who id.UserID) *resp {
		return do(t, "POST", roomURL(s, roomID, "unban"), by.AccessToken, map[string]any{"user_id": string(who)})
	}

	// Carol (PL 0) cannot kick, ban or unban.
	kick(carol, dave.UserID, "no").want(t, http.StatusForbidden, "M_FORBIDDEN")
	ban(carol, dave.UserID).want(t, http.StatusForbidden, "M_FORBIDDEN")
	if m := membership(t, s, alice.AccessToken, roomID, string(dave.UserID)); m != "join" {
		t.Fatalf("dave membership after refused kick = %q", m)
	}
	// Bob (PL 50) cannot kick the creator.
	kick(bob, alice.UserID, "coup").want(t, http.StatusForbidden, "M_FORBIDDEN")

	// Bob kicks dave.
	if _, err := bob.KickUser(ctxT(t), roomID, &mautrix.ReqKickUser{UserID: dave.UserID, Reason: "cool off"}); err != nil {
		t.Fatalf("kick: %v", err)
	}
	ev := stateEvent(t, fullState(t, s, alice.AccessToken, roomID), "m.room.member", string(dave.UserID))
	if ev.Content["membership"] != "leave" || ev.Content["reason"] != "cool off" || ev.Sender != string(bob.UserID) {
		t.Fatalf("kick event = %+v", ev)
	}
	if slices.Contains(joinedRooms(t, dave), roomID) {
		t.Fatal("kicked user still lists the room")
	}
	join(t, dave, roomID) // a kick is not a ban

	// Bob bans eve; eve cannot rejoin.
	if _, err := bob.BanUser(ctxT(t), roomID, &mautrix.ReqBanUser{UserID: eve.UserID, Reason: "spam"}); err != nil {
		t.Fatalf("ban: %v", err)
	}
	if c := stateContent(t, s, alice.AccessToken, roomID, "m.room.member", string(eve.UserID)); c["membership"] != "ban" || c["reason"] != "spam" {
		t.Fatalf("ban event content = %v", c)
	}
	do(t, "POST", roomURL(s, roomID, "join"), eve.AccessToken, map[string]any{}).want(t, http.StatusForbidden, "M_FORBIDDEN")
	do(t, "PUT", roomURL(s, roomID, "send", "m.room.message", "e1"), eve.AccessToken, map[string]any{"msgtype": "m.text", "body": "x"}).
		want(t, http.StatusForbidden, "M_FORBIDDEN")
	// Banning someone who never joined works too.
	frank := newUser(t, s, "frank")
	ban(bob, frank.UserID).want(t, 200, "")
	do(t, "POST", roomURL(s, roomID, "join"), frank.AccessToken, map[string]any{}).want(t, http.StatusForbidden, "M_FORBIDDEN")

	// Carol cannot unban; bob can, and eve can join the public room again.
	unban(carol, eve.UserID).want(t, http.StatusForbidden, "M_FORBIDDEN")
	if _, err := bob.UnbanUser(ctxT(t), roomID, &mautrix.ReqUnbanUser{UserID: eve.UserID}); err != nil {
		t.Fatalf("unban: %v", err)
	}
	if m := membership(t, s, alice.AccessToken, roomID, string(eve.UserID)); m != "leave" {
		t.Fatalf("membership after unban = %q, want leave", m)
	}
	join(t, eve, roomID)
	jm, err := alice.JoinedMembers(ctxT(t), roomID)
	if err != nil {
		t.Fatal(err)
	}
	if len(jm.Joined) != 5 {
		t.Fatalf("joined members = %v, want alice bob carol dave eve", jm.Joined)
	}
}

// TestRoomKnock: in a room with join_rule knock, a user knocks, a member
// invites them, and they join; knocking on an invite-only room is refused.
func TestRoomKnock(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	for _, ver := range []string{"7", "12"} {
		t.Run("v"+ver, func(t *testing.T) {
			roomID := mkRoomRaw(t, s, alice.AccessToken, map[string]any{
				"room_version":  ver,
				"preset":        "private_chat",
				"initial_state": []any{map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{"join_rule": "knock"}}},
			})
			do(t, "POST", roomURL(s, roomID, "join"), bob.AccessToken, map[string]any{}).want(t, http.StatusForbidden, "M_FORBIDDEN")
			res, err := bob.KnockRoom(ctxT(t), string(roomID), &mautrix.ReqKnockRoom{Reason: "let me in"})
			if err != nil {
				t.Fatalf("knock: %v", err)
			}
			if res.RoomID != roomID {
				t.Fatalf("knock returned room_id %s", res.RoomID)
			}
			if c := stateContent(t, s, alice.AccessToken, roomID, "m.room.member", string(bob.UserID)); c["membership"] != "knock" || c["reason"] != "let me in" {
				t.Fatalf("knock member event = %v", c)
			}
			if k := membersOf(t, s, alice.AccessToken, roomID, map[string][]string{"membership": {"knock"}}); len(k) != 1 || k[string(bob.UserID)] != "knock" {
				t.Fatalf("/members?membership=knock = %v", k)
			}
			// A knock does not let bob read the room.
			do(t, "GET", roomURL(s, roomID, "messages")+"?dir=b", bob.AccessToken, nil).want(t, http.StatusForbidden, "M_FORBIDDEN")
			if _, err := alice.InviteUser(ctxT(t), roomID, &mautrix.ReqInviteUser{UserID: bob.UserID}); err != nil {
				t.Fatalf("inviting the knocker: %v", err)
			}
			join(t, bob, roomID)
			if m := membership(t, s, bob.AccessToken, roomID, string(bob.UserID)); m != "join" {
				t.Fatalf("membership after accept = %q", m)
			}
		})
	}
	invOnly := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	do(t, "POST", v3(s, "knock", string(invOnly)), bob.AccessToken, map[string]any{}).want(t, http.StatusForbidden, "M_FORBIDDEN")
}

// TestRoomRestrictedJoin: a v10 room with join_rule restricted admits members
// of the allowed room and refuses everyone else.
func TestRoomRestrictedJoin(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	carol := newUser(t, s, "carol")
	space := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomVersion: "10"})
	join(t, bob, space)
	restricted := mkRoomRaw(t, s, alice.AccessToken, map[string]any{
		"room_version": "10",
		"preset":       "private_chat",
		"initial_state": []any{map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{
			"join_rule": "restricted",
			"allow":     []any{map[string]any{"type": "m.room_membership", "room_id": string(space)}},
		}}},
	})
	if jr := stateContent(t, s, alice.AccessToken, restricted, "m.room.join_rules", "")["join_rule"]; jr != "restricted" {
		t.Fatalf("join_rule = %v", jr)
	}
	// Carol is not in the space.
	do(t, "POST", roomURL(s, restricted, "join"), carol.AccessToken, map[string]any{}).want(t, http.StatusForbidden, "M_FORBIDDEN")
	// Bob is.
	join(t, bob, restricted)
	c := stateContent(t, s, alice.AccessToken, restricted, "m.room.member", string(bob.UserID))
	if c["membership"] != "join" || c["join_authorised_via_users_server"] != string(alice.UserID) {
		t.Fatalf("restricted join event = %v, want join authorised via alice", c)
	}
	// Once carol joins the space she is admitted too; after leaving it, a
	// left user (dave) is refused again.
	join(t, carol, space)
	join(t, carol, restricted)
	dave := newUser(t, s, "dave")
	join(t, dave, space)
	if _, err := dave.LeaveRoom(ctxT(t), space); err != nil {
		t.Fatal(err)
	}
	do(t, "POST", v3(s, "join", string(restricted)), dave.AccessToken, map[string]any{}).want(t, http.StatusForbidden, "M_FORBIDDEN")
}
