package fedrooms

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/tests/fedtest"
)

// TestRestrictedJoinThroughSpace: a room of hs1 lets members of a space
// join. carol (hs3) joined the space through hs1, so hs1 authorises her
// join to the room (join_authorised_via_users_server, signed by hs1 in
// send_join); hs2, in the room but not in the space and with no user who
// may invite, cannot authorise, and carol's server moves on to hs1. bob
// (hs2), who is not in the space, is refused.
func TestRestrictedJoinThroughSpace(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2, hs3 := n.Start("hs1"), n.Start("hs2"), n.Start("hs3")
	alice := newUser(t, hs1, "alice")
	bob := newUser(t, hs2, "bob")
	carol := newUser(t, hs3, "carol")

	space := alice.createRoom(map[string]any{"preset": "public_chat", "creation_content": map[string]any{"type": "m.space"}})
	roomID := alice.createRoom(map[string]any{
		"preset": "private_chat", "room_version": "10", "invite": []string{bob.ID},
		"power_level_content_override": map[string]any{"invite": 50},
		"initial_state": []map[string]any{{
			"type": spec.MRoomJoinRules, "state_key": "",
			"content": map[string]any{"join_rule": "restricted", "allow": []map[string]any{{"type": "m.room_membership", "room_id": space}}},
		}},
	})
	alice.putState(space, "m.space.child", roomID, map[string]any{"via": []string{"hs1"}})
	bob.invitedTo(roomID)
	bob.mustJoin(roomID)

	// Bob's fellow hs2 user is in no allowed room: hs1 refuses.
	bob2 := newUser(t, hs2, "bob2")
	r := fed(t, hs2, "GET", "hs1", "/_matrix/federation/v1/make_join/"+esc(roomID)+"/"+esc(bob2.ID)+"?ver=10", nil)
	r.want(t, http.StatusForbidden, "M_FORBIDDEN")
	// hs2 cannot vouch for anyone: it is not in the space.
	r = fed(t, hs3, "GET", "hs2", "/_matrix/federation/v1/make_join/"+esc(roomID)+"/"+esc(carol.ID)+"?ver=10", nil)
	r.want(t, http.StatusBadRequest, "M_UNABLE_TO_AUTHORISE_JOIN")

	carol.mustJoin(space, "hs1")
	if got := carol.mustJoin(roomID, "hs2", "hs1"); got != roomID {
		t.Fatalf("join answered %s", got)
	}
	for _, hs := range []*fedtest.Server{hs1, hs3} {
		if m := membershipOn(t, hs, roomID, carol.ID); m != spec.Join {
			t.Fatalf("%s has carol as %q", hs.Name, m)
		}
		join := eventOn(t, hs, stateEventID(t, hs, roomID, spec.MRoomMember, carol.ID))
		var c struct {
			Content struct {
				Via string `json:"join_authorised_via_users_server"`
			} `json:"content"`
		}
		json.Unmarshal(join.JSON, &c)
		if c.Content.Via != alice.ID || !signedBy(join.JSON, "hs1") || !signedBy(join.JSON, "hs3") {
			t.Fatalf("%s's copy of carol's join: %s", hs.Name, join.JSON)
		}
	}
	// Bob2, in no allowed room, cannot join through anyone.
	bob2.join(roomID, "hs1").want(t, http.StatusForbidden, "M_FORBIDDEN")
}

// TestProfileChangeAfterRestrictedJoinReachesResident: a member event a
// client sends itself (a display name change, which copies the content of
// the restricted join and with it join_authorised_via_users_server) is
// sent without that key: with it, the event would need the named user's
// server's signature and every other server would drop it (as Synapse, the
// server strips it).
func TestProfileChangeAfterRestrictedJoinReachesResident(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	alice := newUser(t, hs1, "alice")
	bob := newUser(t, hs2, "bob")
	space := alice.createRoom(map[string]any{"preset": "public_chat"})
	roomID := alice.createRoom(map[string]any{
		"preset": "public_chat", "room_version": "10",
		"initial_state": []map[string]any{{
			"type": spec.MRoomJoinRules, "state_key": "",
			"content": map[string]any{"join_rule": "restricted", "allow": []map[string]any{{"type": "m.room_membership", "room_id": space, "via": []string{"hs1"}}}},
		}},
	})
	bob.mustJoin(space, "hs1")
	bob.mustJoin(roomID, "hs1")
	bob.putState(roomID, spec.MRoomMember, bob.ID, map[string]any{
		"membership": "join", "displayname": "Bobby", "join_authorised_via_users_server": "unused",
	})
	alice.syncUntil("bob's new name", func(s map[string]any) bool {
		for _, e := range list(get(s, "rooms", "join", roomID, "timeline", "events")) {
			if get(e, "state_key") == bob.ID && get(e, "content", "displayname") == "Bobby" {
				return get(e, "content", "join_authorised_via_users_server") == nil
			}
		}
		return false
	})
}

