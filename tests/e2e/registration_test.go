package e2e

import (
	"net/http"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"matrixhs/storage"
	"matrixhs/tests/testserver"
)

// TestRegistrationDisabled: the default mode refuses /register.
func TestRegistrationDisabled(t *testing.T) {
	s := start(t, map[string]string{"MATRIX_REGISTRATION": "disabled"})
	ctx := ctxT(t)
	do(t, "POST", v3(s, "register"), "", map[string]any{"username": "alice", "password": "pw"}).
		want(t, http.StatusForbidden, "M_FORBIDDEN")
	do(t, "POST", v3(s, "register"), "", map[string]any{
		"username": "alice", "password": "pw", "auth": map[string]any{"type": "m.login.dummy"},
	}).want(t, http.StatusForbidden, "M_FORBIDDEN")
	_, _, err := anon(t, s).Register(ctx, &mautrix.ReqRegister[any]{Username: "alice", Password: "pw"})
	wantMatrixErr(t, err, http.StatusForbidden, "M_FORBIDDEN")
	do(t, "POST", v3(s, "register")+"?kind=guest", "", map[string]any{}).want(t, http.StatusForbidden, "M_FORBIDDEN")
	do(t, "GET", cs(s, "v1", "register", "m.login.registration_token", "validity")+"?token=abc", "", nil).
		want(t, http.StatusForbidden, "M_FORBIDDEN")
	// Nor does it say which names are taken (Synapse: 403 while registration is off).
	createUser(t, s, "taken", testPassword)
	for _, name := range []string{"taken", "free"} {
		do(t, "GET", v3(s, "register", "available")+"?username="+name, "", nil).want(t, http.StatusForbidden, "M_FORBIDDEN")
	}
	// Accounts made by the admin CLI path still work.
	cli := newUser(t, s, "alice")
	wantTokenValid(t, s, cli.AccessToken, s.UserID("alice"), string(cli.DeviceID))
}

