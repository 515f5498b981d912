package fedrooms

import (
	"net/http"
	"testing"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/tests/fedtest"
)

// TestJoinRemoteRoomByIDAndAlias: users of two other servers join a public
// room on hs1, by ID through via and through the older server_name, and by
// alias (resolved through hs1's /query/directory). Each server then holds
// the room's state with the joins it knows of.
func TestJoinRemoteRoomByIDAndAlias(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2, hs3 := n.Start("hs1"), n.Start("hs2"), n.Start("hs3")
	alice := newUser(t, hs1, "alice")
	bob := newUser(t, hs2, "bob")
	carol := newUser(t, hs3, "carol")

	lobby := alice.createRoom(map[string]any{"preset": "public_chat", "room_alias_name": "lobby", "name": "Lobby"})
	alice.send(lobby, "before anyone came")
	plain := alice.createRoom(map[string]any{"preset": "public_chat"})

	// By alias: hs2 asks hs1's directory, which names the servers to join through.
	if got := bob.mustJoin("#lobby:hs1"); got != lobby {
		t.Fatalf("alias join answered %s, want %s", got, lobby)
	}
	// By ID with server_name, as older SDKs send it.
	carol.do("POST", joinPath(lobby, "server_name", "hs1"), map[string]any{}).want(t, http.StatusOK, "")
	// By ID with via.
	if got := bob.mustJoin(plain, "hs1"); got != plain {
		t.Fatalf("join answered %s", got)
	}

	for _, j := range []struct {
		u    *user
		room string
	}{{bob, lobby}, {carol, lobby}, {bob, plain}} {
		if m := membershipOn(t, hs1, j.room, j.u.ID); m != spec.Join {
			t.Fatalf("hs1 has %s as %q in %s", j.u.ID, m, j.room)
		}
		if m := membershipOn(t, j.u.hs, j.room, j.u.ID); m != spec.Join {
			t.Fatalf("%s has %s as %q in %s", j.u.hs.Name, j.u.ID, m, j.room)
		}
	}
	// hs2 learnt the room's state from send_join: alice is joined, the
	// room has its name, and bob's sync shows it.
	if m := membershipOn(t, hs2, lobby, alice.ID); m != spec.Join {
		t.Fatalf("hs2 has alice as %q", m)
	}
	res := bob.syncUntil("the rooms joined", func(s map[string]any) bool {
		return get(s, "rooms", "join", lobby) != nil && get(s, "rooms", "join", plain) != nil
	})
	state := get(res, "rooms", "join", lobby, "state", "events")
	tl := get(res, "rooms", "join", lobby, "timeline", "events")
	if !hasMember(state, alice.ID, spec.Join) && !hasMember(tl, alice.ID, spec.Join) {
		t.Fatalf("bob's sync lacks alice's membership: %v", res)
	}
	if !hasMember(tl, bob.ID, spec.Join) && !hasMember(state, bob.ID, spec.Join) {
		t.Fatalf("bob's sync lacks his join: %v", res)
	}
	if name := bob.must("GET", roomPath(lobby, "/state/m.room.name/"), nil); name["name"] != "Lobby" {
		t.Fatalf("room name on hs2: %v", name)
	}
	// A local user of hs2 joining afterwards joins on hs2, which is in the
	// room now (the sender carries the join to hs1).
	eve := newUser(t, hs2, "eve")
	eve.mustJoin(lobby)
	if m := membershipOn(t, hs2, lobby, eve.ID); m != spec.Join {
		t.Fatalf("hs2 has eve as %q", m)
	}
	// hs3 asked about the alias: hs1's directory answers the room and servers.
	dir := fed(t, hs3, "GET", "hs1", "/_matrix/federation/v1/query/directory?room_alias="+esc("#lobby:hs1"), nil)
	if dir.Status != http.StatusOK || dir.Body["room_id"] != lobby || !contains(list(dir.Body["servers"]), "hs1") || !contains(list(dir.Body["servers"]), "hs2") {
		t.Fatalf("directory: %d %s", dir.Status, dir.Raw)
	}
	fed(t, hs3, "GET", "hs1", "/_matrix/federation/v1/query/directory?room_alias="+esc("#none:hs1"), nil).want(t, http.StatusNotFound, "M_NOT_FOUND")
	// The client API resolves hs1's alias from hs3 too.
	if got := carol.must("GET", "/directory/room/"+esc("#lobby:hs1"), nil); got["room_id"] != lobby {
		t.Fatalf("alias lookup on hs3: %v", got)
	}
}

// TestJoinUnknownRoomWithoutServers: a room this server does not know and
// no other server to ask is 404, as before federation.
func TestJoinUnknownRoomWithoutServers(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1 := n.Start("hs1")
	alice := newUser(t, hs1, "alice")
	alice.join("!nowhere:hs1").want(t, http.StatusNotFound, "M_NOT_FOUND")
	alice.join("!nowhere:hs1", "hs1").want(t, http.StatusNotFound, "M_NOT_FOUND")
	// An alias of a server that cannot be reached: 502, as Synapse.
	alice.join("#nothing:hs9").want(t, http.StatusBadGateway, "M_UNKNOWN")
}

// TestV12RoomAcrossServers: a v12 room (room ID = create event hash, no
// domain) is joined by invite and by ID through via; the invitee's server
// keeps the create event of the invite state only because it hashes to the
// room ID.
func TestV12RoomAcrossServers(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2, hs3 := n.Start("hs1"), n.Start("hs2"), n.Start("hs3")
	alice := newUser(t, hs1, "alice")
	bob := newUser(t, hs2, "bob")
	carol := newUser(t, hs3, "carol")
	roomID := alice.createRoom(map[string]any{"preset": "public_chat", "room_version": "12", "invite": []string{bob.ID}})
	var create bool
	for _, e := range bob.invitedTo(roomID) {
		if get(e, "type") == spec.MRoomCreate && get(e, "event_id") == "$"+roomID[1:] {
			create = true
		}
	}
	if !create {
		t.Fatal("the v12 create event is missing from the invite state")
	}
	bob.mustJoin(roomID)
	carol.mustJoin(roomID, "hs1")
	for _, u := range []*user{bob, carol} {
		for _, hs := range []*fedtest.Server{hs1, u.hs} {
			if m := membershipOn(t, hs, roomID, u.ID); m != spec.Join {
				t.Fatalf("%s has %s as %q", hs.Name, u.ID, m)
			}
		}
	}
	ver, err := hs3.Rooms.RoomVersion(t.Context(), roomID)
	if err != nil || ver.Version() != "12" {
		t.Fatalf("hs3's room version: %v, %v", ver, err)
	}
}
