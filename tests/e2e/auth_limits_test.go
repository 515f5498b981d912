package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"matrixhs/tests/testserver"
)

// startWithYAML starts a server whose config file holds yaml (env as start).
func startWithYAML(t *testing.T, yaml string) *testserver.Server {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "homeserver.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return testserver.StartIn(t, dir, nil)
}

// doFrom is do with an X-Forwarded-For header ("" for none).
func doFrom(t *testing.T, xff, method, u, token string, body any) *resp {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctxT(t), method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	return send(t, req)
}

func passwordLogin(user, password string) map[string]any {
	return map[string]any{"type": "m.login.password", "password": password,
		"identifier": map[string]any{"type": "m.id.user", "user": user}}
}

// A client that is not a trusted proxy cannot pick its address with
// X-Forwarded-For: failures for different accounts, each "from" a fresh
// address, all count against its real one.
func TestLoginLimitIgnoresSpoofedForwardedFor(t *testing.T) {
	s := startWithYAML(t, "server: {trusted_proxies: []}\n")
	for i := 0; i <= 5; i++ {
		createUser(t, s, fmt.Sprintf("u%d", i), testPassword)
	}
	for i := 0; i < 5; i++ {
		doFrom(t, fmt.Sprintf("198.51.100.%d", i), "POST", v3(s, "login"), "", passwordLogin(fmt.Sprintf("u%d", i), "wrong")).
			want(t, http.StatusForbidden, "M_FORBIDDEN")
	}
	r := doFrom(t, "198.51.100.99", "POST", v3(s, "login"), "", passwordLogin("u5", testPassword)).
		want(t, http.StatusTooManyRequests, "M_LIMIT_EXCEEDED")
	if ms, _ := r.Body["retry_after_ms"].(float64); ms <= 0 {
		t.Fatalf("no retry_after_ms: %s", r.Raw)
	}
}

// Behind a trusted proxy (loopback, by default) the client is the
// right-most untrusted address of X-Forwarded-For: it is what the limits
// count and what the device list shows; entries a client wrote further left
// are ignored.
func TestForwardedForFromTrustedProxy(t *testing.T) {
	s := start(t, nil)
	createUser(t, s, "alice", testPassword)
	for i := 1; i <= 5; i++ {
		createUser(t, s, fmt.Sprintf("v%d", i), testPassword)
	}
	const client = "198.51.100.7"
	r := doFrom(t, "6.6.6.6, "+client, "POST", v3(s, "login"), "", passwordLogin("alice", testPassword)).want(t, 200, "")
	token, _ := r.Body["access_token"].(string)
	dev, _ := r.Body["device_id"].(string)
	r = doFrom(t, "6.6.6.6, "+client, "GET", v3(s, "devices", dev), token, nil).want(t, 200, "")
	if r.Body["last_seen_ip"] != client {
		t.Fatalf("last_seen_ip = %v, want %s: %s", r.Body["last_seen_ip"], client, r.Raw)
	}

	// One client's failures (whatever it puts on the left) limit that client only.
	for i := 1; i <= 5; i++ {
		doFrom(t, fmt.Sprintf("10.9.9.%d, 203.0.113.5", i), "POST", v3(s, "login"), "", passwordLogin(fmt.Sprintf("v%d", i), "wrong")).
			want(t, http.StatusForbidden, "M_FORBIDDEN")
	}
	doFrom(t, "203.0.113.5", "POST", v3(s, "login"), "", passwordLogin("alice", testPassword)).
		want(t, http.StatusTooManyRequests, "M_LIMIT_EXCEEDED")
	doFrom(t, "203.0.113.6", "POST", v3(s, "login"), "", passwordLogin("alice", testPassword)).want(t, 200, "")

	// Trusting no proxy, the header is ignored: the device shows the peer.
	plain := startWithYAML(t, "server: {trusted_proxies: []}\n")
	createUser(t, plain, "bob", testPassword)
	r = doFrom(t, client, "POST", v3(plain, "login"), "", passwordLogin("bob", testPassword)).want(t, 200, "")
	r = doFrom(t, client, "GET", v3(plain, "devices", r.Body["device_id"].(string)), r.Body["access_token"].(string), nil).want(t, 200, "")
	if r.Body["last_seen_ip"] != "127.0.0.1" {
		t.Fatalf("last_seen_ip with no trusted proxy = %v", r.Body["last_seen_ip"])
	}
	// Nor are X-Forwarded-Host and -Proto believed.
	req, _ := http.NewRequestWithContext(ctxT(t), "GET", plain.URL()+"/.well-known/matrix/client", nil)
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-Host", "evil.example")
	wk := send(t, req).want(t, 200, "")
	if base := wk.Body["m.homeserver"].(map[string]any)["base_url"]; base != plain.URL()+"/" {
		t.Fatalf("well-known from an untrusted peer = %v", base)
	}
}

