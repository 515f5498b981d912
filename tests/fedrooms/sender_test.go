package fedrooms

import (
	"net/http"
	"testing"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/tests/fedtest"
)

// TestMembershipThroughTheSender: with the sender carrying events, a join
// hs1 accepts as the room's resident reaches the room's other servers
// (Forward), a kick reaches the kicked user's server, and an inviter's
// rescission reaches the invitee's server, which each user's sync shows.
func TestMembershipThroughTheSender(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1 := n.Start("hs1")
	hs2 := n.Start("hs2")
	hs3 := n.Start("hs3")
	alice := newUser(t, hs1, "alice")
	bob := newUser(t, hs2, "bob")
	carol := newUser(t, hs3, "carol")
	dave := newUser(t, hs2, "dave")
	roomID := alice.createRoom(map[string]any{"preset": "public_chat"})
	bob.mustJoin(roomID, "hs1")

	// carol joins through hs1, which forwards her join to hs2.
	carol.mustJoin(roomID, "hs1")
	bob.syncUntil("carol's join", func(s map[string]any) bool {
		return hasMember(get(s, "rooms", "join", roomID, "timeline", "events"), carol.ID, spec.Join)
	})

	// Kicked, bob hears of it through hs2.
	alice.must("POST", roomPath(roomID, "/kick"), map[string]any{"user_id": bob.ID})
	bob.leftFrom(roomID)

	// dave is invited, then the invite is withdrawn: hs2 is out of the
	// room, the rescission reaches it as the target's server.
	alice.invite(roomID, dave.ID).want(t, http.StatusOK, "")
	dave.invitedTo(roomID)
	alice.must("POST", roomPath(roomID, "/kick"), map[string]any{"user_id": dave.ID})
	dave.leftFrom(roomID)
	if m := membershipOn(t, hs1, roomID, dave.ID); m != spec.Leave {
		t.Fatalf("hs1 has dave as %q", m)
	}
}

// TestJoinThroughResidentNotSentAgain: a join made through another
// server's send_join is that server's to pass on (Synapse's
// proactively_send = False); the joining server's sender never puts it in a
// transaction, so the resident's first PDU from it is the user's next event.
func TestJoinThroughResidentNotSentAgain(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1 := n.Start("hs1")
	hs2 := n.Start("hs2")
	tap := tapInbound(t, n, hs1)
	alice := newUser(t, hs1, "alice")
	bob := newUser(t, hs2, "bob")
	roomID := alice.createRoom(map[string]any{"preset": "public_chat"})
	bob.mustJoin(roomID, "hs1")
	msg := bob.send(roomID, "after the join")
	alice.syncUntil("bob's message", func(s map[string]any) bool {
		for _, e := range list(get(s, "rooms", "join", roomID, "timeline", "events")) {
			if get(e, "event_id") == msg {
				return true
			}
		}
		return false
	})
	got := tap.received()
	if len(got) == 0 {
		t.Fatal("hs1 got no transaction")
	}
	for _, p := range got {
		if p.Type == spec.MRoomMember && p.StateKey != nil && *p.StateKey == bob.ID {
			t.Fatalf("hs2 sent bob's join again in a transaction: %+v", got)
		}
	}
	if first := got[0]; first.Type != "m.room.message" || first.Content["body"] != "after the join" {
		t.Fatalf("hs1's first PDU from hs2 is %+v, want bob's message", first)
	}
}
