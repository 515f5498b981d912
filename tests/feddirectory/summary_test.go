package feddirectory

import (
	"net/http"
	"net/url"
	"testing"

	"matrixhs/tests/fedtest"
)

// TestRemoteRoomSummary: alice of hs1 previews bob's rooms on hs2, which
// hs1 is not in: by alias (resolved through hs2) and by room ID with via,
// on the stable and unstable paths; private rooms stay hidden, unknown
// rooms and aliases are 404, bad input 400.
func TestRemoteRoomSummary(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	alice := newUser(t, hs1, "alice")
	bob := newUser(t, hs2, "bob")
	lobby := bob.createRoom(map[string]any{"preset": "public_chat", "room_alias_name": "lobby", "name": "The Lobby", "topic": "come in"})
	secret := bob.createRoom(map[string]any{"preset": "private_chat", "room_alias_name": "secret", "name": "Secret"})

	summary := func(target, query string, anonymous bool) fedtest.Response {
		t.Helper()
		return alice.call("GET", "/_matrix/client/v1/room_summary/"+url.PathEscape(target)+query, nil, anonymous)
	}
	joined := float64(1)
	check := func(r fedtest.Response, membership string) {
		t.Helper()
		r.Want(t, http.StatusOK, "")
		if r.Body["room_id"] != lobby || r.Body["name"] != "The Lobby" || r.Body["topic"] != "come in" ||
			r.Body["join_rule"] != "public" || r.Body["num_joined_members"] != joined || r.Body["room_version"] == nil {
			t.Fatalf("summary of the lobby: %s", r.Raw)
		}
		if got, _ := r.Body["membership"].(string); got != membership {
			t.Fatalf("membership %q, want %q: %s", got, membership, r.Raw)
		}
	}
	check(summary("#lobby:hs2", "", false), "leave")
	check(summary(lobby, "?via=hs2", false), "leave")
	check(summary(lobby, "?via=hs9&via=hs2", false), "leave") // the first via cannot be reached
	check(summary("#lobby:hs2", "", true), "")
	r := alice.call("GET", "/_matrix/client/unstable/im.nheko.summary/rooms/"+url.PathEscape("#lobby:hs2")+"/summary", nil, false)
	check(r, "leave")
	if r.Body["im.nheko.summary.room_version"] == nil {
		t.Fatalf("unstable summary: %s", r.Raw)
	}

	// Without a server to ask, hs1 knows nothing of the room.
	summary(lobby, "", false).Want(t, http.StatusNotFound, "M_NOT_FOUND")
	// Private rooms are not leaked, by alias or ID.
	summary("#secret:hs2", "", false).Want(t, http.StatusNotFound, "M_NOT_FOUND")
	summary(secret, "?via=hs2", false).Want(t, http.StatusNotFound, "M_NOT_FOUND")
	summary("#nothing:hs2", "", false).Want(t, http.StatusNotFound, "M_NOT_FOUND")
	summary("!nothing:hs2", "?via=hs2", false).Want(t, http.StatusNotFound, "M_NOT_FOUND")
	summary(lobby, "?via="+url.QueryEscape("bad name"), false).Want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	summary("#lobby:bad name", "", false).Want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	summary("lobby", "", false).Want(t, http.StatusBadRequest, "M_INVALID_PARAM")

	// Invited to the private room, alice may preview it through hs2.
	bob.Must("POST", "/rooms/"+esc(secret)+"/invite", map[string]any{"user_id": alice.ID})
	r = summary(secret, "?via=hs2", false)
	r.Want(t, http.StatusOK, "")
	if r.Body["room_id"] != secret || r.Body["membership"] != "invite" || r.Body["join_rule"] != "invite" {
		t.Fatalf("summary of the room alice is invited to: %s", r.Raw)
	}
	// Joined, hs1 answers from its own state.
	alice.call("POST", "/_matrix/client/v3/join/"+esc(lobby)+"?via=hs2", map[string]any{}, false).Want(t, http.StatusOK, "")
	joined = 2
	check(summary(lobby, "", false), "join")
}
