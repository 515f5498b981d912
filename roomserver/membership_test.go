package roomserver

import (
	"errors"
	"testing"

	"matrixhs/storage"
)

const (
	alice = "@alice:a.test"
	bob   = "@bob:a.test"
	carol = "@carol:a.test"
	dave  = "@dave:a.test"
)

// Kicks, bans and unbans: the auth rules decide who may, and the server
// refuses what Synapse refuses although the rules would allow it.
func TestMembershipKickBanUnban(t *testing.T) {
	k := newLocalKit(t)
	room := k.createRoom(CreateRoomRequest{Creator: alice, Preset: PresetPublicChat})
	k.member(room, bob, bob, "join")

	kick, err := k.rs.SetMembership(k.ctx, MembershipRequest{RoomID: room, Sender: alice, Target: bob, Membership: "leave", Kick: true, Reason: "spam"})
	if err != nil {
		t.Fatalf("kick: %v", err)
	}
	if c := k.content(kick.EventID); c["membership"] != "leave" || c["reason"] != "spam" || k.event(kick.EventID).Sender != alice {
		t.Fatalf("kick event content %v", c)
	}
	if m := k.membership(room, bob); m != "leave" {
		t.Fatalf("bob after the kick: %q", m)
	}
	_, err = k.rs.SetMembership(k.ctx, MembershipRequest{RoomID: room, Sender: alice, Target: bob, Membership: "leave", Kick: true})
	wantForbidden(t, "kicking a user who is not in the room", err, "not in the room", "")
	_, err = k.rs.SetMembership(k.ctx, MembershipRequest{RoomID: room, Sender: bob, Target: bob, Membership: "leave"})
	wantForbidden(t, "leaving a room one is not in", err, "you are not in this room", "")

	// A ban needs no membership; it keeps the user out until lifted.
	k.member(room, alice, carol, "ban")
	_, err = k.rs.SetMembership(k.ctx, MembershipRequest{RoomID: room, Sender: carol, Target: carol, Membership: "join"})
	wantForbidden(t, "a banned user joining", err, "", "")
	k.member(room, bob, bob, "join")
	_, err = k.rs.SetMembership(k.ctx, MembershipRequest{RoomID: room, Sender: bob, Target: dave, Membership: "ban"})
	wantForbidden(t, "banning without the power to", err, "", "")
	_, err = k.rs.SetMembership(k.ctx, MembershipRequest{RoomID: room, Sender: bob, Target: carol, Membership: "leave"})
	wantForbidden(t, "unbanning without the power to", err, "", "")
	k.member(room, alice, carol, "leave") // the unban
	if m := k.membership(room, carol); m != "leave" {
		t.Fatalf("carol after the unban: %q", m)
	}
	k.member(room, carol, carol, "join")

	if _, err := k.rs.Membership(k.ctx, "!nowhere:a.test", bob); !errors.Is(err, ErrRoomNotFound) {
		t.Fatalf("membership of an unknown room: %v", err)
	}
}

// Asking again for the membership one has (same sender, same content)
// answers the existing event and stores nothing; other content is a new
// event (a profile change).
func TestMembershipIdenticalStateIsNoop(t *testing.T) {
	k := newLocalKit(t)
	room := k.createRoom(CreateRoomRequest{Creator: alice, Preset: PresetPublicChat,
		PowerLevelOverride: mustJSON(map[string]any{"users": map[string]any{alice: 100, bob: 50}})})
	first := k.member(room, bob, bob, "join")
	pos := k.db.StreamPosition()
	if again := k.member(room, bob, bob, "join"); again != first || k.db.StreamPosition() != pos {
		t.Fatalf("joining again answered %s (position %d -> %d), want the existing %s and no write", again, pos, k.db.StreamPosition(), first)
	}
	renamed, err := k.rs.SetMembership(k.ctx, MembershipRequest{RoomID: room, Sender: bob, Target: bob, Membership: "join", DisplayName: "Bobby"})
	if err != nil || renamed.EventID == first || k.content(renamed.EventID)["displayname"] != "Bobby" {
		t.Fatalf("profile change: %+v, %v", renamed, err)
	}
	// Repeating an invite answers the first; another sender's same invite
	// is a change of its own.
	invite := k.member(room, alice, carol, "invite")
	if again, err := k.rs.SetMembership(k.ctx, MembershipRequest{RoomID: room, Sender: alice, Target: carol, Membership: "invite"}); err != nil || again.EventID != invite {
		t.Fatalf("repeating an invite: %+v, %v; want the first invite", again, err)
	}
	if byBob := k.member(room, bob, carol, "invite"); byBob == invite || k.event(byBob).Sender != bob {
		t.Fatalf("bob's invite answered %s, want a new event", byBob)
	}
}

