package e2e

import "testing"

func TestThirdPartyProtocols(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	r := do(t, "GET", v3(s, "thirdparty", "protocols"), alice.AccessToken, nil).want(t, 200, "")
	if string(r.Raw) != "{}" {
		t.Fatalf("protocols = %s, want {}", r.Raw)
	}
	do(t, "GET", v3(s, "thirdparty", "protocol", "irc"), alice.AccessToken, nil).want(t, 404, "M_NOT_FOUND")
	do(t, "GET", v3(s, "thirdparty", "user", "irc"), alice.AccessToken, nil).want(t, 404, "M_NOT_FOUND")
	if r := do(t, "GET", v3(s, "thirdparty", "location")+"?alias=%23x:hs.test", alice.AccessToken, nil).want(t, 200, ""); string(r.Raw) != "[]" {
		t.Fatalf("location lookup = %s", r.Raw)
	}
	do(t, "GET", v3(s, "thirdparty", "protocols"), "", nil).want(t, 401, "M_MISSING_TOKEN")
}
