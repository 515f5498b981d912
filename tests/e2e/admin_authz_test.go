package e2e

import (
	"regexp"
	"strings"
	"testing"

	"matrixhs/clientapi"
	"matrixhs/mediaapi"
)

// Every admin endpoint, found in the route tables, refuses users who are
// not server admins (403 M_FORBIDDEN) and requests without a token (401):
// an endpoint added later is covered without being listed here.
func TestEveryAdminEndpointNeedsAnAdmin(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	vars := regexp.MustCompile(`\{[^}]+\}`)
	routes := append(clientapi.Routes(), mediaapi.AdminRoutes()...)
	n := 0
	for _, rt := range routes {
		admin := strings.HasPrefix(rt.Path, "/_synapse/admin/") || strings.Contains(rt.Path, "/admin/")
		if !admin || rt.Method == "HEAD" || rt.Method == "OPTIONS" ||
			rt.Path == "/_synapse/admin/v1/register" || // shared-secret registration: the secret is the credential
			strings.HasSuffix(rt.Path, "/admin/whois/{userId}") { // the spec lets users look themselves up
			continue
		}
		path := vars.ReplaceAllStringFunc(rt.Path, func(v string) string {
			switch {
			case strings.Contains(strings.ToLower(v), "user"):
				return "@alice:hs.test"
			case strings.Contains(strings.ToLower(v), "room"):
				return "!room:hs.test"
			case strings.Contains(v, "serverName"):
				return "hs.test"
			default:
				return "x"
			}
		})
		var body any
		if rt.Method != "GET" && rt.Method != "DELETE" {
			body = map[string]any{}
		}
		do(t, rt.Method, s.URL()+path, alice.AccessToken, body).want(t, 403, "M_FORBIDDEN")
		do(t, rt.Method, s.URL()+path, "", body).want(t, 401, "M_MISSING_TOKEN")
		n++
	}
	if n < 80 {
		t.Fatalf("only %d admin endpoints found", n)
	}
}
