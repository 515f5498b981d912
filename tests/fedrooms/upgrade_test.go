package fedrooms

import (
	"net/http"
	"testing"

	"matrixhs/tests/fedtest"
)

// TestJoiningRemoteUpgradedRoomCarriesUserState: a room of hs1 is
// upgraded; when bob (hs2) joins the new room over federation, his push
// rules and tags for the old room follow him there, as they do for a local
// upgrade (Synapse copies them when a server joins an upgraded room).
func TestJoiningRemoteUpgradedRoomCarriesUserState(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	alice := newUser(t, hs1, "alice")
	bob := newUser(t, hs2, "bob")
	oldRoom := alice.createRoom(map[string]any{"preset": "public_chat", "room_version": "10"})
	bob.mustJoin(oldRoom, "hs1")
	bob.must("PUT", "/pushrules/global/room/"+esc(oldRoom), map[string]any{"actions": []string{"dont_notify"}})
	bob.must("PUT", "/user/"+esc(bob.ID)+"/rooms/"+esc(oldRoom)+"/tags/u.work", map[string]any{"order": 0.5})

	newRoom := alice.must("POST", roomPath(oldRoom, "/upgrade"), map[string]any{"new_version": "11"})["replacement_room"].(string)
	bob.syncUntil("the tombstone", func(s map[string]any) bool {
		for _, e := range list(get(s, "rooms", "join", oldRoom, "timeline", "events")) {
			if get(e, "type") == "m.room.tombstone" {
				return true
			}
		}
		return false
	})
	bob.mustJoin(newRoom, "hs1")

	r := bob.do("GET", "/pushrules/global/room/"+esc(newRoom), nil)
	r.want(t, http.StatusOK, "")
	if actions := list(r.Body["actions"]); len(actions) != 1 || actions[0] != "dont_notify" {
		t.Fatalf("bob's push rule for the new room: %s", r.Raw)
	}
	tags := bob.must("GET", "/user/"+esc(bob.ID)+"/rooms/"+esc(newRoom)+"/tags", nil)
	if get(tags, "tags", "u.work") == nil {
		t.Fatalf("bob's tags of the new room: %v", tags)
	}
}
