package e2e

import (
	"strings"
	"testing"
)

// TestNULCharacters: a NUL character cannot be stored as text on
// PostgreSQL, so identifiers in the path and the fields of structured
// bodies that hold one are refused on both engines with 400, never a 500;
// event content keeps it (stored as escaped JSON) and reads back intact.
func TestNULCharacters(t *testing.T) {
	s := start(t, nil)
	newUser(t, s, "alice")
	alice := login(t, s, "alice", testPassword, "", "")
	tok := alice.AccessToken
	rid := do(t, "POST", v3(s, "createRoom"), tok, map[string]any{"preset": "public_chat"}).want(t, 200, "").Body["room_id"].(string)

	for _, tc := range []struct {
		name, method, url string
		body              any
		code              string
	}{
		{"state key", "PUT", v3(s, "rooms", rid, "state", "m.custom", "k\x00x"), map[string]any{"a": 1}, "M_INVALID_PARAM"},
		{"transaction ID", "PUT", v3(s, "rooms", rid, "send", "m.room.message", "t\x00x"), map[string]any{"body": "b"}, "M_INVALID_PARAM"},
		{"event type", "PUT", v3(s, "rooms", rid, "send", "m.x\x00y", "t2"), map[string]any{"body": "b"}, "M_INVALID_PARAM"},
		{"account data type", "PUT", v3(s, "user", "@alice:hs.test", "account_data", "m.x\x00"), map[string]any{"a": 1}, "M_INVALID_PARAM"},
		{"display name", "PUT", v3(s, "profile", "@alice:hs.test", "displayname"), map[string]any{"displayname": "al\x00ice"}, "M_BAD_JSON"},
		{"device name", "PUT", v3(s, "devices", alice.DeviceID.String()), map[string]any{"display_name": "d\x00ev"}, "M_BAD_JSON"},
		{"NUL in a key", "PUT", v3(s, "devices", alice.DeviceID.String()), map[string]any{"x\x00": "y"}, "M_BAD_JSON"},
	} {
		r := do(t, tc.method, tc.url, tok, tc.body)
		if r.Status != 400 || r.Body["errcode"] != tc.code {
			t.Errorf("%s: %d %s, want 400 %s", tc.name, r.Status, r.Raw, tc.code)
		}
	}
	// A backslash followed by "u0000" is ordinary text.
	do(t, "PUT", v3(s, "profile", "@alice:hs.test", "displayname"), tok, map[string]any{"displayname": `al\u0000ice`}).want(t, 200, "")

	// Message content keeps it.
	sent := do(t, "PUT", v3(s, "rooms", rid, "send", "m.room.message", "ok"), tok,
		map[string]any{"msgtype": "m.text", "body": "before\x00after"}).want(t, 200, "")
	ev := do(t, "GET", v3(s, "rooms", rid, "event", sent.Body["event_id"].(string)), tok, nil).want(t, 200, "")
	if body, _ := ev.Body["content"].(map[string]any)["body"].(string); body != "before\x00after" {
		t.Fatalf("message body read back as %q", body)
	}
	found := do(t, "POST", v3(s, "search"), tok, map[string]any{"search_categories": map[string]any{
		"room_events": map[string]any{"search_term": "after"}}}).want(t, 200, "")
	if !strings.Contains(string(found.Raw), sent.Body["event_id"].(string)) {
		t.Fatalf("the message is not found by search: %s", found.Raw)
	}
}
