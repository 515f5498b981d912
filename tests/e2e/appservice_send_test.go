package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"matrixhs/tests/testserver"
)

// TestAppServiceTimestampMassaging: an appservice importing history sets
// an event's origin_server_ts with the ts parameter (sends and state);
// a user's ts is ignored; a bad one is refused.
func TestAppServiceTimestampMassaging(t *testing.T) {
	s, b := startBridged(t)
	tok := b.reg.AppToken
	newUser(t, s, "alice")
	alice := login(t, s, "alice", testPassword, "", "")
	room, err := alice.CreateRoom(ctxT(t), &mautrix.ReqCreateRoom{Preset: "public_chat",
		PowerLevelOverride: &event.PowerLevelsEventContent{Users: map[id.UserID]int{"@alice:hs.test": 100, "@bridgebot:hs.test": 50}}})
	if err != nil {
		t.Fatal(err)
	}
	rid := string(room.RoomID)
	do(t, "POST", v3(s, "join", rid), tok, map[string]any{}).want(t, 200, "")

	past := time.Date(2022, 1, 3, 0, 0, 0, 0, time.UTC).UnixMilli()
	ts := fmt.Sprint(past)
	msg := map[string]any{"msgtype": "m.text", "body": "imported"}
	sent := do(t, "PUT", asURL(v3(s, "rooms", rid, "send", "m.room.message", "t1"), "ts", ts), tok, msg).want(t, 200, "")
	state := do(t, "PUT", asURL(v3(s, "rooms", rid, "state", "m.bridge.info", "x"), "ts", ts), tok, map[string]any{"a": 1}).want(t, 200, "")
	mine := do(t, "PUT", asURL(v3(s, "rooms", rid, "send", "m.room.message", "t2"), "ts", ts), alice.AccessToken, msg).want(t, 200, "")
	do(t, "PUT", asURL(v3(s, "rooms", rid, "send", "m.room.message", "t3"), "ts", "yesterday"), tok, msg).want(t, 400, "M_INVALID_PARAM")
	do(t, "PUT", asURL(v3(s, "rooms", rid, "send", "m.room.message", "t4"), "ts", "-5"), tok, msg).want(t, 400, "M_INVALID_PARAM")

	originTS := func(eventID any) int64 {
		ev, err := alice.GetEvent(ctxT(t), room.RoomID, id.EventID(eventID.(string)))
		if err != nil {
			t.Fatal(err)
		}
		return ev.Timestamp
	}
	if got := originTS(sent.Body["event_id"]); got != past {
		t.Fatalf("appservice message origin_server_ts = %d, want %d", got, past)
	}
	if got := originTS(state.Body["event_id"]); got != past {
		t.Fatalf("appservice state origin_server_ts = %d, want %d", got, past)
	}
	if got := originTS(mine.Body["event_id"]); got < time.Now().Add(-time.Minute).UnixMilli() {
		t.Fatalf("a user's ts was used: origin_server_ts = %d", got)
	}
}

// TestAppServiceRegistrationsNotRateLimited: a bridge registers its ghosts
// as fast as it likes (appservice registration is not a sign-up of the
// client address), while sign-ups from the same address stay limited.
func TestAppServiceRegistrationsNotRateLimited(t *testing.T) {
	b := newBridge(t, "bridge")
	dir := t.TempDir()
	writeAppServiceConfig(t, dir, b.reg)
	cfg := "app_service_config_files: [bridge.yaml]\nregistration:\n  rc_registration: {per_second: 0.001, burst_count: 2}\n"
	if err := os.WriteFile(filepath.Join(dir, "homeserver.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s := testserver.StartInWith(t, dir, nil, fastAppServices)
	b.attach(s)
	for i := range 10 {
		do(t, "POST", v3(s, "register"), b.reg.AppToken, map[string]any{"type": "m.login.application_service",
			"username": fmt.Sprint("bridge_ghost", i), "inhibit_login": true}).want(t, 200, "")
	}
	signUp := func(name string) *resp {
		return do(t, "POST", v3(s, "register"), "", map[string]any{"username": name, "password": testPassword,
			"auth": map[string]any{"type": "m.login.dummy"}})
	}
	signUp("u1").want(t, 200, "")
	signUp("u2").want(t, 200, "")
	signUp("u3").want(t, 429, "M_LIMIT_EXCEEDED")
}
