package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"matrixhs/tests/testserver"
)

var passwordFlows = [][]string{{"m.login.password"}}

// TestDevices covers list, get, rename, delete with UIA and bulk delete.
func TestDevices(t *testing.T) {
	s := start(t, nil)
	ctx := ctxT(t)
	createUser(t, s, "alice", testPassword)
	a := login(t, s, "alice", testPassword, "DEVA", "Device A")
	b := login(t, s, "alice", testPassword, "DEVB", "Device B")
	c := login(t, s, "alice", testPassword, "DEVC", "")
	d := login(t, s, "alice", testPassword, "DEVD", "Device D")

	devs, err := a.GetDevicesInfo(ctx)
	if err != nil {
		t.Fatalf("GetDevicesInfo: %v", err)
	}
	if len(devs.Devices) != 4 {
		t.Fatalf("devices = %+v, want 4", devs.Devices)
	}
	for _, dev := range devs.Devices {
		// Using a token records last-seen data.
		if dev.DeviceID == "DEVA" && (dev.LastSeenTS == 0 || dev.LastSeenIP != "127.0.0.1") {
			t.Fatalf("DEVA last seen = %+v", dev)
		}
	}
	names := deviceIDs(t, a)
	if names["DEVA"] != "Device A" || names["DEVB"] != "Device B" || names["DEVC"] != "" || names["DEVD"] != "Device D" {
		t.Fatalf("device names = %v", names)
	}

	// Get and rename.
	info, err := a.GetDeviceInfo(ctx, "DEVB")
	if err != nil || info.DeviceID != "DEVB" || info.DisplayName != "Device B" {
		t.Fatalf("GetDeviceInfo = %+v, %v", info, err)
	}
	if err := a.SetDeviceInfo(ctx, "DEVB", &mautrix.ReqDeviceInfo{DisplayName: "Renamed"}); err != nil {
		t.Fatalf("SetDeviceInfo: %v", err)
	}
	info, err = b.GetDeviceInfo(ctx, "DEVB")
	if err != nil || info.DisplayName != "Renamed" {
		t.Fatalf("after rename = %+v, %v", info, err)
	}
	_, err = a.GetDeviceInfo(ctx, "NOPE")
	wantMatrixErr(t, err, http.StatusNotFound, "M_NOT_FOUND")
	wantMatrixErr(t, a.SetDeviceInfo(ctx, "NOPE", &mautrix.ReqDeviceInfo{DisplayName: "x"}), http.StatusNotFound, "M_NOT_FOUND")
	// Another user's device is not visible.
	bob := newUser(t, s, "bob")
	_, err = bob.GetDeviceInfo(ctx, "DEVA")
	wantMatrixErr(t, err, http.StatusNotFound, "M_NOT_FOUND")

	// Delete DEVB from DEVA: 401 challenge, wrong password, right password.
	r := do(t, "DELETE", v3(s, "devices", "DEVB"), a.AccessToken, map[string]any{})
	session := wantUIA(t, r, passwordFlows)
	r = do(t, "DELETE", v3(s, "devices", "DEVB"), a.AccessToken, map[string]any{"auth": passwordAuth(session, "alice", "wrong")})
	r.want(t, http.StatusUnauthorized, "M_FORBIDDEN")
	if r.Body["session"] != session || len(flowsOf(t, r)) != 1 {
		t.Fatalf("failed stage response lost session or flows: %s", r.Raw)
	}
	wantTokenValid(t, s, b.AccessToken, string(a.UserID), "DEVB")
	// Authenticating as someone else, even with their right password, is a
	// plain 403 (Complement: "requires UI auth user to match device owner").
	do(t, "DELETE", v3(s, "devices", "DEVB"), a.AccessToken, map[string]any{"auth": passwordAuthIdent(session, "@bob:hs.test", testPassword)}).
		want(t, http.StatusForbidden, "M_FORBIDDEN")
	do(t, "DELETE", v3(s, "devices", "DEVB"), a.AccessToken, map[string]any{"auth": passwordAuth("", "bob", testPassword)}).
		want(t, http.StatusForbidden, "M_FORBIDDEN")
	// A session started for DEVB cannot delete DEVC ("The operation must be
	// consistent through an interactive authentication session").
	do(t, "DELETE", v3(s, "devices", "DEVC"), a.AccessToken, map[string]any{"auth": passwordAuth(session, "alice", testPassword)}).
		want(t, http.StatusForbidden, "M_FORBIDDEN")
	wantTokenValid(t, s, c.AccessToken, string(a.UserID), "DEVC")
	wantTokenValid(t, s, b.AccessToken, string(a.UserID), "DEVB")
	err = a.DeleteDevice(ctx, "DEVB", &mautrix.ReqDeleteDevice[any]{Auth: &mautrix.ReqUIAuthLogin{
		BaseAuthData: mautrix.BaseAuthData{Type: mautrix.AuthTypePassword, Session: session},
		User:         "alice", Password: testPassword,
	}})
	if err != nil {
		t.Fatalf("DeleteDevice with password: %v", err)
	}
	wantTokenDead(t, s, b.AccessToken)
	if names := deviceIDs(t, a); len(names) != 3 || names["DEVB"] != "" {
		t.Fatalf("after delete devices = %v", names)
	}
	// The completed session cannot be replayed.
	do(t, "DELETE", v3(s, "devices", "DEVB"), a.AccessToken, map[string]any{"auth": passwordAuth(session, "alice", testPassword)}).
		want(t, http.StatusBadRequest, "M_UNKNOWN")
	wantTokenValid(t, s, c.AccessToken, string(a.UserID), "DEVC")
	// Auth without a session (as Complement sends it): wrong password is a
	// 401 M_FORBIDDEN challenge with a fresh session, the right one works.
	tmp := login(t, s, "alice", testPassword, "TMP", "")
	r = do(t, "DELETE", v3(s, "devices", "TMP"), a.AccessToken, map[string]any{"auth": passwordAuthIdent("", string(a.UserID), "wrong")})
	r.want(t, http.StatusUnauthorized, "M_FORBIDDEN")
	if r.Body["session"] == nil || r.Body["flows"] == nil || r.Body["params"] == nil {
		t.Fatalf("failed stage without session: %s", r.Raw)
	}
	do(t, "DELETE", v3(s, "devices", "TMP"), a.AccessToken, map[string]any{"auth": passwordAuthIdent("", string(a.UserID), testPassword)}).
		want(t, 200, "")
	wantTokenDead(t, s, tmp.AccessToken)
	do(t, "GET", v3(s, "devices", "TMP"), a.AccessToken, nil).want(t, http.StatusNotFound, "M_NOT_FOUND")

	// Bulk delete with the identifier form of the password stage.
	r = do(t, "POST", v3(s, "delete_devices"), a.AccessToken, map[string]any{"devices": []string{"DEVC", "DEVD"}})
	session = wantUIA(t, r, passwordFlows)
	do(t, "POST", v3(s, "delete_devices"), a.AccessToken, map[string]any{
		"devices": []string{"DEVC", "DEVD", "UNKNOWN"},
		"auth":    passwordAuthIdent(session, string(a.UserID), testPassword),
	}).want(t, 200, "")
	wantTokenDead(t, s, c.AccessToken)
	wantTokenDead(t, s, d.AccessToken)
	if names := deviceIDs(t, a); len(names) != 1 || names["DEVA"] != "Device A" {
		t.Fatalf("after bulk delete devices = %v", names)
	}
	// Bob's devices are untouched by Alice's deletes.
	wantTokenValid(t, s, bob.AccessToken, string(bob.UserID), "")
}