// TestRegistrationOpen covers m.login.dummy, inhibit_login and /register/available.
func TestRegistrationOpen(t *testing.T) {
	s := start(t, map[string]string{"MATRIX_REGISTRATION": "open"})
	ctx := ctxT(t)

	r := do(t, "POST", v3(s, "register"), "", map[string]any{"username": "alice", "password": testPassword})
	session := wantUIA(t, r, [][]string{{"m.login.dummy"}})
	// A stage that is not offered is refused.
	do(t, "POST", v3(s, "register"), "", map[string]any{
		"username": "alice", "password": testPassword, "auth": map[string]any{"type": "m.login.registration_token", "token": "x", "session": session},
	}).want(t, http.StatusUnauthorized, "M_UNKNOWN")
	r = do(t, "POST", v3(s, "register"), "", map[string]any{
		"username": "alice", "password": testPassword, "device_id": "REGDEV", "initial_device_display_name": "Registered",
		"auth": map[string]any{"type": "m.login.dummy", "session": session},
	}).want(t, 200, "")
	if r.Body["user_id"] != s.UserID("alice") || r.Body["device_id"] != "REGDEV" || r.Body["access_token"] == nil {
		t.Fatalf("register response = %s", r.Raw)
	}
	if _, ok := r.Body["refresh_token"]; ok {
		t.Fatalf("register without refresh_token returned one: %s", r.Raw)
	}
	alice := withToken(t, s, s.UserID("alice"), r.Body["access_token"].(string))
	wantTokenValid(t, s, alice.AccessToken, s.UserID("alice"), "REGDEV")
	if names := deviceIDs(t, alice); names["REGDEV"] != "Registered" || len(names) != 1 {
		t.Fatalf("devices after register = %v", names)
	}
	login(t, s, "alice", testPassword, "", "")

	// Through mautrix's dummy helper.
	res, err := anon(t, s).RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: "bob", Password: testPassword})
	if err != nil || string(res.UserID) != s.UserID("bob") || res.AccessToken == "" || res.DeviceID == "" {
		t.Fatalf("RegisterDummy = %+v, %v", res, err)
	}
	wantTokenValid(t, s, res.AccessToken, s.UserID("bob"), string(res.DeviceID))

	// inhibit_login: an account, but no token and no device.
	res, err = anon(t, s).RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: "carol", Password: testPassword, InhibitLogin: true})
	if err != nil || string(res.UserID) != s.UserID("carol") || res.AccessToken != "" || res.DeviceID != "" {
		t.Fatalf("inhibit_login register = %+v, %v", res, err)
	}
	carol := login(t, s, "carol", testPassword, "", "")
	if names := deviceIDs(t, carol); len(names) != 1 {
		t.Fatalf("inhibit_login created a device: %v", names)
	}

	// No username: the server picks one.
	res, err = anon(t, s).RegisterDummy(ctx, &mautrix.ReqRegister[any]{Password: testPassword})
	if err != nil || res.UserID == "" || res.UserID.Homeserver() != "hs.test" {
		t.Fatalf("register without username = %+v, %v", res, err)
	}
	wantTokenValid(t, s, res.AccessToken, string(res.UserID), "")

	// Capitals are folded (Synapse and Complement behaviour); the folded name is then taken.
	res, err = anon(t, s).RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: "User-UPPER", Password: testPassword})
	if err != nil || string(res.UserID) != s.UserID("user-upper") {
		t.Fatalf("register User-UPPER = %+v, %v", res, err)
	}
	login(t, s, "USER-upper", testPassword, "", "")
	do(t, "POST", v3(s, "register"), "", map[string]any{"username": "user-upper", "password": "pw"}).
		want(t, http.StatusBadRequest, "M_USER_IN_USE")
	// Only ASCII letters fold: the Kelvin sign must not become a "k".
	do(t, "POST", v3(s, "register"), "", map[string]any{"username": "\u212aate", "password": "pw"}).
		want(t, http.StatusBadRequest, "M_INVALID_USERNAME")
	// The user ID grammar: these characters are allowed, these are not.
	for _, ch := range []string{"-", ".", "/", "=", "_", "+", "9"} {
		name := "chr" + ch + "x"
		res, err := anon(t, s).RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: name, Password: testPassword})
		if err != nil || string(res.UserID) != s.UserID(name) {
			t.Fatalf("register %q = %+v, %v", name, res, err)
		}
	}
	for _, ch := range []string{"!", "\"", ":", "?", "\\", "@", "[", "]", "{", "|", "}", "£", "é", "\n", "'", " "} {
		do(t, "POST", v3(s, "register"), "", map[string]any{"username": "bad" + ch + "x", "password": "pw"}).
			want(t, http.StatusBadRequest, "M_INVALID_USERNAME")
	}

	// Taken and invalid names, before any auth.
	do(t, "POST", v3(s, "register"), "", map[string]any{"username": "alice", "password": "pw"}).
		want(t, http.StatusBadRequest, "M_USER_IN_USE")
	do(t, "POST", v3(s, "register"), "", map[string]any{"username": "Bad Name!", "password": "pw"}).
		want(t, http.StatusBadRequest, "M_INVALID_USERNAME")
	do(t, "POST", v3(s, "register"), "", map[string]any{"username": "_reserved", "password": "pw"}).
		want(t, http.StatusBadRequest, "M_INVALID_USERNAME")
	do(t, "POST", v3(s, "register")+"?kind=guest", "", map[string]any{}).want(t, http.StatusForbidden, "M_FORBIDDEN")

	// /register/available.
	avail, err := anon(t, s).RegisterAvailable(ctx, "dave")
	if err != nil || !avail.Available {
		t.Fatalf("RegisterAvailable(dave) = %+v, %v", avail, err)
	}
	_, err = anon(t, s).RegisterAvailable(ctx, "alice")
	wantMatrixErr(t, err, http.StatusBadRequest, "M_USER_IN_USE")
	_, err = anon(t, s).RegisterAvailable(ctx, "carol")
	wantMatrixErr(t, err, http.StatusBadRequest, "M_USER_IN_USE")
	_, err = anon(t, s).RegisterAvailable(ctx, "not valid")
	wantMatrixErr(t, err, http.StatusBadRequest, "M_INVALID_USERNAME")
	do(t, "GET", v3(s, "register", "available"), "", nil).want(t, http.StatusBadRequest, "M_MISSING_PARAM")
	// Registration tokens are not in use in open mode.
	do(t, "GET", cs(s, "v1", "register", "m.login.registration_token", "validity")+"?token=abc", "", nil).
		want(t, http.StatusForbidden, "M_FORBIDDEN")
}

