package fedrooms

import (
	"net/http"
	"net/url"
	"testing"

	"matrixhs/tests/fedtest"
)

// TestProfileAcrossServers: a client's profile lookups of another server's
// user are answered by that server (/query/profile, both fields or the one
// asked; unset ones are null there, absent or 404 for the client, as
// Synapse); its refusals come back as they are.
func TestProfileAcrossServers(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	alice := newUser(t, hs1, "alice")
	bob := newUser(t, hs2, "bob")
	alice.must("PUT", "/profile/"+esc(alice.ID)+"/displayname", map[string]any{"displayname": "Alice Cooper"})
	alice.must("PUT", "/profile/"+esc(alice.ID)+"/avatar_url", map[string]any{"avatar_url": ""})

	got := bob.must("GET", "/profile/"+esc(alice.ID), nil)
	if got["displayname"] != "Alice Cooper" || got["avatar_url"] != nil {
		t.Fatalf("alice's profile from hs2: %v", got)
	}
	if got := bob.must("GET", "/profile/"+esc(alice.ID)+"/displayname", nil); got["displayname"] != "Alice Cooper" {
		t.Fatalf("alice's display name from hs2: %v", got)
	}
	bob.do("GET", "/profile/"+esc(alice.ID)+"/avatar_url", nil).want(t, http.StatusNotFound, "M_NOT_FOUND")
	bob.do("GET", "/profile/"+esc("@nobody:hs1"), nil).want(t, http.StatusNotFound, "M_NOT_FOUND")

	// What hs1 answers other servers.
	q := func(userID, field string) response {
		v := url.Values{"user_id": {userID}}
		if field != "" {
			v.Set("field", field)
		}
		return fed(t, hs2, "GET", "hs1", "/_matrix/federation/v1/query/profile?"+v.Encode(), nil)
	}
	r := q(alice.ID, "")
	r.want(t, http.StatusOK, "")
	if v, ok := r.Body["avatar_url"]; !ok || v != nil || r.Body["displayname"] != "Alice Cooper" {
		t.Fatalf("query of both fields: %s", r.Raw)
	}
	r = q(alice.ID, "displayname")
	if _, ok := r.Body["avatar_url"]; ok || r.Body["displayname"] != "Alice Cooper" {
		t.Fatalf("query of the display name: %s", r.Raw)
	}
	q("@user1:localhost:http", "displayname").want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	q(bob.ID, "").want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	q(alice.ID, "status").want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	q("@nobody:hs1", "").want(t, http.StatusNotFound, "M_NOT_FOUND")
	fed(t, hs2, "GET", "hs1", "/_matrix/federation/v1/query/profile", nil).want(t, http.StatusBadRequest, "M_MISSING_PARAM")
}