// TestLogout covers /logout and /logout/all.
func TestLogout(t *testing.T) {
	s := start(t, nil)
	ctx := ctxT(t)
	createUser(t, s, "alice", testPassword)
	a := login(t, s, "alice", testPassword, "A", "")
	b := login(t, s, "alice", testPassword, "B", "")
	c := login(t, s, "alice", testPassword, "C", "")
	bob := newUser(t, s, "bob")

	if _, err := b.Logout(ctx); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	wantTokenDead(t, s, b.AccessToken)
	_, err := b.Whoami(ctx)
	wantMatrixErr(t, err, http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
	if names := deviceIDs(t, a); len(names) != 2 || names["B"] != "" {
		t.Fatalf("devices after logout = %v", names)
	}
	wantTokenValid(t, s, c.AccessToken, string(a.UserID), "C")

	if _, err := a.LogoutAll(ctx); err != nil {
		t.Fatalf("LogoutAll: %v", err)
	}
	wantTokenDead(t, s, a.AccessToken)
	wantTokenDead(t, s, c.AccessToken)
	wantTokenValid(t, s, bob.AccessToken, string(bob.UserID), "")
	fresh := login(t, s, "alice", testPassword, "", "")
	if names := deviceIDs(t, fresh); len(names) != 1 {
		t.Fatalf("devices after logout/all + login = %v", names)
	}
	// Logout without a token.
	do(t, "POST", v3(s, "logout"), "", nil).want(t, http.StatusUnauthorized, "M_MISSING_TOKEN")
}

// TestChangePassword covers /account/password with UIA and logout_devices.
func TestChangePassword(t *testing.T) {
	s := start(t, nil)
	createUser(t, s, "alice", testPassword)
	p1 := login(t, s, "alice", testPassword, "P1", "")
	p2 := login(t, s, "alice", testPassword, "P2", "")
	alice := string(p1.UserID)

	// A session begun for another operation does not authorise this one.
	other := wantUIA(t, do(t, "POST", v3(s, "account", "deactivate"), p1.AccessToken, map[string]any{}), passwordFlows)
	do(t, "POST", v3(s, "account", "password"), p1.AccessToken, map[string]any{
		"new_password": "new-one", "auth": passwordAuth(other, "alice", testPassword),
	}).want(t, http.StatusForbidden, "M_FORBIDDEN")
	login(t, s, "alice", testPassword, "", "")

	r := do(t, "POST", v3(s, "account", "password"), p1.AccessToken, map[string]any{"new_password": "new-one"})
	session := wantUIA(t, r, passwordFlows)
	do(t, "POST", v3(s, "account", "password"), p1.AccessToken, map[string]any{
		"new_password": "new-one", "auth": passwordAuth(session, "alice", "not it"),
	}).want(t, http.StatusUnauthorized, "M_FORBIDDEN")
	do(t, "POST", v3(s, "account", "password"), p1.AccessToken, map[string]any{
		"new_password": "new-one", "auth": passwordAuth(session, "alice", testPassword),
	}).want(t, 200, "")

	// Old password fails, new works; other devices are logged out, this one kept.
	do(t, "POST", v3(s, "login"), "", map[string]any{
		"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": testPassword,
	}).want(t, http.StatusForbidden, "M_FORBIDDEN")
	wantTokenValid(t, s, p1.AccessToken, alice, "P1")
	wantTokenDead(t, s, p2.AccessToken)
	p3 := login(t, s, "alice", "new-one", "P3", "")

	// logout_devices: false keeps the other devices.
	r = do(t, "POST", v3(s, "account", "password"), p1.AccessToken, map[string]any{"new_password": "third"})
	session = wantUIA(t, r, passwordFlows)
	do(t, "POST", v3(s, "account", "password"), p1.AccessToken, map[string]any{
		"new_password": "third", "logout_devices": false, "auth": passwordAuthIdent(session, "alice", "new-one"),
	}).want(t, 200, "")
	wantTokenValid(t, s, p3.AccessToken, alice, "P3")
	wantTokenValid(t, s, p1.AccessToken, alice, "P1")
	login(t, s, "alice", "third", "", "")
	do(t, "POST", v3(s, "login"), "", map[string]any{"type": "m.login.password", "user": "alice", "password": "new-one"}).
		want(t, http.StatusForbidden, "M_FORBIDDEN")
}

// TestDeactivate covers /account/deactivate with UIA.
func TestDeactivate(t *testing.T) {
	s := start(t, nil)
	ctx := ctxT(t)
	createUser(t, s, "alice", testPassword)
	a := login(t, s, "alice", testPassword, "A", "")
	b := login(t, s, "alice", testPassword, "B", "")

	r := do(t, "POST", v3(s, "account", "deactivate"), a.AccessToken, map[string]any{})
	session := wantUIA(t, r, passwordFlows)
	r = do(t, "POST", v3(s, "account", "deactivate"), a.AccessToken, map[string]any{"auth": passwordAuth(session, "alice", "wrong")}).
		want(t, http.StatusUnauthorized, "M_FORBIDDEN")
	// Sytest "Can't deactivate account with wrong password" wants all of these keys.
	for _, k := range []string{"error", "errcode", "params", "completed", "flows", "session"} {
		if _, ok := r.Body[k]; !ok {
			t.Fatalf("failed deactivate stage lacks %q: %s", k, r.Raw)
		}
	}
	wantTokenValid(t, s, a.AccessToken, string(a.UserID), "A")
	r = do(t, "POST", v3(s, "account", "deactivate"), a.AccessToken, map[string]any{"auth": passwordAuth(session, "alice", testPassword)}).
		want(t, 200, "")
	if r.Body["id_server_unbind_result"] != "no-support" {
		t.Fatalf("deactivate response = %s", r.Raw)
	}
	wantTokenDead(t, s, a.AccessToken)
	wantTokenDead(t, s, b.AccessToken)
	_, err := anon(t, s).Login(ctx, &mautrix.ReqLogin{
		Type:       mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "alice"},
		Password:   testPassword,
	})
	// Deactivation removes the password: as in Synapse, the account is then
	// indistinguishable from an unknown one (no M_USER_DEACTIVATED oracle).
	wantMatrixErr(t, err, http.StatusForbidden, "M_FORBIDDEN")
	// The user ID is never handed out again.
	_, err = anon(t, s).RegisterAvailable(ctx, "alice")
	wantMatrixErr(t, err, http.StatusBadRequest, "M_USER_IN_USE")
	_, err = anon(t, s).RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: "alice", Password: "x"})
	wantMatrixErr(t, err, http.StatusBadRequest, "M_USER_IN_USE")
}