// TestRegistrationToken covers the m.login.registration_token stage.
func TestRegistrationToken(t *testing.T) {
	s := start(t, map[string]string{"MATRIX_REGISTRATION": "token"})
	ctx := ctxT(t)
	err := s.DB.Write(ctx, func(tx *storage.Tx) error {
		return tx.InsertRegistrationToken(ctx, storage.RegistrationToken{Token: "abc", UsesAllowed: 1, CreatedTS: time.Now().UnixMilli()})
	})
	if err != nil {
		t.Fatalf("inserting token: %v", err)
	}
	validity := func(token string) bool {
		t.Helper()
		r := do(t, "GET", cs(s, "v1", "register", "m.login.registration_token", "validity")+"?token="+token, "", nil).want(t, 200, "")
		v, ok := r.Body["valid"].(bool)
		if !ok {
			t.Fatalf("validity response = %s", r.Raw)
		}
		return v
	}
	if !validity("abc") || validity("nope") {
		t.Fatalf("validity: abc should be valid, nope not")
	}
	do(t, "GET", cs(s, "v1", "register", "m.login.registration_token", "validity"), "", nil).want(t, http.StatusBadRequest, "M_MISSING_PARAM")

	tokenFlows := [][]string{{"m.login.registration_token"}}
	r := do(t, "POST", v3(s, "register"), "", map[string]any{"username": "alice", "password": testPassword})
	session := wantUIA(t, r, tokenFlows)
	// Dummy is not enough in token mode.
	do(t, "POST", v3(s, "register"), "", map[string]any{
		"username": "alice", "password": testPassword, "auth": map[string]any{"type": "m.login.dummy", "session": session},
	}).want(t, http.StatusUnauthorized, "M_UNKNOWN")
	_, err = anon(t, s).RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: "alice", Password: testPassword})
	if err == nil {
		t.Fatalf("RegisterDummy succeeded in token mode")
	}
	// Wrong token: the stage fails with M_FORBIDDEN and the session lives on.
	r = do(t, "POST", v3(s, "register"), "", map[string]any{
		"username": "alice", "password": testPassword,
		"auth": map[string]any{"type": "m.login.registration_token", "token": "wrong", "session": session},
	}).want(t, http.StatusUnauthorized, "M_FORBIDDEN")
	if r.Body["session"] != session {
		t.Fatalf("failed stage lost the session: %s", r.Raw)
	}
	// Right token.
	r = do(t, "POST", v3(s, "register"), "", map[string]any{
		"username": "alice", "password": testPassword,
		"auth": map[string]any{"type": "m.login.registration_token", "token": "abc", "session": session},
	}).want(t, 200, "")
	if r.Body["user_id"] != s.UserID("alice") {
		t.Fatalf("token register = %s", r.Raw)
	}
	wantTokenValid(t, s, r.Body["access_token"].(string), s.UserID("alice"), "")
	if validity("abc") {
		t.Fatalf("token still valid after its only use")
	}
	// Used up.
	r = do(t, "POST", v3(s, "register"), "", map[string]any{"username": "bob", "password": testPassword})
	session = wantUIA(t, r, tokenFlows)
	do(t, "POST", v3(s, "register"), "", map[string]any{
		"username": "bob", "password": testPassword,
		"auth": map[string]any{"type": "m.login.registration_token", "token": "abc", "session": session},
	}).want(t, http.StatusUnauthorized, "M_FORBIDDEN")
	_, err = anon(t, s).RegisterAvailable(ctx, "bob")
	if err != nil {
		t.Fatalf("bob should still be available: %v", err)
	}
	tok, err := s.DB.RegistrationToken(ctx, "abc")
	if err != nil || tok.Completed != 1 {
		t.Fatalf("token after use = %+v, %v", tok, err)
	}
}

