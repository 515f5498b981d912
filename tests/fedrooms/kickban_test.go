package fedrooms

import (
	"net/http"
	"testing"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/roomserver"
	"matrixhs/tests/fedtest"
)

// TestKickAndBanRemoteUser: alice (hs1) kicks bob (hs2) from a room; the
// kick, once it reaches hs2 (as the sender delivers member events to the
// target's server), leaves hs2 out of the room, and bob rejoins through
// hs1 on top of the state hs2 held. Then alice bans him: hs2 takes the
// ban, and hs1 refuses bob's next join.
func TestKickAndBanRemoteUser(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	alice := newUser(t, hs1, "alice")
	bob := newUser(t, hs2, "bob")
	roomID := alice.createRoom(map[string]any{"preset": "public_chat"})
	bob.mustJoin(roomID, "hs1")

	alice.must("POST", roomPath(roomID, "/kick"), map[string]any{"user_id": bob.ID, "reason": "out"})
	if m := membershipOn(t, hs1, roomID, bob.ID); m != spec.Leave {
		t.Fatalf("hs1 has bob as %q after the kick", m)
	}
	kick := stateEventID(t, hs1, roomID, spec.MRoomMember, bob.ID)
	if res := deliver(t, hs1, hs2, kick); res.Err != nil || res.Status != roomserver.StatusAccepted {
		t.Fatalf("hs2 took the kick as %v, %v", res.Status, res.Err)
	}
	if m := membershipOn(t, hs2, roomID, bob.ID); m != spec.Leave {
		t.Fatalf("hs2 has bob as %q after the kick", m)
	}
	bob.leftFrom(roomID)

	// hs2 has no member in the room any more: the rejoin goes through hs1.
	bob.mustJoin(roomID, "hs1")
	for _, hs := range []*fedtest.Server{hs1, hs2} {
		if m := membershipOn(t, hs, roomID, bob.ID); m != spec.Join {
			t.Fatalf("%s has bob as %q after the rejoin", hs.Name, m)
		}
	}

	alice.must("POST", roomPath(roomID, "/ban"), map[string]any{"user_id": bob.ID, "reason": "gone"})
	ban := stateEventID(t, hs1, roomID, spec.MRoomMember, bob.ID)
	if res := deliver(t, hs1, hs2, ban); res.Err != nil || res.Status != roomserver.StatusAccepted {
		t.Fatalf("hs2 took the ban as %v, %v", res.Status, res.Err)
	}
	if m := membershipOn(t, hs2, roomID, bob.ID); m != spec.Ban {
		t.Fatalf("hs2 has bob as %q after the ban", m)
	}
	bob.join(roomID, "hs1").want(t, http.StatusForbidden, "M_FORBIDDEN")
	fed(t, hs2, "GET", "hs1", "/_matrix/federation/v1/make_join/"+esc(roomID)+"/"+esc(bob.ID)+"?ver=10&ver=11", nil).want(t, http.StatusForbidden, "M_FORBIDDEN")
	// Unbanned, he may come back.
	alice.must("POST", roomPath(roomID, "/unban"), map[string]any{"user_id": bob.ID})
	bob.mustJoin(roomID, "hs1")
	for _, hs := range []*fedtest.Server{hs1, hs2} {
		if m := membershipOn(t, hs, roomID, bob.ID); m != spec.Join {
			t.Fatalf("%s has bob as %q after the unban and join", hs.Name, m)
		}
	}
}