// TestRefreshTokens covers refresh_token on login/register and POST /refresh.
func TestRefreshTokens(t *testing.T) {
	s := start(t, nil)
	ctx := ctxT(t)
	createUser(t, s, "alice", testPassword)
	cli := anon(t, s)
	res, err := cli.Login(ctx, &mautrix.ReqLogin{
		Type:         mautrix.AuthTypePassword,
		Identifier:   mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "alice"},
		Password:     testPassword,
		DeviceID:     "REFRESHY",
		RefreshToken: true,
	})
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	if res.RefreshToken == "" || res.ExpiresInMS != (5*time.Minute).Milliseconds() {
		t.Fatalf("login with refresh_token: %+v", res)
	}
	wantTokenValid(t, s, res.AccessToken, string(res.UserID), "REFRESHY")

	for _, prefix := range []string{"v3", "v1"} {
		r := do(t, "POST", cs(s, prefix, "refresh"), "", map[string]any{"refresh_token": res.RefreshToken}).want(t, 200, "")
		newAccess, _ := r.Body["access_token"].(string)
		newRefresh, _ := r.Body["refresh_token"].(string)
		if newAccess == "" || newRefresh == "" || newAccess == res.AccessToken || newRefresh == res.RefreshToken ||
			r.Body["expires_in_ms"] != float64((5*time.Minute).Milliseconds()) {
			t.Fatalf("%s refresh response = %s", prefix, r.Raw)
		}
		// The new token works for the same device.
		wantTokenValid(t, s, newAccess, string(res.UserID), "REFRESHY")
		// Once the new token has been used, the old refresh token is revoked.
		do(t, "POST", cs(s, prefix, "refresh"), "", map[string]any{"refresh_token": res.RefreshToken}).
			want(t, http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
		res.AccessToken, res.RefreshToken = newAccess, newRefresh
	}
	do(t, "POST", v3(s, "refresh"), "", map[string]any{"refresh_token": "mrt_bogus"}).want(t, http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
	do(t, "POST", v3(s, "refresh"), "", map[string]any{}).want(t, http.StatusBadRequest, "M_MISSING_PARAM")

	// Registration can ask for a refresh token too.
	reg, err := anon(t, s).RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: "bob", Password: testPassword, RefreshToken: true})
	if err != nil || reg.RefreshToken == "" || reg.ExpiresInMS != (5*time.Minute).Milliseconds() {
		t.Fatalf("register with refresh_token = %+v, %v", reg, err)
	}
	// Logging out revokes the refresh token with the device.
	if _, err := withToken(t, s, string(res.UserID), res.AccessToken).Logout(ctx); err != nil {
		t.Fatalf("logout: %v", err)
	}
	do(t, "POST", v3(s, "refresh"), "", map[string]any{"refresh_token": res.RefreshToken}).want(t, http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
}

