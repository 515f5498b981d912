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
	// Lookups under any protocol, known or not, find nothing (Synapse: 200 []);
	// Element probes im.vector.protocol.sip_virtual and would see an error.
	for _, kind := range []string{"user", "location"} {
		for _, proto := range []string{"irc", "im.vector.protocol.sip_virtual"} {
			r := do(t, "GET", v3(s, "thirdparty", kind, proto)+"?userid=x", alice.AccessToken, nil).want(t, 200, "")
			if string(r.Raw) != "[]" {
				t.Fatalf("%s lookup under %s = %s, want []", kind, proto, r.Raw)
			}
		}
	}
	do(t, "GET", v3(s, "thirdparty", "user", "irc"), "", nil).want(t, 401, "M_MISSING_TOKEN")
	if r := do(t, "GET", v3(s, "thirdparty", "location")+"?alias=%23x:hs.test", alice.AccessToken, nil).want(t, 200, ""); string(r.Raw) != "[]" {
		t.Fatalf("location lookup = %s", r.Raw)
	}
	do(t, "GET", v3(s, "thirdparty", "protocols"), "", nil).want(t, 401, "M_MISSING_TOKEN")
}
