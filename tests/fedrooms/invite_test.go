package fedrooms

import (
	"net/http"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/roomserver"
	"matrixhs/tests/fedtest"
)

// invitedTo waits until u's sync lists roomID under rooms.invite and
// returns its invite_state events.
func (u *user) invitedTo(roomID string) []any {
	u.t.Helper()
	res := u.syncUntil("the invite to "+roomID, func(s map[string]any) bool {
		return get(s, "rooms", "invite", roomID) != nil
	})
	return list(get(res, "rooms", "invite", roomID, "invite_state", "events"))
}

// leftFrom waits until u's sync (with left rooms) shows u's leave of roomID.
func (u *user) leftFrom(roomID string) {
	u.t.Helper()
	u.syncFilteredUntil(withLeft, "the leave of "+roomID, func(s map[string]any) bool {
		room := get(s, "rooms", "leave", roomID)
		return room != nil && (hasMember(get(room, "timeline", "events"), u.ID, spec.Leave) || hasMember(get(room, "state", "events"), u.ID, spec.Leave))
	})
}

// TestRemoteInvite: alice on hs1 invites bob on hs2 (at room creation and
// later): hs2 signs the invite, bob's sync shows it with the room's
// summary (the create event in full, MSC4311, the name, the inviter), and
// bob joins through the inviter's server without naming one.
func TestRemoteInvite(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	alice := newUser(t, hs1, "alice")
	bob := newUser(t, hs2, "bob")

	roomID := alice.createRoom(map[string]any{"preset": "private_chat", "name": "Secret", "invite": []string{bob.ID}, "is_direct": true})
	if m := membershipOn(t, hs1, roomID, bob.ID); m != spec.Invite {
		t.Fatalf("hs1 has bob as %q", m)
	}
	// The stored invite carries both servers' signatures.
	invite := eventOn(t, hs1, stateEventID(t, hs1, roomID, spec.MRoomMember, bob.ID))
	if !signedBy(invite.JSON, "hs1") || !signedBy(invite.JSON, "hs2") {
		t.Fatalf("invite signatures: %s", invite.JSON)
	}
	st := bob.invitedTo(roomID)
	var create, name, inviter, self bool
	for _, e := range st {
		switch {
		case get(e, "type") == spec.MRoomCreate:
			create = get(e, "event_id") != nil && get(e, "room_id") == roomID && get(e, "origin_server_ts") != nil
		case get(e, "type") == spec.MRoomName:
			name = get(e, "content", "name") == "Secret"
		case get(e, "type") == spec.MRoomMember && get(e, "state_key") == alice.ID:
			inviter = get(e, "content", "membership") == spec.Join
		case get(e, "type") == spec.MRoomMember && get(e, "state_key") == bob.ID:
			self = get(e, "content", "membership") == spec.Invite && get(e, "content", "is_direct") == true
		}
	}
	if !create || !name || !inviter || !self {
		t.Fatalf("invite_state (create %v, name %v, inviter %v, invite %v): %v", create, name, inviter, self, st)
	}
	// Sliding sync lists the room with the same invite state.
	ss := bob.slidingSync()
	if ssState := list(get(ss, "rooms", roomID, "invite_state")); len(ssState) != len(st) {
		t.Fatalf("sliding sync invite_state: %v", get(ss, "rooms", roomID))
	}
	// Bob joins without naming a server: the inviter's is used.
	bob.mustJoin(roomID)
	if m := membershipOn(t, hs1, roomID, bob.ID); m != spec.Join {
		t.Fatalf("hs1 has bob as %q after the join", m)
	}
	if m := membershipOn(t, hs2, roomID, bob.ID); m != spec.Join {
		t.Fatalf("hs2 has bob as %q after the join", m)
	}
	// The invite the join replaced was promoted into hs2's copy of the room.
	join := bob.syncUntil("the join", func(s map[string]any) bool { return get(s, "rooms", "join", roomID) != nil })
	if !hasMember(get(join, "rooms", "join", roomID, "timeline", "events"), bob.ID, spec.Join) {
		t.Fatalf("bob's join not in his timeline: %v", get(join, "rooms", "join", roomID))
	}

	// A later invite through /invite.
	carol := newUser(t, hs2, "carol")
	room2 := alice.createRoom(map[string]any{"preset": "private_chat"})
	alice.invite(room2, carol.ID).want(t, http.StatusOK, "")
	carol.invitedTo(room2)
	// Inviting a user hs2 does not have: hs2 refuses, and so does hs1.
	r := alice.invite(room2, "@nobody:hs2")
	r.want(t, http.StatusNotFound, "M_NOT_FOUND")
	if msg, _ := r.Body["error"].(string); !strings.Contains(msg, "@nobody:hs2") {
		t.Fatalf("refusal: %s", r.Raw)
	}
	if m := membershipOn(t, hs1, room2, "@nobody:hs2"); m != "" {
		t.Fatalf("refused invite left membership %q", m)
	}
}

