package e2e

import (
	"testing"
)

// TestAppServiceWithoutDevice: an appservice acting as a user without a
// device gets Matrix errors or answers from device-bound endpoints, never
// a 5xx, and transaction IDs still deduplicate its sends.
func TestAppServiceWithoutDevice(t *testing.T) {
	s, b := startBridged(t)
	tok := b.reg.AppToken
	do(t, "POST", v3(s, "register"), tok, map[string]any{"type": "m.login.application_service", "username": "bridge_nd"}).want(t, 200, "")
	as := func(u string) string { return asURL(u, "user_id", "@bridge_nd:hs.test") }
	for _, c := range []struct {
		method, url string
		body        any
	}{
		{"POST", as(v3(s, "keys", "upload")), map[string]any{"one_time_keys": map[string]any{"signed_curve25519:AAAA": map[string]any{"key": "x"}}}},
		{"POST", as(v3(s, "keys", "upload")), map[string]any{}},
		{"PUT", as(v3(s, "sendToDevice", "m.test", "t1")), map[string]any{"messages": map[string]any{"@bridge_nd:hs.test": map[string]any{"*": map[string]any{}}}}},
		{"GET", as(v3(s, "sync")), nil},
		{"GET", as(v3(s, "devices")), nil},
		{"POST", as(v3(s, "keys", "query")), map[string]any{"device_keys": map[string]any{"@bridge_nd:hs.test": []string{}}}},
	} {
		r := do(t, c.method, c.url, tok, c.body)
		if r.Status >= 500 {
			t.Errorf("%s %s: %d %s", c.method, c.url, r.Status, r.Raw)
		}
	}
	room := do(t, "POST", as(v3(s, "createRoom")), tok, map[string]any{}).want(t, 200, "").Body["room_id"].(string)
	first := do(t, "PUT", as(v3(s, "rooms", room, "send", "m.room.message", "same")), tok, map[string]any{"body": "x", "msgtype": "m.text"}).want(t, 200, "")
	again := do(t, "PUT", as(v3(s, "rooms", room, "send", "m.room.message", "same")), tok, map[string]any{"body": "x", "msgtype": "m.text"}).want(t, 200, "")
	if first.Body["event_id"] != again.Body["event_id"] {
		t.Fatalf("a repeated transaction ID made two events: %v %v", first.Body, again.Body)
	}
}
