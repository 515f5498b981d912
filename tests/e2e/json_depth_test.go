package e2e

import (
	"net/http"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
)

// Content nested thousands of levels deep is refused at the door: once
// stored, SQLite's JSON functions (limited to 1,000 levels) failed on it and
// the public room directory answered 500 to everyone.
func TestDeeplyNestedBodiesRefused(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Visibility: "public"})
	deep := `{"topic":"t","x":` + strings.Repeat(`{"a":`, 3000) + `1` + strings.Repeat(`}`, 3000) + `}`
	do(t, "PUT", v3(s, "rooms", string(room), "state", "m.room.topic", ""), alice.AccessToken, deep).
		want(t, http.StatusBadRequest, "M_BAD_JSON")
	do(t, "PUT", v3(s, "rooms", string(room), "send", "m.room.message", "t1"), alice.AccessToken, deep).
		want(t, http.StatusBadRequest, "M_BAD_JSON")
	do(t, "POST", v3(s, "publicRooms"), alice.AccessToken, map[string]any{}).want(t, 200, "")
	do(t, "GET", v3(s, "publicRooms"), "", nil).want(t, 200, "")
}