// TestRejectRemoteInvite: bob rejects an invite through hs1
// (make_leave/send_leave); both servers record the leave and bob's sync
// shows the room as left. Repeated invites and rejections work.
func TestRejectRemoteInvite(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	alice := newUser(t, hs1, "alice")
	bob := newUser(t, hs2, "bob")
	roomID := alice.createRoom(map[string]any{"preset": "private_chat"})
	for i := 0; i < 3; i++ {
		alice.invite(roomID, bob.ID).want(t, http.StatusOK, "")
		bob.invitedTo(roomID)
		bob.leave(roomID).want(t, http.StatusOK, "")
		if m := membershipOn(t, hs1, roomID, bob.ID); m != spec.Leave {
			t.Fatalf("round %d: hs1 has bob as %q", i, m)
		}
		bob.leftFrom(roomID)
	}
	// hs2 never joined: the room has no state there.
	if _, err := hs2.Rooms.StrippedState(t.Context(), roomID, ""); err != nil {
		t.Fatalf("stripped state of a room hs2 only knows out of band: %v", err)
	}
}

// TestRejectInviteWhenInviterGone: the invite's room is unreachable (hs1
// stopped): bob's rejection still succeeds, with a leave made on hs2 (as
// Synapse), and his sync shows the room left.
func TestRejectInviteWhenInviterGone(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	alice := newUser(t, hs1, "alice")
	bob := newUser(t, hs2, "bob")
	roomID := alice.createRoom(map[string]any{"preset": "private_chat", "invite": []string{bob.ID}})
	bob.invitedTo(roomID)
	hs1.Stop()
	bob.leave(roomID).want(t, http.StatusOK, "")
	bob.leftFrom(roomID)
	m, err := hs2.DB.CurrentOutOfBand(t.Context(), roomID, bob.ID)
	if err != nil || m.Membership != spec.Leave || m.Sender != bob.ID {
		t.Fatalf("hs2's record of the leave: %+v, %v", m, err)
	}
}

// TestRescindRemoteInvite: alice withdraws her invite of bob (a leave for
// him, which the sender carries to hs2): hs2 takes the leave of the
// inviter out of band and bob sees the room left; a leave of bob by
// someone else than the inviter does not withdraw the invite.
func TestRescindRemoteInvite(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	alice := newUser(t, hs1, "alice")
	alice2 := newUser(t, hs1, "alice2")
	bob := newUser(t, hs2, "bob")

	// Withdrawn by the inviter, delivered to the roomserver's Input.
	roomID := alice.createRoom(map[string]any{"preset": "private_chat", "invite": []string{bob.ID}})
	bob.invitedTo(roomID)
	alice.must("POST", roomPath(roomID, "/kick"), map[string]any{"user_id": bob.ID, "reason": "changed my mind"})
	rescind := stateEventID(t, hs1, roomID, spec.MRoomMember, bob.ID)
	if res := deliver(t, hs1, hs2, rescind); res.Err != nil || res.Status != roomserver.StatusOutlier {
		t.Fatalf("hs2 took the rescission as %v, %v", res.Status, res.Err)
	}
	bob.leftFrom(roomID)

	// The same through the entry point for rooms this server is not in.
	room1 := alice.createRoom(map[string]any{"preset": "private_chat", "invite": []string{bob.ID}})
	bob.invitedTo(room1)
	alice.must("POST", roomPath(room1, "/kick"), map[string]any{"user_id": bob.ID})
	leave := eventOn(t, hs1, stateEventID(t, hs1, room1, spec.MRoomMember, bob.ID))
	if handled, err := hs2.Rooms.InputRescindedInvite(t.Context(), "hs1", leave.JSON); !handled || err != nil {
		t.Fatalf("rescission not taken: %v, %v", handled, err)
	}
	bob.leftFrom(room1)

	// Kicked by someone else than the inviter: the invite stands on hs2.
	room2 := alice.createRoom(map[string]any{"preset": "private_chat", "invite": []string{alice2.ID}})
	alice2.mustJoin(room2)
	alice.must("PUT", roomPath(room2, "/state/m.room.power_levels/"), map[string]any{
		"users": map[string]any{alice.ID: 100, alice2.ID: 50}, "invite": 0,
	})
	alice2.invite(room2, bob.ID).want(t, http.StatusOK, "")
	bob.invitedTo(room2)
	alice.must("POST", roomPath(room2, "/kick"), map[string]any{"user_id": bob.ID})
	notByInviter := stateEventID(t, hs1, room2, spec.MRoomMember, bob.ID)
	res := deliver(t, hs1, hs2, notByInviter)
	if res.Err == nil {
		t.Fatalf("hs2 took a leave by someone else than the inviter: %v", res.Status)
	}
	if handled, err := hs2.Rooms.InputRescindedInvite(t.Context(), "hs1", eventOn(t, hs1, notByInviter).JSON); handled || err != nil {
		t.Fatalf("a leave by someone else than the inviter was taken: %v, %v", handled, err)
	}
	if m := membershipOn(t, hs2, room2, bob.ID); m != "" {
		t.Fatalf("hs2's room head has bob as %q", m)
	}
	if oob, err := hs2.DB.CurrentOutOfBand(t.Context(), room2, bob.ID); err != nil || oob.Membership != spec.Invite {
		t.Fatalf("bob's invite on hs2: %+v, %v", oob, err)
	}
}