// Member content: the client's extra keys, the reason, is_direct, and the
// invitee's own profile (a local user's), never a client-chosen
// authorising user.
func TestMembershipContent(t *testing.T) {
	k := newLocalKit(t)
	k.account(carol, "Carol C")
	room := k.createRoom(CreateRoomRequest{Creator: alice, Preset: PresetPrivateChat})
	inv, err := k.rs.SetMembership(k.ctx, MembershipRequest{RoomID: room, Sender: alice, Target: carol, Membership: "invite",
		Reason: "come", IsDirect: true, DisplayName: "ignored for invites", Content: map[string]any{"x.custom": 1}})
	if err != nil {
		t.Fatal(err)
	}
	c := k.content(inv.EventID)
	if c["membership"] != "invite" || c["reason"] != "come" || c["is_direct"] != true || c["displayname"] != "Carol C" || c["x.custom"] != float64(1) {
		t.Fatalf("invite content %v", c)
	}
	join, err := k.rs.SetMembership(k.ctx, MembershipRequest{RoomID: room, Sender: carol, Target: carol, Membership: "join",
		Content: map[string]any{"displayname": "Mine", "join_authorised_via_users_server": alice}, DisplayName: "Profile"})
	if err != nil {
		t.Fatal(err)
	}
	if c := k.content(join.EventID); c["displayname"] != "Mine" || c["join_authorised_via_users_server"] != nil {
		t.Fatalf("join content %v: the client's displayname wins, its authoriser is dropped", c)
	}
}

// Joins to a restricted room (v8+): a member of an allowed room gets a
// local user with the power to invite as authoriser; others are refused;
// invited users join as usual.
func TestMembershipRestrictedJoin(t *testing.T) {
	k := newLocalKit(t)
	space := k.createRoom(CreateRoomRequest{Creator: alice, Preset: PresetPublicChat})
	k.member(space, bob, bob, "join")
	rules := StateEvent{Type: "m.room.join_rules", Content: mustJSON(map[string]any{"join_rule": "restricted",
		"allow": []any{map[string]any{"type": "m.room_membership", "room_id": space}}})}
	room := k.createRoom(CreateRoomRequest{Creator: alice, Preset: PresetPrivateChat, InitialState: []StateEvent{rules}})

	_, err := k.rs.SetMembership(k.ctx, MembershipRequest{RoomID: room, Sender: carol, Target: carol, Membership: "join"})
	wantForbidden(t, "a join from outside the allowed rooms", err, "not a member of a room this room allows", "")
	join := k.member(room, bob, bob, "join")
	if c := k.content(join); c["join_authorised_via_users_server"] != alice {
		t.Fatalf("restricted join content %v, want alice as authoriser", c)
	}
	k.member(room, alice, carol, "invite")
	if c := k.content(k.member(room, carol, carol, "join")); c["join_authorised_via_users_server"] != nil {
		t.Fatalf("an invited user's join names an authoriser: %v", c)
	}

	// Nobody local may invite: the join cannot be authorised here.
	noInvite := k.createRoom(CreateRoomRequest{Creator: alice, Preset: PresetPrivateChat, InitialState: []StateEvent{rules},
		PowerLevelOverride: mustJSON(map[string]any{"invite": 100, "users": map[string]any{alice: 100}})})
	k.send(noInvite, alice, "m.room.power_levels", ptrTo(""), map[string]any{"invite": 100, "users": map[string]any{alice: 50}})
	_, err = k.rs.SetMembership(k.ctx, MembershipRequest{RoomID: noInvite, Sender: bob, Target: bob, Membership: "join"})
	wantForbidden(t, "a restricted join nobody here may authorise", err, "no member of this server may authorise", "")
}

// An admin's block refuses joins, invites and knocks, not leaves.
func TestMembershipBlockedRoom(t *testing.T) {
	k := newLocalKit(t)
	room := k.createRoom(CreateRoomRequest{Creator: alice, Preset: PresetPublicChat})
	k.member(room, bob, bob, "join")
	if err := k.db.Write(k.ctx, func(tx *storage.Tx) error { return tx.SetRoomBlocked(k.ctx, room, true, alice, 1) }); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"join", "invite", "knock"} {
		_, err := k.rs.SetMembership(k.ctx, MembershipRequest{RoomID: room, Sender: carol, Target: carol, Membership: m})
		wantForbidden(t, m+" in a blocked room", err, "blocked", "")
	}
	k.member(room, bob, bob, "leave")
}

func ptrTo(s string) *string { return &s }
