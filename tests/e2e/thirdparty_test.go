package e2e

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"matrixhs/config"
	"matrixhs/tests/testserver"
)

// TestThreePIDRefused checks that third-party identifiers are refused with
// the errors the spec lists, and that the list stays empty.
func TestThreePIDRefused(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	tok := alice.AccessToken

	r := do(t, "GET", v3(s, "account", "3pid"), tok, nil).want(t, 200, "")
	jsonEqual(t, r.Raw, map[string]any{"threepids": []any{}})

	email := map[string]any{"client_secret": "s3cret", "email": "alice@example.org", "send_attempt": 1}
	msisdn := map[string]any{"client_secret": "s3cret", "country": "GB", "phone_number": "07700900001", "send_attempt": 1}
	for _, p := range []string{"account/3pid", "register", "account/password"} {
		do(t, "POST", v3(s, append(strings.Split(p, "/"), "email", "requestToken")...), "", email).want(t, http.StatusForbidden, "M_THREEPID_DENIED")
		do(t, "POST", v3(s, append(strings.Split(p, "/"), "msisdn", "requestToken")...), "", msisdn).want(t, http.StatusForbidden, "M_THREEPID_DENIED")
	}
	do(t, "POST", v3(s, "register", "email", "requestToken"), "", `{`).want(t, http.StatusBadRequest, "M_NOT_JSON")

	creds := map[string]any{"client_secret": "s3cret", "sid": "1234"}
	do(t, "POST", v3(s, "account", "3pid", "add"), tok, creds).want(t, http.StatusForbidden, "M_THREEPID_AUTH_FAILED")
	do(t, "POST", v3(s, "account", "3pid"), tok, map[string]any{"three_pid_creds": creds}).want(t, http.StatusForbidden, "M_THREEPID_AUTH_FAILED")
	do(t, "POST", v3(s, "account", "3pid", "bind"), tok, map[string]any{
		"client_secret": "s3cret", "sid": "1234", "id_server": "id.example.org", "id_access_token": "x",
	}).want(t, http.StatusBadRequest, "M_SERVER_NOT_TRUSTED")
	for _, op := range []string{"delete", "unbind"} {
		r := do(t, "POST", v3(s, "account", "3pid", op), tok, map[string]any{"medium": "email", "address": "alice@example.org"}).want(t, 200, "")
		jsonEqual(t, r.Raw, map[string]any{"id_server_unbind_result": "no-support"})
		do(t, "POST", v3(s, "account", "3pid", op), tok, map[string]any{"medium": "email"}).want(t, http.StatusBadRequest, "M_MISSING_PARAM")
		do(t, "POST", v3(s, "account", "3pid", op), tok, map[string]any{"medium": "fax", "address": "1"}).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	}
	do(t, "POST", v3(s, "account", "3pid", "add"), "", creds).want(t, http.StatusUnauthorized, "M_MISSING_TOKEN")
	r = do(t, "GET", v3(s, "account", "3pid"), tok, nil).want(t, 200, "")
	jsonEqual(t, r.Raw, map[string]any{"threepids": []any{}})
}

// TestTURNServer checks /voip/turnServer: {} without TURN configured, and
// coturn-style shared-secret credentials with it.
func TestTURNServer(t *testing.T) {
	plain := start(t, nil)
	alice := newUser(t, plain, "alice")
	res, err := alice.TurnServer(ctxT(t))
	if err != nil {
		t.Fatalf("TurnServer: %v", err)
	}
	if res.Username != "" || res.Password != "" || len(res.URIs) != 0 {
		t.Fatalf("TURN without config = %+v", res)
	}
	r := do(t, "GET", v3(plain, "voip", "turnServer"), alice.AccessToken, nil).want(t, 200, "")
	jsonEqual(t, r.Raw, map[string]any{})
	do(t, "GET", v3(plain, "voip", "turnServer"), "", nil).want(t, http.StatusUnauthorized, "M_MISSING_TOKEN")

	dir := t.TempDir()
	cfg := "voip:\n  turn_uris: [\"turn:turn.hs.test:3478?transport=udp\", \"turns:turn.hs.test:5349\"]\n" +
		"  turn_shared_secret: sharedsecret\n  turn_user_lifetime: 2h\n"
	if err := os.WriteFile(filepath.Join(dir, "homeserver.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s := testserver.StartIn(t, dir, nil)
	bob := newUser(t, s, "bob")
	now := time.Now().Unix()
	res, err = bob.TurnServer(ctxT(t))
	if err != nil {
		t.Fatalf("TurnServer: %v", err)
	}
	if res.TTL != 7200 || len(res.URIs) != 2 || res.URIs[0] != "turn:turn.hs.test:3478?transport=udp" || res.URIs[1] != "turns:turn.hs.test:5349" {
		t.Fatalf("TURN response = %+v", res)
	}
	expiry, user, ok := strings.Cut(res.Username, ":")
	exp, err := strconv.ParseInt(expiry, 10, 64)
	if !ok || err != nil || user != string(bob.UserID) || exp < now+7200-5 || exp > now+7200+5 {
		t.Fatalf("username = %q, want <now+2h>:%s", res.Username, bob.UserID)
	}
	mac := hmac.New(sha1.New, []byte("sharedsecret"))
	mac.Write([]byte(res.Username))
	if want := base64.StdEncoding.EncodeToString(mac.Sum(nil)); res.Password != want {
		t.Fatalf("password = %q, want %q", res.Password, want)
	}

	// A bad URI stops the server with a message naming the key.
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "homeserver.yaml"), []byte("voip: {turn_uris: [\"http://turn\"]}\n"), 0o600)
	env := map[string]string{config.EnvDataDir: bad}
	if _, _, err := config.Load(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "turn_uris") {
		t.Fatalf("bad turn_uris: err = %v", err)
	}
}
