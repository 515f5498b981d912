package e2e

import (
	"net/http"
	"testing"
)

// Identifiers in request paths are checked against the spec's grammar at
// the edge: a malformed room ID, user ID or alias is 400 M_INVALID_PARAM on
// every endpoint (reads included), not a 403 or 404 from a lookup.
func TestPathIdentifiersValidated(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	tok := alice.AccessToken
	bad := "!no server"
	for _, tc := range []struct{ method, url string }{
		{"GET", v3(s, "rooms", bad, "messages")},
		{"GET", v3(s, "rooms", bad, "state")},
		{"GET", v3(s, "rooms", bad, "members")},
		{"GET", v3(s, "rooms", bad, "joined_members")},
		{"PUT", v3(s, "rooms", bad, "send", "m.room.message", "t1")},
		{"POST", v3(s, "rooms", bad, "join")},
		{"POST", v3(s, "join", "#no server")},
		{"GET", v3(s, "profile", "@A B:x")},
		{"GET", v3(s, "directory", "room", "#nocolon")},
		{"PUT", v3(s, "user", "not-a-user", "account_data", "m.x")},
	} {
		r := do(t, tc.method, tc.url, tok, map[string]any{})
		if r.Status != http.StatusBadRequest || r.errcode() != "M_INVALID_PARAM" {
			t.Errorf("%s %s: %d %s, want 400 M_INVALID_PARAM", tc.method, tc.url, r.Status, r.Raw)
		}
	}
	// Well-formed IDs of rooms that do not exist are still refused as before.
	do(t, "GET", v3(s, "rooms", "!nope:hs.test", "messages"), tok, nil).want(t, http.StatusForbidden, "M_FORBIDDEN")
}
