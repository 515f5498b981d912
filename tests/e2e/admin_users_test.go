package e2e

import (
	"net/url"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"
)

func userURL(s interface{ URL() string }, userID id.UserID, rest string) string {
	return s.URL() + "/_synapse/admin/v1/users/" + url.PathEscape(string(userID)) + rest
}

// Logging in as a user: a working token, not in the user's device list,
// that may expire and ends with the admin's logout of everything.
func TestAdminLoginAsUser(t *testing.T) {
	s := start(t, nil)
	admin := newAdmin(t, s, "root")
	alice := newUser(t, s, "alice")
	u := userURL(s, alice.UserID, "/login")
	do(t, "POST", u, alice.AccessToken, map[string]any{}).want(t, 403, "M_FORBIDDEN")
	do(t, "POST", userURL(s, admin.UserID, "/login"), admin.AccessToken, map[string]any{}).want(t, 400, "M_INVALID_PARAM")
	do(t, "POST", u, admin.AccessToken, map[string]any{"valid_until_ms": "later"}).want(t, 400, "M_BAD_JSON")
	do(t, "POST", u, admin.AccessToken, map[string]any{"valid_until_ms": 1}).want(t, 400, "M_INVALID_PARAM")
	do(t, "POST", userURL(s, "@ghost:hs.test", "/login"), admin.AccessToken, map[string]any{}).want(t, 404, "M_NOT_FOUND")

	tok := do(t, "POST", u, admin.AccessToken, map[string]any{}).want(t, 200, "").Body["access_token"].(string)
	wantTokenValid(t, s, tok, string(alice.UserID), "")
	if devs := deviceIDs(t, alice); len(devs) != 1 {
		t.Fatalf("alice's devices show the admin's session: %v", devs)
	}
	// A token with an end works until then.
	soon := do(t, "POST", u, admin.AccessToken, map[string]any{"valid_until_ms": time.Now().Add(time.Hour).UnixMilli()}).
		want(t, 200, "").Body["access_token"].(string)
	wantTokenValid(t, s, soon, string(alice.UserID), "")
	// The admin's logout of all devices ends both; alice's own session stays.
	do(t, "POST", v3(s, "logout", "all"), admin.AccessToken, map[string]any{}).want(t, 200, "")
	wantTokenDead(t, s, tok)
	wantTokenDead(t, s, soon)
	wantTokenValid(t, s, alice.AccessToken, string(alice.UserID), string(alice.DeviceID))
}

// A shadow-banned user's sends are answered but nobody sees them.
func TestAdminShadowBan(t *testing.T) {
	s := start(t, nil)
	admin := newAdmin(t, s, "root")
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	carol := newUser(t, s, "carol")
	room := mkRoomRaw(t, s, alice.AccessToken, map[string]any{"preset": "public_chat"})
	join(t, bob, room)
	u := userURL(s, bob.UserID, "/shadow_ban")
	do(t, "POST", u, bob.AccessToken, nil).want(t, 403, "M_FORBIDDEN")
	do(t, "POST", u, admin.AccessToken, nil).want(t, 200, "")
	if r := do(t, "GET", s.URL()+"/_synapse/admin/v2/users/"+url.PathEscape(string(bob.UserID)), admin.AccessToken, nil).want(t, 200, ""); r.Body["shadow_banned"] != true {
		t.Fatalf("user = %s", r.Raw)
	}
	r := do(t, "PUT", roomURL(s, room, "send", "m.room.message", "t1"), bob.AccessToken, map[string]any{"msgtype": "m.text", "body": "spam"}).want(t, 200, "")
	fake, _ := r.Body["event_id"].(string)
	if len(fake) < 10 || fake[0] != '$' {
		t.Fatalf("send = %s", r.Raw)
	}
	do(t, "PUT", roomURL(s, room, "send", "m.room.message", "t2"), bob.AccessToken, `["not an object"]`).want(t, 400, "M_BAD_JSON")
	do(t, "PUT", roomURL(s, room, "state", "m.room.topic", ""), bob.AccessToken, map[string]any{"topic": "spam"}).want(t, 200, "")
	do(t, "POST", roomURL(s, room, "invite"), bob.AccessToken, map[string]any{"user_id": string(carol.UserID)}).want(t, 200, "")
	getEvent(t, s, alice.AccessToken, room, fake).want(t, 404, "M_NOT_FOUND")
	for _, ev := range pageAll(t, s, alice.AccessToken, room, "b", 50) {
		if ev.Sender == string(bob.UserID) && ev.Type != "m.room.member" {
			t.Fatalf("a shadow-banned send reached the room: %+v", ev)
		}
	}
	// The invite never happened.
	do(t, "GET", roomURL(s, room, "state", "m.room.member", string(carol.UserID)), alice.AccessToken, nil).want(t, 404, "M_NOT_FOUND")
	// Lifted: sends go through again.
	do(t, "DELETE", u, admin.AccessToken, nil).want(t, 200, "")
	real := text(t, bob, room, "hello again")
	eventOK(t, s, alice.AccessToken, room, real)
}

