package e2e

import (
	"net/url"
	"testing"
)

// OpenID tokens: a widget or Element Call's token service checks who the
// bearer is through the federation API's userinfo.
func TestOpenIDTokens(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	r := do(t, "POST", v3(s, "user", string(alice.UserID), "openid", "request_token"), alice.AccessToken, map[string]any{}).want(t, 200, "")
	tok, _ := r.Body["access_token"].(string)
	if tok == "" || r.Body["token_type"] != "Bearer" || r.Body["matrix_server_name"] != "hs.test" || r.Body["expires_in"] != float64(3600) {
		t.Fatalf("request_token = %s", r.Raw)
	}
	userinfo := func(token string) *resp {
		return do(t, "GET", s.URL()+"/_matrix/federation/v1/openid/userinfo?access_token="+url.QueryEscape(token), "", nil)
	}
	if got := userinfo(tok).want(t, 200, ""); got.Body["sub"] != string(alice.UserID) {
		t.Fatalf("userinfo = %s", got.Raw)
	}
	// The OpenID token is no access token, and an access token no OpenID token.
	do(t, "GET", v3(s, "account", "whoami"), tok, nil).want(t, 401, "M_UNKNOWN_TOKEN")
	userinfo(alice.AccessToken).want(t, 401, "M_UNKNOWN_TOKEN")
	userinfo("nope").want(t, 401, "M_UNKNOWN_TOKEN")
	do(t, "GET", s.URL()+"/_matrix/federation/v1/openid/userinfo", "", nil).want(t, 401, "M_MISSING_TOKEN")

	do(t, "POST", v3(s, "user", string(bob.UserID), "openid", "request_token"), alice.AccessToken, map[string]any{}).want(t, 403, "M_FORBIDDEN")
	do(t, "POST", v3(s, "user", string(alice.UserID), "openid", "request_token"), "", map[string]any{}).want(t, 401, "M_MISSING_TOKEN")
	do(t, "POST", v3(s, "user", string(alice.UserID), "openid", "request_token"), alice.AccessToken, "[1]").want(t, 400, "M_BAD_JSON")
}
