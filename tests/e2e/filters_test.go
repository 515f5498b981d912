package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"maunium.net/go/mautrix"
)

// TestFilterInvalidRefused: every filter of Complement's TestFilter (wrong
// shapes, and room or sender IDs that are not IDs) is refused with a 400, as
// Synapse refuses them; so is the same filter inline in /sync and in
// /messages.
func TestFilterInvalidRefused(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	const nao, nal = "not_an_object", "not_a_list"
	timeline := func(k string, v any) map[string]any {
		return map[string]any{"room": map[string]any{"timeline": map[string]any{k: v}}}
	}
	bad := []map[string]any{
		{"presence": nao},
		{"room": map[string]any{"timeline": nao}},
		{"room": map[string]any{"state": nao}},
		{"room": map[string]any{"ephemeral": nao}},
		{"room": map[string]any{"account_data": nao}},
		timeline("rooms", nal), timeline("not_rooms", nal), timeline("senders", nal), timeline("not_senders", nal),
		timeline("types", nal), timeline("not_types", nal), timeline("types", []int{1}),
		timeline("rooms", []string{"not_a_room_id"}),
		timeline("senders", []string{"not_a_sender_id"}),
		// The same checks everywhere room and sender lists appear.
		timeline("not_rooms", []string{"#alias:hs.test"}),
		timeline("not_senders", []string{"@no-server"}),
		{"room": map[string]any{"rooms": []string{"!no-server"}}},
		{"room": map[string]any{"not_rooms": []string{"room"}}},
		{"room": map[string]any{"state": map[string]any{"senders": []string{"bob"}}}},
		{"presence": map[string]any{"not_senders": []string{""}}},
		{"account_data": map[string]any{"senders": []string{"!room:hs.test"}}},
	}
	for _, f := range bad {
		raw, _ := json.Marshal(f)
		do(t, "POST", v3(s, "user", string(alice.UserID), "filter"), alice.AccessToken, f).want(t, http.StatusBadRequest, "M_BAD_JSON")
		do(t, "GET", v3(s, "sync")+"?filter="+url.QueryEscape(string(raw)), alice.AccessToken, nil).want(t, http.StatusBadRequest, "M_BAD_JSON")
	}

	// Valid IDs pass, domainless (v12) room IDs included.
	good := map[string]any{"room": map[string]any{
		"rooms":    []string{"!abc:hs.test", "!" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdE"},
		"timeline": map[string]any{"senders": []string{"@bob:hs.test"}, "not_senders": []string{"@legacy=user:other.example"}},
	}}
	do(t, "POST", v3(s, "user", string(alice.UserID), "filter"), alice.AccessToken, good).want(t, http.StatusOK, "")

	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	for _, f := range []string{`{"senders":["bob"]}`, `{"not_rooms":["nope"]}`, `{"limit":-1}`} {
		do(t, "GET", roomURL(s, room, "messages")+"?filter="+url.QueryEscape(f), alice.AccessToken, nil).want(t, http.StatusBadRequest, "M_BAD_JSON")
	}
	do(t, "GET", roomURL(s, room, "messages")+"?filter="+url.QueryEscape(`{"senders":["`+string(alice.UserID)+`"]}`), alice.AccessToken, nil).
		want(t, http.StatusOK, "")
}