// Locked accounts may only log out; suspended ones may read but not write.
func TestAdminLockAndSuspend(t *testing.T) {
	s := start(t, nil)
	admin := newAdmin(t, s, "root")
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	room := mkRoomRaw(t, s, alice.AccessToken, map[string]any{"preset": "public_chat"})
	join(t, bob, room)
	own := text(t, bob, room, "mine")
	lock := s.URL() + "/_matrix/client/v1/admin/lock/" + url.PathEscape(string(bob.UserID))
	suspend := s.URL() + "/_matrix/client/v1/admin/suspend/" + url.PathEscape(string(bob.UserID))

	do(t, "PUT", suspend, alice.AccessToken, map[string]any{"suspended": true}).want(t, 403, "M_FORBIDDEN")
	do(t, "PUT", suspend, admin.AccessToken, map[string]any{}).want(t, 400, "M_MISSING_PARAM")
	do(t, "PUT", suspend, admin.AccessToken, map[string]any{"suspended": "yes"}).want(t, 400, "M_BAD_JSON")
	if r := do(t, "PUT", suspend, admin.AccessToken, map[string]any{"suspended": true}).want(t, 200, ""); r.Body["suspended"] != true {
		t.Fatalf("suspend = %s", r.Raw)
	}
	if r := do(t, "GET", suspend, admin.AccessToken, nil).want(t, 200, ""); r.Body["suspended"] != true {
		t.Fatalf("suspend status = %s", r.Raw)
	}
	do(t, "PUT", roomURL(s, room, "send", "m.room.message", "s1"), bob.AccessToken, map[string]any{"body": "x"}).want(t, 403, "M_USER_SUSPENDED")
	do(t, "POST", v3(s, "createRoom"), bob.AccessToken, map[string]any{}).want(t, 403, "M_USER_SUSPENDED")
	do(t, "PUT", v3(s, "profile", string(bob.UserID), "displayname"), bob.AccessToken, map[string]any{"displayname": "B"}).want(t, 403, "M_USER_SUSPENDED")
	do(t, "PUT", roomURL(s, room, "redact", own, "r1"), bob.AccessToken, map[string]any{}).want(t, 200, "")
	pageAll(t, s, bob.AccessToken, room, "b", 10) // reading works
	do(t, "POST", roomURL(s, room, "leave"), bob.AccessToken, map[string]any{}).want(t, 200, "")
	// Synapse's spelling of the same switch.
	do(t, "PUT", s.URL()+"/_synapse/admin/v1/suspend/"+url.PathEscape(string(bob.UserID)), admin.AccessToken, map[string]any{"suspend": false}).want(t, 200, "")
	do(t, "POST", v3(s, "join", string(room)), bob.AccessToken, map[string]any{}).want(t, 200, "")

	if r := do(t, "PUT", lock, admin.AccessToken, map[string]any{"locked": true}).want(t, 200, ""); r.Body["locked"] != true {
		t.Fatalf("lock = %s", r.Raw)
	}
	r := do(t, "GET", v3(s, "account", "whoami"), bob.AccessToken, nil).want(t, 401, "M_USER_LOCKED")
	if r.Body["soft_logout"] != true {
		t.Fatalf("locked = %s", r.Raw)
	}
	if r := do(t, "GET", s.URL()+"/_synapse/admin/v2/users/"+url.PathEscape(string(bob.UserID)), admin.AccessToken, nil).want(t, 200, ""); r.Body["locked"] != true {
		t.Fatalf("user = %s", r.Raw)
	}
	// Synapse's v2 users API unlocks too.
	do(t, "PUT", s.URL()+"/_synapse/admin/v2/users/"+url.PathEscape(string(bob.UserID)), admin.AccessToken, map[string]any{"locked": false}).want(t, 200, "")
	do(t, "GET", v3(s, "account", "whoami"), bob.AccessToken, nil).want(t, 200, "")
	do(t, "PUT", lock, admin.AccessToken, map[string]any{"locked": true}).want(t, 200, "")
	do(t, "POST", v3(s, "logout"), bob.AccessToken, map[string]any{}).want(t, 200, "")
}

