package fedscenario

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/matrix-org/gomatrixserverlib/spec"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"matrixhs/tests/fedtest"
)

// TestThreeServersOneRoom: a room made on hs1 with a published alias is
// joined by alias from hs2 and hs3; from each of the three servers its
// users send messages, edits, reactions and redactions and change the
// name, topic and power levels; remote users are invited and reject,
// invited and rescinded, knock and are let in, kicked, banned and
// unbanned. Every action waits until it reached all three servers before
// the next one, so the room's DAG is a line and all three must show the
// same timeline in /sync, the same history through /messages both ways
// (hs2 and hs3 backfill what came before they joined), and the same
// state. A restricted room whose join rule allows the members of a space
// is joined across servers, authorised by a server that is not the
// room's creator's.
func TestThreeServersOneRoom(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs := n.StartN(3)
	alice, bob, carol := hs[0].NewUser(t, "alice"), hs[1].NewUser(t, "bob"), hs[2].NewUser(t, "carol")
	users := []*fedtest.MautrixUser{alice, bob, carol}

	created, err := alice.CreateRoom(alice.Ctx(), &mautrix.ReqCreateRoom{
		Preset: "public_chat", Visibility: "public", RoomAliasName: "scenario", Name: "Scenario", Topic: "three servers",
		PowerLevelOverride: &event.PowerLevelsEventContent{Users: map[id.UserID]int{
			id.UserID(alice.ID): 100, id.UserID(bob.ID): 100, id.UserID(carol.ID): 100,
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	roomID := string(created.RoomID)
	for _, u := range []*fedtest.MautrixUser{bob, carol} {
		joined, err := u.JoinRoom(u.Ctx(), "#scenario:hs1", nil)
		if err != nil {
			t.Fatalf("%s joining #scenario:hs1: %v", u.ID, err)
		}
		if string(joined.RoomID) != roomID {
			t.Fatalf("%s joined %s, want %s", u.ID, joined.RoomID, roomID)
		}
	}
	all := group{newWatcher(alice), newWatcher(bob), newWatcher(carol)}
	// sent is every event since the room was made, in order.
	sent := []string{stateEventID(t, bob, roomID, spec.MRoomMember, bob.ID), stateEventID(t, carol, roomID, spec.MRoomMember, carol.ID)}
	all.waitFor(t, roomID, sent...)
	// do takes the event of an action and waits until it reached every
	// server.
	do := func(eventID string) string {
		t.Helper()
		all.waitFor(t, roomID, eventID)
		sent = append(sent, eventID)
		return eventID
	}

	var msgs []string
	for _, u := range users {
		msgs = append(msgs, do(send(t, u, roomID, fmt.Sprintf("hello from %s", u.HS.Name))))
	}
	for i, u := range users {
		do(edit(t, u, roomID, msgs[i], fmt.Sprintf("hello from %s (edited)", u.HS.Name)))
	}
	var reactions []string
	for i, u := range users {
		reactions = append(reactions, do(react(t, u, roomID, msgs[(i+1)%3], "👍")))
	}
	for _, u := range users {
		oops := do(send(t, u, roomID, "oops from "+string(u.HS.Name)))
		do(redact(t, u, roomID, oops))
	}
	// A moderator of hs2 redacts hs3's user's reaction.
	do(redact(t, bob, roomID, reactions[2]))
	for _, u := range users {
		do(setState(t, u, roomID, spec.MRoomName, "", map[string]any{"name": "Named by " + string(u.HS.Name)}))
		do(setState(t, u, roomID, spec.MRoomTopic, "", map[string]any{"topic": "Topic of " + string(u.HS.Name)}))
		pl := powerLevels(t, u, roomID)
		pl["events"].(map[string]any)["m.reaction"] = float64(len(u.HS.Name))
		pl["users"].(map[string]any)["@someone:"+string(u.HS.Name)] = 10
		do(setState(t, u, roomID, spec.MRoomPowerLevels, "", pl))
	}

	// dave (hs2) is invited from hs1 and rejects.
	dave := hs[1].NewUser(t, "dave")
	if _, err := alice.InviteUser(alice.Ctx(), id.RoomID(roomID), &mautrix.ReqInviteUser{UserID: id.UserID(dave.ID)}); err != nil {
		t.Fatal(err)
	}
	do(stateEventID(t, alice, roomID, spec.MRoomMember, dave.ID))
	if _, err := dave.LeaveRoom(dave.Ctx(), id.RoomID(roomID)); err != nil {
		t.Fatal(err)
	}
	do(stateEventID(t, bob, roomID, spec.MRoomMember, dave.ID))
	// erin (hs3) is invited from hs2, and hs2 withdraws the invite.
	erin := hs[2].NewUser(t, "erin")
	if _, err := bob.InviteUser(bob.Ctx(), id.RoomID(roomID), &mautrix.ReqInviteUser{UserID: id.UserID(erin.ID)}); err != nil {
		t.Fatal(err)
	}
	do(stateEventID(t, bob, roomID, spec.MRoomMember, erin.ID))
	if _, err := bob.KickUser(bob.Ctx(), id.RoomID(roomID), &mautrix.ReqKickUser{UserID: id.UserID(erin.ID), Reason: "not now"}); err != nil {
		t.Fatal(err)
	}
	do(stateEventID(t, bob, roomID, spec.MRoomMember, erin.ID))
	wantMember(t, users, roomID, dave.ID, spec.Leave)
	wantMember(t, users, roomID, erin.ID, spec.Leave)

	// hs3 makes the room knock-only; gina (hs2) knocks, hs1 lets her in.
	do(setState(t, carol, roomID, spec.MRoomJoinRules, "", map[string]any{"join_rule": "knock"}))
	gina := hs[1].NewUser(t, "gina")
	if _, err := gina.JoinRoom(gina.Ctx(), "#scenario:hs1", nil); !isStatus(err, http.StatusForbidden) {
		t.Fatalf("gina joining a knock-only room: %v", err)
	}
	if _, err := gina.KnockRoom(gina.Ctx(), "#scenario:hs1", &mautrix.ReqKnockRoom{Reason: "let me in"}); err != nil {
		t.Fatal(err)
	}
	do(stateEventID(t, bob, roomID, spec.MRoomMember, gina.ID))
	wantMember(t, users, roomID, gina.ID, spec.Knock)
	if _, err := alice.InviteUser(alice.Ctx(), id.RoomID(roomID), &mautrix.ReqInviteUser{UserID: id.UserID(gina.ID)}); err != nil {
		t.Fatal(err)
	}
	do(stateEventID(t, alice, roomID, spec.MRoomMember, gina.ID))
	if _, err := gina.JoinRoom(gina.Ctx(), roomID, nil); err != nil {
		t.Fatal(err)
	}
	do(stateEventID(t, bob, roomID, spec.MRoomMember, gina.ID))
	wantMember(t, users, roomID, gina.ID, spec.Join)
	do(send(t, gina, roomID, "thanks for letting me in"))
	do(setState(t, alice, roomID, spec.MRoomJoinRules, "", map[string]any{"join_rule": "public"}))

	// hs3 kicks gina, hs1 bans her, hs3 unbans her, and she comes back.
	if _, err := carol.KickUser(carol.Ctx(), id.RoomID(roomID), &mautrix.ReqKickUser{UserID: id.UserID(gina.ID)}); err != nil {
		t.Fatal(err)
	}
	do(stateEventID(t, carol, roomID, spec.MRoomMember, gina.ID))
	wantMember(t, users, roomID, gina.ID, spec.Leave)
	if _, err := alice.BanUser(alice.Ctx(), id.RoomID(roomID), &mautrix.ReqBanUser{UserID: id.UserID(gina.ID), Reason: "spam"}); err != nil {
		t.Fatal(err)
	}
	do(stateEventID(t, alice, roomID, spec.MRoomMember, gina.ID))
	wantMember(t, users, roomID, gina.ID, spec.Ban)
	if _, err := gina.JoinRoom(gina.Ctx(), roomID, nil); !isStatus(err, http.StatusForbidden) {
		t.Fatalf("banned gina joining: %v", err)
	}
	if _, err := carol.UnbanUser(carol.Ctx(), id.RoomID(roomID), &mautrix.ReqUnbanUser{UserID: id.UserID(gina.ID)}); err != nil {
		t.Fatal(err)
	}
	do(stateEventID(t, carol, roomID, spec.MRoomMember, gina.ID))
	wantMember(t, users, roomID, gina.ID, spec.Leave)
	if _, err := gina.JoinRoom(gina.Ctx(), "#scenario:hs1", nil); err != nil {
		t.Fatal(err)
	}
	do(stateEventID(t, bob, roomID, spec.MRoomMember, gina.ID))
	for _, u := range users {
		do(send(t, u, roomID, "goodbye from "+string(u.HS.Name)))
	}

	history := idsOf(agreeOnRoom(t, roomID, 40, users))
	if len(history) < len(sent) || !slices.Equal(history[len(history)-len(sent):], sent) {
		t.Fatalf("the history agreed on is %v\nwant it to end with %v", history, sent)
	}
	checkContent(t, users, roomID, msgs, reactions)

	restrictedRoom(t, alice, bob, carol)
}

// wantMember fails unless every user's server has userID's membership.
func wantMember(t *testing.T, users []*fedtest.MautrixUser, roomID, userID, membership string) {
	t.Helper()
	for _, u := range users {
		var c struct {
			Membership string `json:"membership"`
		}
		if err := u.StateEvent(u.Ctx(), id.RoomID(roomID), event.StateMember, userID, &c); err != nil || c.Membership != membership {
			t.Fatalf("%s has %s as %q (%v), want %q", u.HS.Name, userID, c.Membership, err, membership)
		}
	}
}

// checkContent spot-checks what the servers agreed on: the edits replaced
// the messages' text for clients, and the redacted reaction is empty.
func checkContent(t *testing.T, users []*fedtest.MautrixUser, roomID string, msgs, reactions []string) {
	t.Helper()
	for _, u := range users {
		for i, m := range msgs {
			e, err := u.GetEvent(u.Ctx(), id.RoomID(roomID), id.EventID(m))
			if err != nil {
				t.Fatal(err)
			}
			rel := e.Unsigned.Relations
			if rel.GetLatestEdit() == nil {
				t.Fatalf("%s: message %d has no edit in its relations: %+v", u.HS.Name, i, e.Unsigned)
			}
		}
		e, err := u.GetEvent(u.Ctx(), id.RoomID(roomID), id.EventID(reactions[2]))
		if err != nil {
			t.Fatal(err)
		}
		if len(e.Content.Raw) != 0 || e.Unsigned.RedactedBecause == nil {
			t.Fatalf("%s: redacted reaction %s: %+v", u.HS.Name, reactions[2], e)
		}
	}
}

// restrictedRoom: a room of hs1 lets members of a space join. bob (hs2)
// joins the space and then the room through hs1; carol (hs3), in no
// allowed room yet, is refused; once in the space she joins through hs2,
// which authorises her as a server with a member who may invite. The
// three servers then agree on the room.
func restrictedRoom(t *testing.T, alice, bob, carol *fedtest.MautrixUser) {
	t.Helper()
	space, err := alice.CreateRoom(alice.Ctx(), &mautrix.ReqCreateRoom{
		Preset: "public_chat", RoomAliasName: "space", Name: "Space", CreationContent: map[string]any{"type": "m.space"},
	})
	if err != nil {
		t.Fatal(err)
	}
	room, err := alice.CreateRoom(alice.Ctx(), &mautrix.ReqCreateRoom{
		Preset: "private_chat", Name: "Members of the space",
		InitialState: []*event.Event{{
			Type: event.StateJoinRules, StateKey: ptr(""),
			Content: event.Content{Raw: map[string]any{"join_rule": "restricted",
				"allow": []map[string]any{{"type": "m.room_membership", "room_id": string(space.RoomID)}}}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	roomID := string(room.RoomID)
	setState(t, alice, string(space.RoomID), "m.space.child", roomID, map[string]any{"via": []string{"hs1"}})

	if _, err := bob.JoinRoom(bob.Ctx(), "#space:hs1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.JoinRoom(bob.Ctx(), roomID, &mautrix.ReqJoinRoom{Via: []string{"hs1"}}); err != nil {
		t.Fatalf("bob joining the restricted room: %v", err)
	}
	if _, err := carol.JoinRoom(carol.Ctx(), roomID, &mautrix.ReqJoinRoom{Via: []string{"hs2", "hs1"}}); !isStatus(err, http.StatusForbidden) {
		t.Fatalf("carol joining the restricted room outside the space: %v", err)
	}
	if _, err := carol.JoinRoom(carol.Ctx(), "#space:hs1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := carol.JoinRoom(carol.Ctx(), roomID, &mautrix.ReqJoinRoom{Via: []string{"hs2"}}); err != nil {
		t.Fatalf("carol joining the restricted room through hs2: %v", err)
	}
	users := []*fedtest.MautrixUser{alice, bob, carol}
	all := group{newWatcher(alice), newWatcher(bob), newWatcher(carol)}
	join := stateEventID(t, carol, roomID, spec.MRoomMember, carol.ID)
	all.waitFor(t, roomID, join)
	for _, u := range users {
		var c map[string]any
		if err := u.StateEvent(u.Ctx(), room.RoomID, event.StateMember, carol.ID, &c); err != nil {
			t.Fatal(err)
		}
		if c["membership"] != spec.Join || c["join_authorised_via_users_server"] != bob.ID {
			t.Fatalf("%s's copy of carol's join: %v", u.HS.Name, c)
		}
	}
	for _, u := range users {
		all.waitFor(t, roomID, send(t, u, roomID, "in the restricted room from "+string(u.HS.Name)))
	}
	agreeOnRoom(t, roomID, 3, users)
}

func ptr[T any](v T) *T { return &v }

// isStatus reports whether err is a client-API error with the status.
func isStatus(err error, status int) bool {
	var he mautrix.HTTPError
	return errors.As(err, &he) && he.Response != nil && he.Response.StatusCode == status
}
