package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"matrixhs/tests/testserver"
)

// TestLoginAndWhoami covers GET/POST /login with both identifier forms,
// device_id and initial_device_display_name, and whoami.
func TestLoginAndWhoami(t *testing.T) {
	s := start(t, nil)
	ctx := ctxT(t)
	createUser(t, s, "alice", testPassword)
	alice := s.UserID("alice")

	flows, err := anon(t, s).GetLoginFlows(ctx)
	if err != nil {
		t.Fatalf("GetLoginFlows: %v", err)
	}
	if !flows.HasFlow(mautrix.AuthTypePassword) {
		t.Fatalf("login flows %+v lack m.login.password", flows.Flows)
	}

	// m.id.user identifier with a chosen device ID and name.
	cli := anon(t, s)
	res, err := cli.Login(ctx, &mautrix.ReqLogin{
		Type:                     mautrix.AuthTypePassword,
		Identifier:               mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "alice"},
		Password:                 testPassword,
		DeviceID:                 "PHONE",
		InitialDeviceDisplayName: "Alice's phone",
		StoreCredentials:         true,
	})
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	if string(res.UserID) != alice || res.DeviceID != "PHONE" || !strings.HasPrefix(res.AccessToken, "mat_") {
		t.Fatalf("login response %+v", res)
	}
	if res.RefreshToken != "" || res.ExpiresInMS != 0 {
		t.Fatalf("login without refresh_token returned refresh data: %+v", res)
	}
	if res.WellKnown == nil || strings.TrimRight(res.WellKnown.Homeserver.BaseURL, "/") != s.URL() {
		t.Fatalf("login well_known = %+v, want base_url %s", res.WellKnown, s.URL())
	}
	who, err := cli.Whoami(ctx)
	if err != nil {
		t.Fatalf("whoami: %v", err)
	}
	if string(who.UserID) != alice || who.DeviceID != "PHONE" {
		t.Fatalf("whoami = %+v", who)
	}
	raw := do(t, "GET", v3(s, "account", "whoami"), cli.AccessToken, nil).want(t, 200, "")
	if raw.Body["is_guest"] != false {
		t.Fatalf("whoami is_guest = %v, want false: %s", raw.Body["is_guest"], raw.Raw)
	}

	// Full user ID in the identifier works too.
	byFull := login(t, s, alice, testPassword, "", "")
	wantTokenValid(t, s, byFull.AccessToken, alice, string(byFull.DeviceID))
	if len(byFull.DeviceID) == 0 || byFull.DeviceID == "PHONE" {
		t.Fatalf("generated device id = %q", byFull.DeviceID)
	}

	// Legacy top-level "user" field, raw.
	r := do(t, "POST", v3(s, "login"), "", map[string]any{
		"type": "m.login.password", "user": "alice", "password": testPassword,
		"device_id": "LAPTOP", "initial_device_display_name": "Alice's laptop",
	}).want(t, 200, "")
	if r.Body["user_id"] != alice || r.Body["device_id"] != "LAPTOP" {
		t.Fatalf("legacy login = %s", r.Raw)
	}
	laptopToken := r.Body["access_token"].(string)
	wantTokenValid(t, s, laptopToken, alice, "LAPTOP")

	devs := deviceIDs(t, cli)
	if devs["PHONE"] != "Alice's phone" || devs["LAPTOP"] != "Alice's laptop" || len(devs) != 3 {
		t.Fatalf("devices = %v", devs)
	}

	// Logging in again with an existing device ID replaces that device's
	// token; initial_device_display_name is ignored for a known device.
	again := login(t, s, "alice", testPassword, "LAPTOP", "Not the laptop")
	wantTokenDead(t, s, laptopToken)
	wantTokenValid(t, s, again.AccessToken, alice, "LAPTOP")
	if devs := deviceIDs(t, cli); len(devs) != 3 || devs["LAPTOP"] != "Alice's laptop" {
		t.Fatalf("re-login with same device_id changed the devices: %v", devs)
	}

	// Case-insensitive localpart.
	login(t, s, "ALICE", testPassword, "", "")
}

