package e2e

import (
	"testing"

	"matrixhs/cmd/homeserver/server"
	"matrixhs/config"
	"matrixhs/tests/testserver"
)

// Every admin API request leaves an audit line naming the admin (or the
// refused user) and the action; the line is written before the answer.
func TestAdminRequestsAreAudited(t *testing.T) {
	logs := &logBuffer{}
	s := testserver.StartWith(t, map[string]string{config.EnvLogLevel: "info"}, server.Options{LogOutput: logs})
	admin := newAdmin(t, s, "root")
	alice := newUser(t, s, "alice")
	do(t, "GET", adminURL(s, "/v2/users/@alice:hs.test"), admin.AccessToken, nil).want(t, 200, "")
	do(t, "GET", adminURL(s, "/v2/users"), alice.AccessToken, nil).want(t, 403, "M_FORBIDDEN")

	var granted, refused map[string]any
	for _, line := range logs.lines(t) {
		if line["audit"] != "admin" {
			continue
		}
		switch line["action"] {
		case "GET /_synapse/admin/v2/users/{userId}":
			granted = line
		case "GET /_synapse/admin/v2/users":
			refused = line
		}
	}
	if granted == nil || granted["admin"] != string(admin.UserID) || granted["status"] != float64(200) ||
		granted["path"] != "/_synapse/admin/v2/users/@alice:hs.test" || granted["level"] != "info" {
		t.Fatalf("audit line of an admin request = %v", granted)
	}
	if refused == nil || refused["user_id"] != string(alice.UserID) || refused["status"] != float64(403) || refused["level"] != "warning" {
		t.Fatalf("audit line of a refused request = %v", refused)
	}
}
