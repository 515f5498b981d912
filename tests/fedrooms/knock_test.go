package fedrooms

import (
	"net/http"
	"testing"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/tests/fedtest"
)

// TestRemoteKnock: bob on hs2 knocks on a room of hs1 (make_knock,
// send_knock) and sees it under rooms.knock with the room's summary;
// alice accepts by inviting him and he joins. carol on hs3 knocks and is
// denied; dave withdraws his knock (make_leave, send_leave).
func TestRemoteKnock(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2, hs3 := n.Start("hs1"), n.Start("hs2"), n.Start("hs3")
	alice := newUser(t, hs1, "alice")
	bob := newUser(t, hs2, "bob")
	carol := newUser(t, hs3, "carol")
	dave := newUser(t, hs3, "dave")
	roomID := alice.createRoom(map[string]any{"preset": "private_chat", "room_version": "11", "name": "Knock knock"})
	alice.putState(roomID, spec.MRoomJoinRules, "", map[string]any{"join_rule": spec.Knock})

	knockPath := "/knock/" + esc(roomID) + "?via=hs1"
	// Knocking without a server to ask: hs2 does not know the room.
	bob.do("POST", "/knock/"+esc(roomID), map[string]any{"reason": "let me in"}).want(t, http.StatusNotFound, "M_NOT_FOUND")
	bob.must("POST", knockPath, map[string]any{"reason": "let me in"})
	if m := membershipOn(t, hs1, roomID, bob.ID); m != spec.Knock {
		t.Fatalf("hs1 has bob as %q", m)
	}
	res := bob.syncUntil("the knock", func(s map[string]any) bool { return get(s, "rooms", "knock", roomID) != nil })
	var create, name, self bool
	for _, e := range list(get(res, "rooms", "knock", roomID, "knock_state", "events")) {
		switch get(e, "type") {
		case spec.MRoomCreate:
			create = get(e, "event_id") != nil && get(e, "room_id") == roomID
		case spec.MRoomName:
			name = get(e, "content", "name") == "Knock knock"
		case spec.MRoomMember:
			self = get(e, "state_key") == bob.ID && get(e, "content", "membership") == spec.Knock
		}
	}
	if !create || !name || !self {
		t.Fatalf("knock_state (create %v, name %v, knock %v): %v", create, name, self, get(res, "rooms", "knock", roomID))
	}
	// Accepted: alice invites bob, who joins.
	alice.invite(roomID, bob.ID).want(t, http.StatusOK, "")
	bob.invitedTo(roomID)
	bob.mustJoin(roomID)
	if m := membershipOn(t, hs1, roomID, bob.ID); m != spec.Join {
		t.Fatalf("hs1 has bob as %q after the join", m)
	}

	// Denied: alice turns carol's knock down.
	carol.must("POST", knockPath, map[string]any{})
	alice.must("POST", roomPath(roomID, "/kick"), map[string]any{"user_id": carol.ID, "reason": "no"})
	if m := membershipOn(t, hs1, roomID, carol.ID); m != spec.Leave {
		t.Fatalf("hs1 has carol as %q", m)
	}

	// Withdrawn: dave leaves before anyone answers.
	dave.must("POST", knockPath, map[string]any{})
	dave.leave(roomID).want(t, http.StatusOK, "")
	if m := membershipOn(t, hs1, roomID, dave.ID); m != spec.Leave {
		t.Fatalf("hs1 has dave as %q", m)
	}
	dave.leftFrom(roomID)

	// A room that does not allow knocking refuses: 403 from hs1.
	closed := alice.createRoom(map[string]any{"preset": "private_chat"})
	dave.do("POST", "/knock/"+esc(closed)+"?via=hs1", map[string]any{}).want(t, http.StatusForbidden, "M_FORBIDDEN")
}