// TestRefreshTokenGracePeriod: the spec says the old refresh token "remains
// valid until the new access token or refresh token is used", so a client
// whose /refresh response was lost can retry.
func TestRefreshTokenGracePeriod(t *testing.T) {
	s := start(t, nil)
	createUser(t, s, "alice", testPassword)
	r := do(t, "POST", v3(s, "login"), "", map[string]any{
		"type": "m.login.password", "user": "alice", "password": testPassword, "refresh_token": true,
	}).want(t, 200, "")
	old := r.Body["refresh_token"].(string)
	first := do(t, "POST", v3(s, "refresh"), "", map[string]any{"refresh_token": old}).want(t, 200, "")
	// Response "lost": the client retries with the old refresh token.
	retry := do(t, "POST", v3(s, "refresh"), "", map[string]any{"refresh_token": old}).want(t, 200, "")
	wantTokenValid(t, s, retry.Body["access_token"].(string), s.UserID("alice"), "")
	do(t, "POST", v3(s, "refresh"), "", map[string]any{"refresh_token": old}).want(t, http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
	_ = first
}

// TestExpiredAccessToken checks that an expired refreshable token is a soft
// logout and that refreshing recovers the session.
func TestExpiredAccessToken(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "homeserver.yaml"), []byte("registration: {refreshable_access_token_lifetime: 1s}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := testserver.StartIn(t, dir, nil)
	createUser(t, s, "alice", testPassword)
	r := do(t, "POST", v3(s, "login"), "", map[string]any{
		"type": "m.login.password", "user": "alice", "password": testPassword, "refresh_token": true,
	}).want(t, 200, "")
	if r.Body["expires_in_ms"] != float64(1000) {
		t.Fatalf("expires_in_ms = %v", r.Body["expires_in_ms"])
	}
	access, refresh := r.Body["access_token"].(string), r.Body["refresh_token"].(string)
	deadline := time.Now().Add(10 * time.Second)
	for {
		res := do(t, "GET", v3(s, "account", "whoami"), access, nil)
		if res.Status == http.StatusUnauthorized {
			res.want(t, http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
			if res.Body["soft_logout"] != true {
				t.Fatalf("expired token: soft_logout = %v, want true: %s", res.Body["soft_logout"], res.Raw)
			}
			break
		}
		res.want(t, 200, "")
		if time.Now().After(deadline) {
			t.Fatalf("access token never expired")
		}
		time.Sleep(50 * time.Millisecond)
	}
	r = do(t, "POST", v3(s, "refresh"), "", map[string]any{"refresh_token": refresh}).want(t, 200, "")
	wantTokenValid(t, s, r.Body["access_token"].(string), s.UserID("alice"), "")
}

// TestR0Prefix checks that the endpoints answer identically under r0.
func TestR0Prefix(t *testing.T) {
	s := start(t, nil)
	createUser(t, s, "alice", testPassword)
	r := do(t, "POST", cs(s, "r0", "login"), "", map[string]any{
		"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": testPassword,
	}).want(t, 200, "")
	tok := r.Body["access_token"].(string)
	alice := s.UserID("alice")
	dev := r.Body["device_id"].(string)

	do(t, "GET", cs(s, "r0", "login"), "", nil).want(t, 200, "")
	who := do(t, "GET", cs(s, "r0", "account", "whoami"), tok, nil).want(t, 200, "")
	if who.Body["user_id"] != alice || who.Body["device_id"] != dev {
		t.Fatalf("r0 whoami = %s", who.Raw)
	}
	do(t, "PUT", cs(s, "r0", "profile", alice, "displayname"), tok, map[string]any{"displayname": "R Zero"}).want(t, 200, "")
	p := do(t, "GET", cs(s, "r0", "profile", alice, "displayname"), "", nil).want(t, 200, "")
	jsonEqual(t, p.Raw, map[string]any{"displayname": "R Zero"})
	do(t, "PUT", cs(s, "r0", "user", alice, "account_data", "org.example.r0"), tok, map[string]any{"r": 0}).want(t, 200, "")
	ad := do(t, "GET", v3(s, "user", alice, "account_data", "org.example.r0"), tok, nil).want(t, 200, "")
	jsonEqual(t, ad.Raw, map[string]any{"r": 0})
	do(t, "PUT", cs(s, "r0", "user", alice, "rooms", "!r:hs.test", "account_data", "org.example.r0"), tok, map[string]any{"r": 1}).want(t, 200, "")
	rad := do(t, "GET", cs(s, "r0", "user", alice, "rooms", "!r:hs.test", "account_data", "org.example.r0"), tok, nil).want(t, 200, "")
	jsonEqual(t, rad.Raw, map[string]any{"r": 1})
	f := do(t, "POST", cs(s, "r0", "user", alice, "filter"), tok, map[string]any{"event_fields": []string{"type"}}).want(t, 200, "")
	fg := do(t, "GET", cs(s, "r0", "user", alice, "filter", f.Body["filter_id"].(string)), tok, nil).want(t, 200, "")
	jsonEqual(t, fg.Raw, map[string]any{"event_fields": []string{"type"}})
	v3rules := do(t, "GET", v3(s, "pushrules")+"/", tok, nil).want(t, 200, "")
	r0rules := do(t, "GET", cs(s, "r0", "pushrules")+"/", tok, nil).want(t, 200, "")
	if string(v3rules.Raw) != string(r0rules.Raw) {
		t.Fatalf("r0 push rules differ from v3")
	}
	do(t, "PUT", cs(s, "r0", "pushrules", "global", "override", "r0rule"), tok, map[string]any{"actions": []any{}}).want(t, 200, "")
	do(t, "GET", cs(s, "r0", "pushrules", "global", "override", "r0rule", "enabled"), tok, nil).want(t, 200, "")
	do(t, "DELETE", cs(s, "r0", "pushrules", "global", "override", "r0rule"), tok, nil).want(t, 200, "")
	devs := do(t, "GET", cs(s, "r0", "devices"), tok, nil).want(t, 200, "")
	if list, _ := devs.Body["devices"].([]any); len(list) != 1 {
		t.Fatalf("r0 devices = %s", devs.Raw)
	}
	do(t, "PUT", cs(s, "r0", "devices", dev), tok, map[string]any{"display_name": "r0 dev"}).want(t, 200, "")
	gd := do(t, "GET", cs(s, "r0", "devices", dev), tok, nil).want(t, 200, "")
	if gd.Body["display_name"] != "r0 dev" {
		t.Fatalf("r0 device = %s", gd.Raw)
	}
	caps := do(t, "GET", cs(s, "r0", "capabilities"), tok, nil).want(t, 200, "")
	if _, ok := caps.Body["capabilities"].(map[string]any); !ok {
		t.Fatalf("r0 capabilities = %s", caps.Raw)
	}
	do(t, "GET", cs(s, "r0", "register", "available")+"?username=newname", "", nil).want(t, 200, "")
	reg := do(t, "POST", cs(s, "r0", "register"), "", map[string]any{"username": "rzero", "password": "pw"})
	sess := wantUIA(t, reg, [][]string{{"m.login.dummy"}})
	reg = do(t, "POST", cs(s, "r0", "register"), "", map[string]any{
		"username": "rzero", "password": "pw", "auth": map[string]any{"type": "m.login.dummy", "session": sess},
	}).want(t, 200, "")
	if reg.Body["user_id"] != s.UserID("rzero") {
		t.Fatalf("r0 register = %s", reg.Raw)
	}
	do(t, "POST", cs(s, "r0", "logout"), tok, nil).want(t, 200, "")
	wantTokenDead(t, s, tok)
}
