package e2e

import (
	"bytes"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"matrixhs/tests/testserver"
)

// TestErrorPaths covers the common error responses over raw HTTP.
func TestErrorPaths(t *testing.T) {
	s := start(t, nil)
	createUser(t, s, "alice", testPassword)
	loginURL := v3(s, "login")
	ident := map[string]any{"type": "m.id.user", "user": "alice"}

	// Wrong password, unknown user, other server: all 403 M_FORBIDDEN.
	do(t, "POST", loginURL, "", map[string]any{"type": "m.login.password", "identifier": ident, "password": "wrong"}).
		want(t, http.StatusForbidden, "M_FORBIDDEN")
	do(t, "POST", loginURL, "", map[string]any{"type": "m.login.password", "user": "nobody", "password": "wrong"}).
		want(t, http.StatusForbidden, "M_FORBIDDEN")
	do(t, "POST", loginURL, "", map[string]any{"type": "m.login.password", "user": "@alice:elsewhere.test", "password": testPassword}).
		want(t, http.StatusForbidden, "M_FORBIDDEN")
	do(t, "POST", loginURL, "", map[string]any{"type": "m.login.token", "token": "x"}).
		want(t, http.StatusBadRequest, "M_UNKNOWN")
	do(t, "POST", loginURL, "", map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.thirdparty", "medium": "email", "address": "a@b"}, "password": "x"}).
		want(t, http.StatusBadRequest, "M_UNKNOWN")

	// Tokens.
	do(t, "GET", v3(s, "account", "whoami"), "", nil).want(t, http.StatusUnauthorized, "M_MISSING_TOKEN")
	do(t, "GET", v3(s, "account", "whoami"), "mat_not_a_token", nil).want(t, http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
	r := do(t, "GET", v3(s, "account", "whoami")+"?access_token=nope", "", nil).want(t, http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
	if r.Body["soft_logout"] != false {
		t.Fatalf("unknown token soft_logout = %v", r.Body["soft_logout"])
	}
	good := login(t, s, "alice", testPassword, "", "")
	who := do(t, "GET", v3(s, "account", "whoami")+"?access_token="+good.AccessToken, "", nil).want(t, 200, "")
	if who.Body["user_id"] != s.UserID("alice") {
		t.Fatalf("query-parameter token whoami = %s", who.Raw)
	}

	// Bodies.
	do(t, "POST", loginURL, "", "{not json").want(t, http.StatusBadRequest, "M_NOT_JSON")
	do(t, "POST", loginURL, "", `{"type": "m.login.password",`).want(t, http.StatusBadRequest, "M_NOT_JSON")
	do(t, "POST", loginURL, "", `["m.login.password"]`).want(t, http.StatusBadRequest, "M_BAD_JSON")
	do(t, "POST", loginURL, "", `null`).want(t, http.StatusBadRequest, "M_BAD_JSON")
	// Invalid UTF-8 is not JSON (Complement: "POST rejects invalid utf-8 in JSON").
	badUTF8 := []byte("{ \"test\": \"a\x81\" }")
	do(t, "POST", v3(s, "register"), "", badUTF8).want(t, http.StatusBadRequest, "M_NOT_JSON")
	do(t, "POST", cs(s, "r0", "register"), "", badUTF8).want(t, http.StatusBadRequest, "M_NOT_JSON")
	do(t, "PUT", v3(s, "user", string(good.UserID), "account_data", "org.example.utf8"), good.AccessToken, badUTF8).
		want(t, http.StatusBadRequest, "M_NOT_JSON")
	do(t, "PUT", v3(s, "pushrules", "global", "override", "utf8"), good.AccessToken, []byte("{\"actions\": [\"\xff\"]}")).
		want(t, http.StatusBadRequest, "M_NOT_JSON")
	do(t, "POST", loginURL, "", map[string]any{"type": "m.login.password", "identifier": ident, "password": 5}).
		want(t, http.StatusBadRequest, "M_BAD_JSON")
	do(t, "POST", loginURL, "", map[string]any{"type": "m.login.password", "identifier": "alice", "password": testPassword}).
		want(t, http.StatusBadRequest, "M_BAD_JSON")
	do(t, "POST", v3(s, "register"), "", map[string]any{"username": 12, "password": "x"}).
		want(t, http.StatusBadRequest, "M_BAD_JSON")
	do(t, "PUT", v3(s, "devices", string(good.DeviceID)), good.AccessToken, map[string]any{"display_name": []int{1}}).
		want(t, http.StatusBadRequest, "M_BAD_JSON")

	// Oversized body: 413 M_TOO_LARGE, before auth and JSON parsing.
	limit := s.Config.Server.MaxRequestBodyBytes
	if limit != 8<<20 {
		t.Fatalf("default max_request_body_bytes = %d, want 8 MiB", limit)
	}
	big := bytes.Repeat([]byte("a"), int(limit)+1024)
	copy(big, `{"type":"m.login.password","password":"`)
	do(t, "POST", loginURL, "", big).want(t, http.StatusRequestEntityTooLarge, "M_TOO_LARGE")
	do(t, "PUT", v3(s, "user", string(good.UserID), "account_data", "org.example.big"), good.AccessToken, big).
		want(t, http.StatusRequestEntityTooLarge, "M_TOO_LARGE")
	// Just under the limit is read (and then rejected for what it is).
	do(t, "POST", loginURL, "", big[:limit-1024]).want(t, http.StatusBadRequest, "M_NOT_JSON")

	// Unknown endpoints and wrong methods.
	for _, p := range []string{
		"/_matrix/client/v3/nonexistent", "/_matrix/client/v3/account/whoami/extra", "/_matrix/client/unknown",
		"/_matrix/client/v4/login", "/nothing", "/_matrix/client/v3/rooms/!r:hs.test/nonexistent",
	} {
		do(t, "GET", s.URL()+p, "", nil).want(t, http.StatusNotFound, "M_UNRECOGNIZED")
	}
	for _, c := range []struct{ method, path string }{
		{"PUT", "/_matrix/client/v3/login"},
		{"DELETE", "/_matrix/client/v3/login"},
		{"POST", "/_matrix/client/versions"},
		{"GET", "/_matrix/client/v3/logout"},
		{"POST", "/_matrix/client/v3/account/whoami"},
		{"PATCH", "/_matrix/client/r0/devices/X"},
	} {
		do(t, c.method, s.URL()+c.path, good.AccessToken, nil).want(t, http.StatusMethodNotAllowed, "M_UNRECOGNIZED")
	}

	// OAuth 2.0 discovery: not supported.
	for _, p := range []string{
		"/_matrix/client/unstable/org.matrix.msc2965/auth_metadata",
		"/_matrix/client/unstable/org.matrix.msc2965/auth_issuer",
		"/_matrix/client/v1/auth_metadata",
	} {
		do(t, "GET", s.URL()+p, "", nil).want(t, http.StatusNotFound, "M_UNRECOGNIZED")
	}
}

func wantCORS(t *testing.T, what string, h http.Header) {
	t.Helper()
	if h.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("%s: Access-Control-Allow-Origin = %q", what, h.Get("Access-Control-Allow-Origin"))
	}
	methods := strings.Split(strings.ReplaceAll(h.Get("Access-Control-Allow-Methods"), " ", ""), ",")
	for _, m := range []string{"GET", "POST", "PUT", "DELETE", "OPTIONS"} {
		if !slices.Contains(methods, m) {
			t.Fatalf("%s: Access-Control-Allow-Methods = %q lacks %s", what, h.Get("Access-Control-Allow-Methods"), m)
		}
	}
	headers := strings.ToLower(h.Get("Access-Control-Allow-Headers"))
	for _, want := range []string{"x-requested-with", "content-type", "authorization"} {
		if !strings.Contains(headers, want) {
			t.Fatalf("%s: Access-Control-Allow-Headers = %q lacks %s", what, h.Get("Access-Control-Allow-Headers"), want)
		}
	}
}

// TestCORS: CORS headers on normal, error and preflight responses.
func TestCORS(t *testing.T) {
	s := start(t, nil)
	wantCORS(t, "versions", do(t, "GET", s.URL()+"/_matrix/client/versions", "", nil).want(t, 200, "").Header)
	wantCORS(t, "missing token", do(t, "GET", v3(s, "account", "whoami"), "", nil).want(t, 401, "M_MISSING_TOKEN").Header)
	wantCORS(t, "unrecognized", do(t, "GET", v3(s, "nope"), "", nil).want(t, 404, "M_UNRECOGNIZED").Header)
	wantCORS(t, "wrong method", do(t, "PUT", v3(s, "login"), "", nil).want(t, 405, "M_UNRECOGNIZED").Header)
	wantCORS(t, "bad login", do(t, "POST", v3(s, "login"), "", "{").want(t, 400, "M_NOT_JSON").Header)
	wantCORS(t, "admin nonce", do(t, "GET", s.URL()+"/_synapse/admin/v1/register", "", nil).want(t, 200, "").Header)

	for _, p := range []string{
		"/_matrix/client/v3/account/whoami", // needs auth otherwise
		"/_matrix/client/v3/devices/ABC",
		"/_matrix/client/v3/login",
		"/_matrix/client/v3/not/a/route",
	} {
		req, _ := http.NewRequestWithContext(ctxT(t), http.MethodOptions, s.URL()+p, nil)
		req.Header.Set("Origin", "https://app.element.io")
		req.Header.Set("Access-Control-Request-Method", "DELETE")
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		r := send(t, req)
		if r.Status != 200 {
			t.Fatalf("OPTIONS %s = %d: %s", p, r.Status, r.Raw)
		}
		wantCORS(t, "OPTIONS "+p, r.Header)
	}
}

// TestDiscovery covers /versions, .well-known and /capabilities.
func TestDiscovery(t *testing.T) {
	s := start(t, nil)
	ctx := ctxT(t)
	cli := anon(t, s)
	vers, err := cli.Versions(ctx)
	if err != nil {
		t.Fatalf("Versions: %v", err)
	}
	r := do(t, "GET", s.URL()+"/_matrix/client/versions", "", nil).want(t, 200, "")
	list, _ := r.Body["versions"].([]any)
	var versions []string
	for _, v := range list {
		versions = append(versions, v.(string))
	}
	if !slices.Contains(versions, "v1.1") || !slices.Contains(versions, "v1.11") || len(vers.Versions) != len(versions) {
		t.Fatalf("versions = %v", versions)
	}
	if _, ok := r.Body["unstable_features"].(map[string]any); !ok {
		t.Fatalf("versions lacks unstable_features object: %s", r.Raw)
	}

	wk := do(t, "GET", s.URL()+"/.well-known/matrix/client", "", nil).want(t, 200, "")
	hs, _ := wk.Body["m.homeserver"].(map[string]any)
	if base, _ := hs["base_url"].(string); strings.TrimRight(base, "/") != s.URL() {
		t.Fatalf("well-known client = %s, want base_url %s", wk.Raw, s.URL())
	}
	// Behind a TLS proxy the advertised URL follows the forwarded host and scheme.
	req, _ := http.NewRequestWithContext(ctx, "GET", s.URL()+"/.well-known/matrix/client", nil)
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-Host", "matrix.example.org")
	wk = send(t, req)
	hs, _ = wk.Body["m.homeserver"].(map[string]any)
	if base, _ := hs["base_url"].(string); strings.TrimRight(base, "/") != "https://matrix.example.org" {
		t.Fatalf("proxied well-known client = %s", wk.Raw)
	}
	do(t, "GET", s.URL()+"/.well-known/matrix/server", "", nil).want(t, http.StatusNotFound, "M_NOT_FOUND")

	// A configured public base URL wins.
	s2 := testserver.Start(t, map[string]string{"MATRIX_PUBLIC_BASEURL": "https://hs.example.com"})
	wk = do(t, "GET", s2.URL()+"/.well-known/matrix/client", "", nil).want(t, 200, "")
	hs, _ = wk.Body["m.homeserver"].(map[string]any)
	if base, _ := hs["base_url"].(string); strings.TrimRight(base, "/") != "https://hs.example.com" {
		t.Fatalf("configured well-known client = %s", wk.Raw)
	}

	do(t, "GET", v3(s, "capabilities"), "", nil).want(t, http.StatusUnauthorized, "M_MISSING_TOKEN")
	alice := newUser(t, s, "alice")
	c := do(t, "GET", v3(s, "capabilities"), alice.AccessToken, nil).want(t, 200, "")
	caps, _ := c.Body["capabilities"].(map[string]any)
	rv, _ := caps["m.room_versions"].(map[string]any)
	if rv["default"] != "11" {
		t.Fatalf("default room version = %v", rv["default"])
	}
	avail, _ := rv["available"].(map[string]any)
	wantAvail := map[string]any{}
	for i := 1; i <= 12; i++ {
		wantAvail[strconv.Itoa(i)] = "stable"
	}
	if len(avail) != len(wantAvail) {
		t.Fatalf("available room versions = %v, want 1..12 stable", avail)
	}
	for k, v := range wantAvail {
		if avail[k] != v {
			t.Fatalf("room version %s = %v, want stable (all: %v)", k, avail[k], avail)
		}
	}
	wantBool := func(name string, want bool) {
		t.Helper()
		m, _ := caps[name].(map[string]any)
		if m["enabled"] != want {
			t.Fatalf("%s = %v, want enabled %v", name, caps[name], want)
		}
	}
	wantBool("m.change_password", true)
	wantBool("m.3pid_changes", false)
	wantBool("m.set_displayname", true)
	wantBool("m.set_avatar_url", true)
	mc, err := alice.Capabilities(ctx)
	if err != nil || mc.RoomVersions == nil || mc.RoomVersions.Default != "11" || mc.ChangePassword == nil || !mc.ChangePassword.Enabled {
		t.Fatalf("mautrix Capabilities = %+v, %v", mc, err)
	}
}