// TestProfile covers displayname and avatar_url set/get and the profile endpoint.
func TestProfile(t *testing.T) {
	s := start(t, nil)
	ctx := ctxT(t)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")

	// Registration sets the localpart as the default displayname.
	dn, err := alice.GetDisplayName(ctx, alice.UserID)
	if err != nil || dn.DisplayName != "alice" {
		t.Fatalf("default displayname = %+v, %v", dn, err)
	}
	if err := alice.SetDisplayName(ctx, "Alice Liddell"); err != nil {
		t.Fatalf("SetDisplayName: %v", err)
	}
	avatar := id.ContentURI{Homeserver: "hs.test", FileID: "abcdef"}
	if err := alice.SetAvatarURL(ctx, avatar); err != nil {
		t.Fatalf("SetAvatarURL: %v", err)
	}
	// Another user, and anyone without a token, can read the profile.
	dn, err = bob.GetDisplayName(ctx, alice.UserID)
	if err != nil || dn.DisplayName != "Alice Liddell" {
		t.Fatalf("displayname = %+v, %v", dn, err)
	}
	got, err := anon(t, s).GetAvatarURL(ctx, alice.UserID)
	if err != nil || got != avatar {
		t.Fatalf("avatar = %v, %v; want %v", got, err, avatar)
	}
	prof, err := bob.GetProfile(ctx, alice.UserID)
	if err != nil || prof.DisplayName != "Alice Liddell" || prof.AvatarURL != avatar {
		t.Fatalf("profile = %+v, %v", prof, err)
	}
	r := do(t, "GET", v3(s, "profile", string(alice.UserID)), "", nil).want(t, 200, "")
	jsonEqual(t, r.Raw, map[string]string{"displayname": "Alice Liddell", "avatar_url": avatar.String()})

	// Only the owner may change it; a wrong type is M_BAD_JSON.
	do(t, "PUT", v3(s, "profile", string(alice.UserID), "displayname"), bob.AccessToken,
		map[string]any{"displayname": "pwned"}).want(t, http.StatusForbidden, "M_FORBIDDEN")
	do(t, "PUT", v3(s, "profile", string(alice.UserID), "displayname"), alice.AccessToken,
		map[string]any{"displayname": 5}).want(t, http.StatusBadRequest, "M_BAD_JSON")
	do(t, "PUT", v3(s, "profile", string(alice.UserID), "displayname"), "",
		map[string]any{"displayname": "x"}).want(t, http.StatusUnauthorized, "M_MISSING_TOKEN")
	// Unknown user: 404.
	do(t, "GET", v3(s, "profile", "@nobody:hs.test"), "", nil).want(t, http.StatusNotFound, "M_NOT_FOUND")
	dn, err = alice.GetDisplayName(ctx, alice.UserID)
	if err != nil || dn.DisplayName != "Alice Liddell" {
		t.Fatalf("displayname after refused writes = %+v, %v", dn, err)
	}
}