// TestRestrictedJoinThroughAuthorisingServer: hs1 is in a restricted room
// but none of its members may invite, so it cannot authorise bob's join;
// as Synapse, it joins him through the server whose member may (hs2),
// even though hs1 is in the room already.
func TestRestrictedJoinThroughAuthorisingServer(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	carol := newUser(t, hs2, "carol")
	alice := newUser(t, hs1, "alice")
	bob := newUser(t, hs1, "bob")
	space := carol.createRoom(map[string]any{"preset": "public_chat"})
	roomID := carol.createRoom(map[string]any{
		"preset": "public_chat", "room_version": "10",
		"power_level_content_override": map[string]any{"invite": 50},
		"initial_state": []map[string]any{{
			"type": spec.MRoomJoinRules, "state_key": "",
			"content": map[string]any{"join_rule": "restricted", "allow": []map[string]any{{"type": "m.room_membership", "room_id": space, "via": []string{"hs2"}}}},
		}},
	})
	carol.invite(roomID, alice.ID).want(t, http.StatusOK, "")
	alice.invitedTo(roomID)
	alice.mustJoin(roomID, "hs2")
	alice.invite(roomID, bob.ID).want(t, http.StatusForbidden, "M_FORBIDDEN")

	bob.join(roomID, "hs1").want(t, http.StatusForbidden, "M_FORBIDDEN")
	bob.mustJoin(space, "hs2")
	bob.mustJoin(roomID, "hs1")
	for _, hs := range []*fedtest.Server{hs1, hs2} {
		if m := membershipOn(t, hs, roomID, bob.ID); m != spec.Join {
			t.Fatalf("%s has bob as %q", hs.Name, m)
		}
	}
	join := eventOn(t, hs2, stateEventID(t, hs2, roomID, spec.MRoomMember, bob.ID))
	var c struct {
		Content struct {
			Via string `json:"join_authorised_via_users_server"`
		} `json:"content"`
	}
	json.Unmarshal(join.JSON, &c)
	if c.Content.Via != carol.ID || !signedBy(join.JSON, "hs2") {
		t.Fatalf("bob's join: %s", join.JSON)
	}
}

// TestRejoinAsksOnlyTheNamedServers: a user who left a room (her server
// still holds its state) and joins again naming a server asks only that
// server, as Synapse: hs2, which cannot authorise a restricted join, is
// not rescued by hs1 from the held state.
func TestRejoinAsksOnlyTheNamedServers(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2, hs3 := n.Start("hs1"), n.Start("hs2"), n.Start("hs3")
	alice := newUser(t, hs1, "alice")
	bob := newUser(t, hs2, "bob")
	carol := newUser(t, hs3, "carol")
	space := alice.createRoom(map[string]any{"preset": "public_chat"})
	roomID := alice.createRoom(map[string]any{
		"preset": "public_chat", "room_version": "10",
		"power_level_content_override": map[string]any{"invite": 100},
		"initial_state": []map[string]any{{
			"type": spec.MRoomJoinRules, "state_key": "",
			"content": map[string]any{"join_rule": "restricted", "allow": []map[string]any{{"type": "m.room_membership", "room_id": space, "via": []string{"hs1"}}}},
		}},
	})
	bob.mustJoin(space, "hs1")
	bob.mustJoin(roomID, "hs1")
	carol.mustJoin(space, "hs1")
	carol.mustJoin(roomID, "hs1")
	carol.leave(roomID).want(t, http.StatusOK, "")
	carol.leftFrom(roomID)
	bob.syncUntil("carol's leave", func(s map[string]any) bool {
		return hasMember(get(s, "rooms", "join", roomID, "timeline", "events"), carol.ID, spec.Leave)
	})

	carol.join(roomID, "hs2").want(t, http.StatusBadRequest, "M_UNABLE_TO_AUTHORISE_JOIN")
	if m := membershipOn(t, hs3, roomID, carol.ID); m != spec.Leave {
		t.Fatalf("hs3 has carol as %q", m)
	}
	carol.mustJoin(roomID, "hs2", "hs1")
}
