package auth

import (
	"context"
	"encoding/json"
	"matrixhs/internal/dbtest"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"matrixhs/internal/accounts"
)

func testAccounts(t *testing.T) *accounts.Service {
	t.Helper()
	db, err := dbtest.Open(t, context.Background(), filepath.Join(t.TempDir(), "a.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return accounts.New(db, accounts.Options{ServerName: "hs.test", BcryptCost: 4})
}

func register(t *testing.T, acc *accounts.Service, name string, admin bool) *accounts.Login {
	t.Helper()
	login, err := acc.Register(context.Background(), accounts.Registration{Localpart: name, Password: "pw", Admin: admin})
	if err != nil {
		t.Fatal(err)
	}
	return login
}

// call serves one request with the given token through h and returns the
// status and errcode.
func call(t *testing.T, h http.Handler, token string) (int, map[string]any) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	var body map[string]any
	json.Unmarshal(rec.Body.Bytes(), &body)
	return rec.Code, body
}

// whoami answers with the session's user, or "" when anonymous.
var whoami Endpoint = func(_ *http.Request, s *accounts.Session) (any, error) {
	if s == nil {
		return map[string]string{"user_id": ""}, nil
	}
	return map[string]string{"user_id": s.UserID}, nil
}

func TestRequireOptionalAdmin(t *testing.T) {
	acc := testAccounts(t)
	a := New(acc)
	alice := register(t, acc, "alice", false)
	root := register(t, acc, "root", true)

	for _, tc := range []struct {
		name    string
		h       http.Handler
		token   string
		status  int
		errcode string
		user    string
	}{
		{"required, no token", a.JSON(whoami), "", 401, "M_MISSING_TOKEN", ""},
		{"required, unknown token", a.JSON(whoami), "nope", 401, "M_UNKNOWN_TOKEN", ""},
		{"required, valid token", a.JSON(whoami), alice.AccessToken, 200, "", alice.UserID},
		{"optional, no token", a.OptionalJSON(whoami), "", 200, "", ""},
		{"optional, unknown token", a.OptionalJSON(whoami), "nope", 401, "M_UNKNOWN_TOKEN", ""},
		{"optional, valid token", a.OptionalJSON(whoami), alice.AccessToken, 200, "", alice.UserID},
		{"admin, not an admin", a.AdminJSON(whoami), alice.AccessToken, 403, "M_FORBIDDEN", ""},
		{"admin, no token", a.AdminJSON(whoami), "", 401, "M_MISSING_TOKEN", ""},
		{"admin, admin", a.AdminJSON(whoami), root.AccessToken, 200, "", root.UserID},
	} {
		status, body := call(t, tc.h, tc.token)
		if status != tc.status || (tc.errcode != "" && body["errcode"] != tc.errcode) || (tc.status == 200 && body["user_id"] != tc.user) {
			t.Errorf("%s: %d %v, want %d %s %s", tc.name, status, body, tc.status, tc.errcode, tc.user)
		}
	}
	// An unknown token is no soft logout: the client must log in again.
	if _, body := call(t, a.JSON(whoami), "nope"); body["soft_logout"] != false {
		t.Errorf("unknown token: soft_logout = %v, want false", body["soft_logout"])
	}
}

// A deactivated account's token is refused, as unknown.
func TestRequireRefusesDeactivatedAccounts(t *testing.T) {
	acc := testAccounts(t)
	a := New(acc)
	bob := register(t, acc, "bob", false)
	if err := acc.Deactivate(context.Background(), bob.UserID, false); err != nil {
		t.Fatal(err)
	}
	if status, body := call(t, a.JSON(whoami), bob.AccessToken); status != 401 || body["errcode"] != "M_UNKNOWN_TOKEN" {
		t.Fatalf("deactivated: %d %v", status, body)
	}
}

// Endpoints' domain errors are mapped to Matrix errors by the adapter.
func TestEndpointErrorsAreMapped(t *testing.T) {
	acc := testAccounts(t)
	a := New(acc)
	alice := register(t, acc, "alice", false)
	taken := a.JSON(func(r *http.Request, _ *accounts.Session) (any, error) {
		return nil, acc.Available(r.Context(), "alice")
	})
	if status, body := call(t, taken, alice.AccessToken); status != 400 || body["errcode"] != "M_USER_IN_USE" {
		t.Fatalf("Available(taken) through the adapter: %d %v", status, body)
	}
	public := Public(func(r *http.Request) (any, error) { return nil, acc.Available(r.Context(), "_x") })
	if status, body := call(t, public, ""); status != 400 || body["errcode"] != "M_INVALID_USERNAME" {
		t.Fatalf("Available(_x) through Public: %d %v", status, body)
	}
}