// TestSharedSecretRegistration covers Synapse's admin registration API.
func TestSharedSecretRegistration(t *testing.T) {
	// Works even with public registration disabled.
	s := start(t, map[string]string{"MATRIX_REGISTRATION": "disabled"})
	secret := s.Config.Registration.SharedSecret
	if secret == "" {
		t.Fatalf("test server has no registration shared secret")
	}
	nonce := func() string {
		t.Helper()
		r := do(t, "GET", s.URL()+"/_synapse/admin/v1/register", "", nil).want(t, 200, "")
		n, _ := r.Body["nonce"].(string)
		if n == "" {
			t.Fatalf("nonce response = %s", r.Raw)
		}
		return n
	}
	post := func(body map[string]any) *resp {
		t.Helper()
		return do(t, "POST", s.URL()+"/_synapse/admin/v1/register", "", body)
	}

	n1 := nonce()
	if n2 := nonce(); n2 == n1 {
		t.Fatalf("nonces repeat")
	}
	r := post(map[string]any{
		"nonce": n1, "username": "admin", "password": testPassword, "displayname": "The Admin", "admin": true,
		"mac": testserver.SharedSecretMAC(secret, n1, "admin", testPassword, true),
	}).want(t, 200, "")
	if r.Body["user_id"] != s.UserID("admin") || r.Body["access_token"] == nil || r.Body["device_id"] == nil {
		t.Fatalf("shared-secret register = %s", r.Raw)
	}
	wantTokenValid(t, s, r.Body["access_token"].(string), s.UserID("admin"), r.Body["device_id"].(string))
	acc, err := s.DB.Account(ctxT(t), s.UserID("admin"))
	if err != nil || !acc.IsAdmin || acc.DisplayName != "The Admin" {
		t.Fatalf("admin account = %+v, %v", acc, err)
	}
	login(t, s, "admin", testPassword, "", "")

	// Reused nonce: 400.
	post(map[string]any{
		"nonce": n1, "username": "other", "password": testPassword,
		"mac": testserver.SharedSecretMAC(secret, n1, "other", testPassword, false),
	}).want(t, http.StatusBadRequest, "M_UNKNOWN")

	// Wrong MAC (wrong secret, or admin flag flipped): 403.
	n3 := nonce()
	post(map[string]any{
		"nonce": n3, "username": "mallory", "password": testPassword,
		"mac": testserver.SharedSecretMAC("not the secret", n3, "mallory", testPassword, false),
	}).want(t, http.StatusForbidden, "M_FORBIDDEN")
	n4 := nonce()
	post(map[string]any{
		"nonce": n4, "username": "mallory", "password": testPassword, "admin": true,
		"mac": testserver.SharedSecretMAC(secret, n4, "mallory", testPassword, false),
	}).want(t, http.StatusForbidden, "M_FORBIDDEN")
	_, err = s.DB.Account(ctxT(t), s.UserID("mallory"))
	if err == nil {
		t.Fatalf("mallory was created despite a bad MAC")
	}

	// Non-admin user, default displayname; unknown nonce.
	n5 := nonce()
	r = post(map[string]any{
		"nonce": n5, "username": "plain", "password": testPassword, "admin": false,
		"mac": testserver.SharedSecretMAC(secret, n5, "plain", testPassword, false),
	}).want(t, 200, "")
	acc, err = s.DB.Account(ctxT(t), s.UserID("plain"))
	if err != nil || acc.IsAdmin || acc.DisplayName != "plain" {
		t.Fatalf("plain account = %+v, %v", acc, err)
	}
	post(map[string]any{
		"nonce": "made-up", "username": "x", "password": testPassword,
		"mac": testserver.SharedSecretMAC(secret, "made-up", "x", testPassword, false),
	}).want(t, http.StatusBadRequest, "M_UNKNOWN")
	// Capitals: the MAC covers the name as sent, the account is lowercased.
	n7 := nonce()
	r = post(map[string]any{
		"nonce": n7, "username": "Shouty", "password": testPassword,
		"mac": testserver.SharedSecretMAC(secret, n7, "Shouty", testPassword, false),
	}).want(t, 200, "")
	if r.Body["user_id"] != s.UserID("shouty") {
		t.Fatalf("shared-secret register Shouty = %s", r.Raw)
	}
	// Symbols are refused.
	n8 := nonce()
	post(map[string]any{
		"nonce": n8, "username": "bad!name", "password": testPassword,
		"mac": testserver.SharedSecretMAC(secret, n8, "bad!name", testPassword, false),
	}).want(t, http.StatusBadRequest, "M_INVALID_USERNAME")
	// Taken name.
	n6 := nonce()
	post(map[string]any{
		"nonce": n6, "username": "plain", "password": testPassword,
		"mac": testserver.SharedSecretMAC(secret, n6, "plain", testPassword, false),
	}).want(t, http.StatusBadRequest, "M_USER_IN_USE")
}