// TestAccountData covers global and per-room account data.
func TestAccountData(t *testing.T) {
	s := start(t, nil)
	ctx := ctxT(t)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	const room = id.RoomID("!room:hs.test")

	content := map[string]any{"nested": map[string]any{"a": []any{1.0, "two", true}}, "n": 42.0}
	if err := alice.SetAccountData(ctx, "org.example.test", content); err != nil {
		t.Fatalf("SetAccountData: %v", err)
	}
	var got map[string]any
	if err := alice.GetAccountData(ctx, "org.example.test", &got); err != nil {
		t.Fatalf("GetAccountData: %v", err)
	}
	r := do(t, "GET", v3(s, "user", string(alice.UserID), "account_data", "org.example.test"), alice.AccessToken, nil).want(t, 200, "")
	jsonEqual(t, r.Raw, content)

	// Overwrite replaces the whole content.
	if err := alice.SetAccountData(ctx, "org.example.test", map[string]any{"v": 2}); err != nil {
		t.Fatalf("SetAccountData: %v", err)
	}
	r = do(t, "GET", v3(s, "user", string(alice.UserID), "account_data", "org.example.test"), alice.AccessToken, nil).want(t, 200, "")
	jsonEqual(t, r.Raw, map[string]any{"v": 2})

	// Per-room data is separate from global data of the same type.
	if err := alice.SetRoomAccountData(ctx, room, "org.example.test", map[string]any{"room": true}); err != nil {
		t.Fatalf("SetRoomAccountData: %v", err)
	}
	r = do(t, "GET", v3(s, "user", string(alice.UserID), "rooms", string(room), "account_data", "org.example.test"), alice.AccessToken, nil).want(t, 200, "")
	jsonEqual(t, r.Raw, map[string]any{"room": true})
	r = do(t, "GET", v3(s, "user", string(alice.UserID), "account_data", "org.example.test"), alice.AccessToken, nil).want(t, 200, "")
	jsonEqual(t, r.Raw, map[string]any{"v": 2})
	var roomGot map[string]any
	if err := alice.GetRoomAccountData(ctx, room, "org.example.test", &roomGot); err != nil || roomGot["room"] != true {
		t.Fatalf("GetRoomAccountData = %v, %v", roomGot, err)
	}

	// Unknown type: 404 M_NOT_FOUND, globally and per room.
	wantMatrixErr(t, alice.GetAccountData(ctx, "org.example.missing", &got), http.StatusNotFound, "M_NOT_FOUND")
	wantMatrixErr(t, alice.GetRoomAccountData(ctx, "!other:hs.test", "org.example.test", &got), http.StatusNotFound, "M_NOT_FOUND")

	// Types with their own endpoints: 405 M_BAD_JSON.
	wantMatrixErr(t, alice.SetAccountData(ctx, "m.push_rules", map[string]any{}), http.StatusMethodNotAllowed, "M_BAD_JSON")
	wantMatrixErr(t, alice.SetRoomAccountData(ctx, room, "m.fully_read", map[string]any{"event_id": "$x"}), http.StatusMethodNotAllowed, "M_BAD_JSON")
	wantMatrixErr(t, alice.SetRoomAccountData(ctx, room, "m.push_rules", map[string]any{}), http.StatusMethodNotAllowed, "M_BAD_JSON")

	// Someone else's account data: 403 both ways.
	do(t, "GET", v3(s, "user", string(alice.UserID), "account_data", "org.example.test"), bob.AccessToken, nil).want(t, http.StatusForbidden, "M_FORBIDDEN")
	do(t, "PUT", v3(s, "user", string(alice.UserID), "account_data", "org.example.test"), bob.AccessToken, map[string]any{"x": 1}).want(t, http.StatusForbidden, "M_FORBIDDEN")
	do(t, "GET", v3(s, "user", string(alice.UserID), "rooms", string(room), "account_data", "org.example.test"), bob.AccessToken, nil).want(t, http.StatusForbidden, "M_FORBIDDEN")
	wantMatrixErr(t, bob.GetAccountData(ctx, "org.example.test", &got), http.StatusNotFound, "M_NOT_FOUND")

	// Bodies: not JSON, not an object, invalid room ID.
	do(t, "PUT", v3(s, "user", string(alice.UserID), "account_data", "org.example.test"), alice.AccessToken, "{oops").want(t, http.StatusBadRequest, "M_NOT_JSON")
	do(t, "PUT", v3(s, "user", string(alice.UserID), "account_data", "org.example.test"), alice.AccessToken, "[1]").want(t, http.StatusBadRequest, "M_BAD_JSON")
	do(t, "PUT", v3(s, "user", string(alice.UserID), "rooms", "notaroom", "account_data", "org.example.test"), alice.AccessToken, map[string]any{}).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	r = do(t, "GET", v3(s, "user", string(alice.UserID), "account_data", "org.example.test"), alice.AccessToken, nil).want(t, 200, "")
	jsonEqual(t, r.Raw, map[string]any{"v": 2})
}