// Sign-ups are limited per address (rc_registration): every new
// registration session costs one; a session already started can finish;
// shared-secret registration is not limited.
func TestRegistrationRateLimited(t *testing.T) {
	s := startWithYAML(t, "registration:\n  shared_secret: s3cret\n  rc_registration: {per_second: 0.001, burst_count: 3}\n")
	dummy := func(name string) map[string]any {
		return map[string]any{"username": name, "password": testPassword, "auth": map[string]any{"type": "m.login.dummy"}}
	}
	do(t, "POST", v3(s, "register"), "", dummy("a1")).want(t, 200, "")
	do(t, "POST", v3(s, "register"), "", dummy("a2")).want(t, 200, "")
	// A client that first asks for the flows spends its token on the session...
	sess := wantUIA(t, do(t, "POST", v3(s, "register"), "", map[string]any{}), [][]string{{"m.login.dummy"}})
	r := do(t, "POST", v3(s, "register"), "", dummy("a4")).want(t, http.StatusTooManyRequests, "M_LIMIT_EXCEEDED")
	if ms, _ := r.Body["retry_after_ms"].(float64); ms <= 0 {
		t.Fatalf("no retry_after_ms: %s", r.Raw)
	}
	do(t, "POST", v3(s, "register"), "", map[string]any{}).want(t, http.StatusTooManyRequests, "M_LIMIT_EXCEEDED")
	// ...and may still finish it.
	do(t, "POST", v3(s, "register"), "", map[string]any{"username": "a3", "password": testPassword,
		"auth": map[string]any{"type": "m.login.dummy", "session": sess}}).want(t, 200, "")
	// Another client address (behind the trusted loopback proxy) is not limited.
	doFrom(t, "198.51.100.7", "POST", v3(s, "register"), "", dummy("b1")).want(t, 200, "")

	nonce := do(t, "GET", s.URL()+"/_synapse/admin/v1/register", "", nil).want(t, 200, "").Body["nonce"].(string)
	do(t, "POST", s.URL()+"/_synapse/admin/v1/register", "", map[string]any{
		"nonce": nonce, "username": "scripted", "password": testPassword,
		"mac": testserver.SharedSecretMAC("s3cret", nonce, "scripted", testPassword, false),
	}).want(t, 200, "")
}

// Password checks inside user-interactive auth count with the login
// limiter: a stolen access token is no way to guess the password, and a
// locked account cannot log in either.
func TestUIAPasswordAttemptsLimited(t *testing.T) {
	s := start(t, nil)
	endpoints := []struct {
		name string
		call func(d *e2eeDevice, xff string, auth map[string]any) *resp
	}{
		{"delete device", func(d *e2eeDevice, xff string, auth map[string]any) *resp {
			return doFrom(t, xff, "DELETE", v3(s, "devices", d.deviceID), d.token, map[string]any{"auth": auth})
		}},
		{"delete_devices", func(d *e2eeDevice, xff string, auth map[string]any) *resp {
			return doFrom(t, xff, "POST", v3(s, "delete_devices"), d.token, map[string]any{"devices": []string{d.deviceID}, "auth": auth})
		}},
		{"change password", func(d *e2eeDevice, xff string, auth map[string]any) *resp {
			return doFrom(t, xff, "POST", v3(s, "account", "password"), d.token, map[string]any{"new_password": "new", "auth": auth})
		}},
		{"deactivate", func(d *e2eeDevice, xff string, auth map[string]any) *resp {
			return doFrom(t, xff, "POST", v3(s, "account", "deactivate"), d.token, map[string]any{"auth": auth})
		}},
		{"cross-signing upload", func(d *e2eeDevice, xff string, auth map[string]any) *resp {
			return doFrom(t, xff, "POST", v3(s, "keys", "device_signing", "upload"), d.token,
				map[string]any{"master_key": newCrossKeys(t).body(t, d)["master_key"], "auth": auth})
		}},
	}
	for i, ep := range endpoints {
		// Each endpoint gets its own user and client address, so the
		// per-address bucket of one does not spill into the next.
		xff := fmt.Sprintf("198.51.100.%d", i+1)
		d := e2eeUser(t, s, fmt.Sprintf("user%d", i), "DEV")
		if ep.name == "cross-signing upload" {
			d.upload(t, map[string]any{"device_keys": d.deviceKeys(t)}).want(t, 200, "")
			uploadCrossSigning(t, d, newCrossKeys(t).body(t, d)).want(t, 200, "")
		}
		for n := 0; n < 5; n++ {
			ep.call(d, xff, passwordAuth("", d.userID, "wrong")).want(t, http.StatusUnauthorized, "M_FORBIDDEN")
		}
		r := ep.call(d, xff, passwordAuth("", d.userID, testPassword)).want(t, http.StatusTooManyRequests, "M_LIMIT_EXCEEDED")
		if ms, _ := r.Body["retry_after_ms"].(float64); ms <= 0 {
			t.Fatalf("%s: no retry_after_ms: %s", ep.name, r.Raw)
		}
		// The account is locked for logins too, from anywhere.
		doFrom(t, "203.0.113.99", "POST", v3(s, "login"), "", passwordLogin(d.userID, testPassword)).
			want(t, http.StatusTooManyRequests, "M_LIMIT_EXCEEDED")
		wantTokenValid(t, s, d.token, d.userID, d.deviceID)
	}
}