// Rate limit overrides, account data, pushers, devices, lookups.
func TestAdminUserDetails(t *testing.T) {
	s := start(t, nil)
	admin := newAdmin(t, s, "root")
	alice := newUser(t, s, "alice")
	room := mkRoomRaw(t, s, alice.AccessToken, map[string]any{"preset": "public_chat"})
	rl := userURL(s, alice.UserID, "/override_ratelimit")
	if r := do(t, "GET", rl, admin.AccessToken, nil).want(t, 200, ""); len(r.Body) != 0 {
		t.Fatalf("no override = %s", r.Raw)
	}
	do(t, "POST", rl, admin.AccessToken, map[string]any{"messages_per_second": -1}).want(t, 400, "M_INVALID_PARAM")
	do(t, "POST", rl, admin.AccessToken, map[string]any{"messages_per_second": "x"}).want(t, 400, "M_BAD_JSON")
	do(t, "POST", rl, admin.AccessToken, map[string]any{"messages_per_second": 5}).want(t, 200, "")
	if r := do(t, "GET", rl, admin.AccessToken, nil).want(t, 200, ""); r.Body["messages_per_second"] != float64(5) || r.Body["burst_count"] != float64(0) {
		t.Fatalf("override = %s", r.Raw)
	}
	do(t, "DELETE", rl, admin.AccessToken, nil).want(t, 200, "")
	if r := do(t, "GET", rl, admin.AccessToken, nil).want(t, 200, ""); len(r.Body) != 0 {
		t.Fatalf("deleted override = %s", r.Raw)
	}

	do(t, "PUT", v3(s, "user", string(alice.UserID), "account_data", "org.example.x"), alice.AccessToken, map[string]any{"a": 1}).want(t, 200, "")
	do(t, "PUT", v3(s, "user", string(alice.UserID), "rooms", string(room), "account_data", "org.example.y"), alice.AccessToken, map[string]any{"b": 2}).want(t, 200, "")
	ad := do(t, "GET", userURL(s, alice.UserID, "/accountdata"), admin.AccessToken, nil).want(t, 200, "")
	data := ad.Body["account_data"].(map[string]any)
	if data["global"].(map[string]any)["org.example.x"] == nil || data["rooms"].(map[string]any)[string(room)].(map[string]any)["org.example.y"] == nil {
		t.Fatalf("account data = %s", ad.Raw)
	}
	if r := do(t, "GET", userURL(s, alice.UserID, "/pushers"), admin.AccessToken, nil).want(t, 200, ""); r.Body["total"] != float64(0) {
		t.Fatalf("pushers = %s", r.Raw)
	}

	dev := s.URL() + "/_synapse/admin/v2/users/" + url.PathEscape(string(alice.UserID)) + "/devices/" + string(alice.DeviceID)
	do(t, "PUT", dev, admin.AccessToken, map[string]any{"display_name": "Named by admin"}).want(t, 200, "")
	if r := do(t, "GET", dev, admin.AccessToken, nil).want(t, 200, ""); r.Body["display_name"] != "Named by admin" || r.Body["user_id"] != string(alice.UserID) {
		t.Fatalf("device = %s", r.Raw)
	}
	do(t, "GET", dev+"X", admin.AccessToken, nil).want(t, 404, "M_NOT_FOUND")

	do(t, "GET", s.URL()+"/_synapse/admin/v1/threepid/email/users/a@b.c", admin.AccessToken, nil).want(t, 404, "M_NOT_FOUND")
	do(t, "GET", s.URL()+"/_synapse/admin/v1/username_available?username=alice", admin.AccessToken, nil).want(t, 400, "M_USER_IN_USE")
	if r := do(t, "GET", s.URL()+"/_synapse/admin/v1/username_available?username=newbie", admin.AccessToken, nil).want(t, 200, ""); r.Body["available"] != true {
		t.Fatalf("available = %s", r.Raw)
	}
}

// Redacting a user's events in the background, with a status.
func TestAdminRedactUserEvents(t *testing.T) {
	s := start(t, nil)
	admin := newAdmin(t, s, "root")
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	room := mkRoomRaw(t, s, alice.AccessToken, map[string]any{"preset": "public_chat"})
	join(t, bob, room)
	var spam []string
	for i := 0; i < 4; i++ {
		spam = append(spam, text(t, bob, room, "spam"))
	}
	keep := text(t, alice, room, "fine")
	u := s.URL() + "/_synapse/admin/v1/user/" + url.PathEscape(string(bob.UserID)) + "/redact"
	do(t, "POST", u, admin.AccessToken, map[string]any{}).want(t, 400, "M_MISSING_PARAM")
	do(t, "POST", u, bob.AccessToken, map[string]any{"rooms": []string{}}).want(t, 403, "M_FORBIDDEN")
	r := do(t, "POST", u, admin.AccessToken, map[string]any{"rooms": []string{}, "reason": "spam", "limit": 3}).want(t, 200, "")
	status := s.URL() + "/_synapse/admin/v1/user/redact_status/" + r.Body["redact_id"].(string)
	waitFor(t, "the redactions", func() bool {
		return do(t, "GET", status, admin.AccessToken, nil).want(t, 200, "").Body["status"] == "complete"
	})
	if st := do(t, "GET", status, admin.AccessToken, nil).want(t, 200, ""); len(st.Body["failed_redactions"].(map[string]any)) != 0 {
		t.Fatalf("status = %s", st.Raw)
	}
	// The newest three went (limit), the oldest and alice's stay.
	for i, id := range spam {
		ev := eventOK(t, s, alice.AccessToken, room, id)
		if redacted := ev.body() == ""; redacted != (i > 0) {
			t.Fatalf("spam %d redacted = %v", i, redacted)
		}
	}
	if eventOK(t, s, alice.AccessToken, room, keep).body() != "fine" {
		t.Fatal("alice's message was redacted")
	}
	do(t, "GET", s.URL()+"/_synapse/admin/v1/user/redact_status/nope", admin.AccessToken, nil).want(t, 404, "M_NOT_FOUND")
}