// TestFilters covers filter upload and download.
func TestFilters(t *testing.T) {
	s := start(t, nil)
	ctx := ctxT(t)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")

	// A filter with fields this server does not interpret: GET must return it unchanged.
	filterJSON := map[string]any{
		"room": map[string]any{
			"timeline": map[string]any{"limit": 10, "types": []any{"m.room.message"}, "org.example.custom": "x"},
			"state":    map[string]any{"lazy_load_members": true},
		},
		"event_fields": []any{"type", "content.body"},
		"presence":     map[string]any{"not_types": []any{"*"}},
	}
	r := do(t, "POST", v3(s, "user", string(alice.UserID), "filter"), alice.AccessToken, filterJSON).want(t, 200, "")
	filterID, ok := r.Body["filter_id"].(string)
	if !ok || filterID == "" {
		t.Fatalf("filter_id is not a non-empty string: %s", r.Raw)
	}
	r = do(t, "GET", v3(s, "user", string(alice.UserID), "filter", filterID), alice.AccessToken, nil).want(t, 200, "")
	jsonEqual(t, r.Raw, filterJSON)

	// Through mautrix.
	created, err := alice.CreateFilter(ctx, &mautrix.Filter{EventFormat: "client", Presence: &mautrix.FilterPart{Limit: 5}})
	if err != nil || created.FilterID == "" || created.FilterID == filterID {
		t.Fatalf("CreateFilter = %+v, %v", created, err)
	}
	r = do(t, "GET", v3(s, "user", string(alice.UserID), "filter", created.FilterID), alice.AccessToken, nil).want(t, 200, "")
	jsonEqual(t, r.Raw, map[string]any{"event_format": "client", "presence": map[string]any{"limit": 5}})

	// Another user's filter: 403 on their path, 404 through one's own path.
	do(t, "GET", v3(s, "user", string(alice.UserID), "filter", filterID), bob.AccessToken, nil).want(t, http.StatusForbidden, "M_FORBIDDEN")
	do(t, "POST", v3(s, "user", string(alice.UserID), "filter"), bob.AccessToken, map[string]any{}).want(t, http.StatusForbidden, "M_FORBIDDEN")
	do(t, "GET", v3(s, "user", string(bob.UserID), "filter", filterID), bob.AccessToken, nil).want(t, http.StatusNotFound, "M_NOT_FOUND")
	// Unknown and malformed IDs: 404.
	do(t, "GET", v3(s, "user", string(alice.UserID), "filter", "999999"), alice.AccessToken, nil).want(t, http.StatusNotFound, "M_NOT_FOUND")
	do(t, "GET", v3(s, "user", string(alice.UserID), "filter", "nope"), alice.AccessToken, nil).want(t, http.StatusNotFound, "M_NOT_FOUND")
	// Invalid filters: 400 M_BAD_JSON.
	do(t, "POST", v3(s, "user", string(alice.UserID), "filter"), alice.AccessToken,
		map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": "ten"}}}).want(t, http.StatusBadRequest, "M_BAD_JSON")
	do(t, "POST", v3(s, "user", string(alice.UserID), "filter"), alice.AccessToken,
		map[string]any{"event_format": "xml"}).want(t, http.StatusBadRequest, "M_BAD_JSON")
	do(t, "POST", v3(s, "user", string(alice.UserID), "filter"), alice.AccessToken, "{").want(t, http.StatusBadRequest, "M_NOT_JSON")
}

// Password guessing is slowed: after five failures, logins wait.
func TestLoginFailuresAreLimited(t *testing.T) {
	s := start(t, nil)
	createUser(t, s, "alice", testPassword)
	attempt := func(password string) *resp {
		return do(t, "POST", v3(s, "login"), "", map[string]any{"type": "m.login.password",
			"identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": password})
	}
	for i := 0; i < 5; i++ {
		attempt("wrong").want(t, 403, "M_FORBIDDEN")
	}
	r := attempt(testPassword).want(t, 429, "M_LIMIT_EXCEEDED")
	if ms, _ := r.Body["retry_after_ms"].(float64); ms <= 0 {
		t.Fatalf("no retry_after_ms: %s", r.Raw)
	}
}

// /.well-known/matrix/support serves the configured contacts, or 404.
func TestWellKnownSupport(t *testing.T) {
	plain := start(t, nil)
	do(t, "GET", plain.URL()+"/.well-known/matrix/support", "", nil).want(t, 404, "M_NOT_FOUND")

	dir := t.TempDir()
	yaml := "support:\n  contacts:\n  - role: m.role.admin\n    matrix_id: '@root:hs.test'\n    email_address: root@example.org\n  support_page: https://example.org/help\n"
	if err := os.WriteFile(filepath.Join(dir, "homeserver.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	s := testserver.StartIn(t, dir, nil)
	r := do(t, "GET", s.URL()+"/.well-known/matrix/support", "", nil).want(t, 200, "")
	jsonEqual(t, r.Raw, map[string]any{
		"contacts":     []any{map[string]any{"role": "m.role.admin", "matrix_id": "@root:hs.test", "email_address": "root@example.org"}},
		"support_page": "https://example.org/help",
	})
}