// TestRemoteInviteWhenParticipating: hs2 is in the room already; a second
// user of hs2 invited there sees the invite at once (out of band) and the
// invite event, once it arrives in the room's timeline, is promoted; the
// user then joins on hs2 itself. A third joins before his invite arrived.
func TestRemoteInviteWhenParticipating(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	alice := newUser(t, hs1, "alice")
	bob := newUser(t, hs2, "bob")
	bob2 := newUser(t, hs2, "bob2")
	roomID := alice.createRoom(map[string]any{"preset": "private_chat", "invite": []string{bob.ID}})
	bob.invitedTo(roomID)
	bob.mustJoin(roomID)

	alice.invite(roomID, bob2.ID).want(t, http.StatusOK, "")
	bob2.invitedTo(roomID)
	// The sender would carry the invite to hs2 (it has a member joined).
	inv := stateEventID(t, hs1, roomID, spec.MRoomMember, bob2.ID)
	if res := deliver(t, hs1, hs2, inv); res.Err != nil || res.Status != roomserver.StatusAccepted {
		t.Fatalf("hs2 took the invite as %v, %v", res.Status, res.Err)
	}
	if m := membershipOn(t, hs2, roomID, bob2.ID); m != spec.Invite {
		t.Fatalf("hs2's room has bob2 as %q", m)
	}
	bob2.mustJoin(roomID)
	if m := membershipOn(t, hs2, roomID, bob2.ID); m != spec.Join {
		t.Fatalf("hs2 has bob2 as %q", m)
	}

	// bob3's invite has not reached hs2's copy of the room (hs1's sender
	// is stopped: only the invite request reaches hs2): his join goes
	// through the inviter's server instead of failing here.
	hs1.Sender.Stop()
	bob3 := newUser(t, hs2, "bob3")
	alice.invite(roomID, bob3.ID).want(t, http.StatusOK, "")
	bob3.invitedTo(roomID)
	bob3.mustJoin(roomID)
	// If the invite reached hs2's room meanwhile, the join was local and
	// reaches hs1 through the sender: wait for it there.
	alice.syncUntil("bob3's join", func(s map[string]any) bool {
		return hasMember(get(s, "rooms", "join", roomID, "timeline", "events"), bob3.ID, spec.Join)
	})
	for _, hs := range []*fedtest.Server{hs1, hs2} {
		if m := membershipOn(t, hs, roomID, bob3.ID); m != spec.Join {
			t.Fatalf("%s has bob3 as %q", hs.Name, m)
		}
	}
	// hs2 still has its other members joined.
	if m := membershipOn(t, hs2, roomID, bob.ID); m != spec.Join {
		t.Fatalf("hs2 has bob as %q", m)
	}
}

// stateEventID is the ID of a room's current state event on a server.
func stateEventID(t *testing.T, hs *fedtest.Server, roomID, typ, key string) string {
	t.Helper()
	info, err := hs.DB.Room(t.Context(), roomID)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := hs.DB.CurrentStateEvents(t.Context(), info.NID, typ)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.StateKey != nil && *e.StateKey == key {
			return e.EventID
		}
	}
	t.Fatalf("no %s %q in %s on %s", typ, key, roomID, hs.Name)
	return ""
}
