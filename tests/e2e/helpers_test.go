// Package e2e holds end-to-end tests of the foundation: each test starts a
// real homeserver in-process (tests/testserver) and talks HTTP to it, with
// mautrix-go where it has a method and raw net/http for error paths.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"matrixhs/internal/accounts"
	"matrixhs/tests/testserver"
)

const testPassword = "correct horse battery staple"

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// start starts a test server; env may be nil (registration open).
func start(t *testing.T, env map[string]string) *testserver.Server {
	t.Helper()
	return testserver.Start(t, env)
}

// anon is a mautrix client without credentials.
func anon(t *testing.T, s *testserver.Server) *mautrix.Client {
	t.Helper()
	cli, err := mautrix.NewClient(s.URL(), "", "")
	if err != nil {
		t.Fatalf("mautrix.NewClient: %v", err)
	}
	return cli
}

// withToken is a mautrix client using an existing access token.
func withToken(t *testing.T, s *testserver.Server, userID, token string) *mautrix.Client {
	t.Helper()
	cli, err := mautrix.NewClient(s.URL(), id.UserID(userID), token)
	if err != nil {
		t.Fatalf("mautrix.NewClient: %v", err)
	}
	return cli
}

// createUser creates an account through the same service the CLI uses.
func createUser(t *testing.T, s *testserver.Server, localpart, password string) {
	t.Helper()
	_, err := s.Accounts.Register(ctxT(t), accounts.Registration{Localpart: localpart, Password: password, InhibitLogin: true})
	if err != nil {
		t.Fatalf("creating user %s: %v", localpart, err)
	}
}

// login logs in with m.id.user and returns a client holding the credentials.
func login(t *testing.T, s *testserver.Server, user, password, deviceID, displayName string) *mautrix.Client {
	t.Helper()
	cli := anon(t, s)
	resp, err := cli.Login(ctxT(t), &mautrix.ReqLogin{
		Type:                     mautrix.AuthTypePassword,
		Identifier:               mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: user},
		Password:                 password,
		DeviceID:                 id.DeviceID(deviceID),
		InitialDeviceDisplayName: displayName,
		StoreCredentials:         true,
	})
	if err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	if resp.AccessToken == "" || resp.DeviceID == "" {
		t.Fatalf("login %s: empty token or device: %+v", user, resp)
	}
	if deviceID != "" && string(resp.DeviceID) != deviceID {
		t.Fatalf("login %s: device_id = %q, want %q", user, resp.DeviceID, deviceID)
	}
	return cli
}

// newUser creates a user and logs it in.
func newUser(t *testing.T, s *testserver.Server, localpart string) *mautrix.Client {
	t.Helper()
	createUser(t, s, localpart, testPassword)
	return login(t, s, localpart, testPassword, "", "")
}

// wantMatrixErr asserts a mautrix error carries the status and errcode.
func wantMatrixErr(t *testing.T, err error, status int, errcode string) {
	t.Helper()
	if err == nil {
		t.Fatalf("expected %d %s, got success", status, errcode)
	}
	var he mautrix.HTTPError
	if !errors.As(err, &he) {
		t.Fatalf("expected %d %s, got non-HTTP error %v", status, errcode, err)
	}
	if he.Response == nil || he.Response.StatusCode != status {
		got := 0
		if he.Response != nil {
			got = he.Response.StatusCode
		}
		t.Fatalf("status = %d, want %d (%v)", got, status, err)
	}
	code := ""
	if he.RespError != nil {
		code = he.RespError.ErrCode
	}
	if code != errcode {
		t.Fatalf("errcode = %q, want %q (%v)", code, errcode, err)
	}
}

// resp is a raw HTTP response with its decoded JSON body.
type resp struct {
	Status int
	Header http.Header
	Raw    []byte
	Body   map[string]any
}

// errcode is the errcode field of the body ("" when absent).
func (r *resp) errcode() string {
	s, _ := r.Body["errcode"].(string)
	return s
}

// want asserts the status and errcode ("" means no errcode) of a response.
func (r *resp) want(t *testing.T, status int, errcode string) *resp {
	t.Helper()
	if r.Status != status || r.errcode() != errcode {
		t.Fatalf("got %d %q, want %d %q; body: %s", r.Status, r.errcode(), status, errcode, r.Raw)
	}
	return r
}

// do sends a raw request. body may be nil, a []byte / string sent verbatim,
// or any value marshalled to JSON. token "" sends no Authorization header.
func do(t *testing.T, method, u, token string, body any) *resp {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctxT(t), method, u, rd)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return send(t, req)
}

func send(t *testing.T, req *http.Request) *resp {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	out := &resp{Status: res.StatusCode, Header: res.Header, Raw: raw}
	if len(bytes.TrimSpace(raw)) > 0 && raw[0] == '{' {
		if err := json.Unmarshal(raw, &out.Body); err != nil {
			t.Fatalf("%s %s: response is not JSON: %v: %s", req.Method, req.URL, err, raw)
		}
	}
	return out
}

// cs builds a client-server API URL under /_matrix/client/v3 (or another
// version prefix given as "r0:" etc.); path segments are escaped.
func cs(s *testserver.Server, version string, segments ...string) string {
	parts := make([]string, len(segments))
	for i, seg := range segments {
		parts[i] = url.PathEscape(seg)
	}
	return s.URL() + "/_matrix/client/" + version + "/" + strings.Join(parts, "/")
}

// v3 is cs with the v3 prefix.
func v3(s *testserver.Server, segments ...string) string { return cs(s, "v3", segments...) }

// passwordAuth is the legacy-form m.login.password UIA dict.
func passwordAuth(session, user, password string) map[string]any {
	return map[string]any{"type": "m.login.password", "session": session, "user": user, "password": password}
}

// passwordAuthIdent is the m.id.user-identifier form of the UIA dict.
func passwordAuthIdent(session, user, password string) map[string]any {
	return map[string]any{
		"type": "m.login.password", "session": session, "password": password,
		"identifier": map[string]any{"type": "m.id.user", "user": user},
	}
}

// wantUIA asserts a UIA 401 without errcode offering exactly flows, and
// returns its session.
func wantUIA(t *testing.T, r *resp, flows [][]string) string {
	t.Helper()
	r.want(t, http.StatusUnauthorized, "")
	gotFlows := flowsOf(t, r)
	if !reflect.DeepEqual(gotFlows, flows) {
		t.Fatalf("flows = %v, want %v; body %s", gotFlows, flows, r.Raw)
	}
	sess, _ := r.Body["session"].(string)
	if sess == "" {
		t.Fatalf("UIA response without session: %s", r.Raw)
	}
	if _, ok := r.Body["params"].(map[string]any); !ok {
		t.Fatalf("UIA response without params object: %s", r.Raw)
	}
	if _, ok := r.Body["completed"].([]any); !ok {
		t.Fatalf("UIA response without completed list: %s", r.Raw)
	}
	return sess
}

func flowsOf(t *testing.T, r *resp) [][]string {
	t.Helper()
	var body struct {
		Flows []struct {
			Stages []string `json:"stages"`
		} `json:"flows"`
	}
	if err := json.Unmarshal(r.Raw, &body); err != nil {
		t.Fatalf("decoding flows: %v: %s", err, r.Raw)
	}
	out := [][]string{}
	for _, f := range body.Flows {
		out = append(out, f.Stages)
	}
	return out
}

// whoamiStatus returns the status and errcode of GET /account/whoami with token.
func whoamiStatus(t *testing.T, s *testserver.Server, token string) (int, string) {
	t.Helper()
	r := do(t, "GET", v3(s, "account", "whoami"), token, nil)
	return r.Status, r.errcode()
}

// wantTokenValid asserts a token authenticates as userID/deviceID.
func wantTokenValid(t *testing.T, s *testserver.Server, token, userID, deviceID string) {
	t.Helper()
	r := do(t, "GET", v3(s, "account", "whoami"), token, nil).want(t, 200, "")
	if r.Body["user_id"] != userID || (deviceID != "" && r.Body["device_id"] != deviceID) {
		t.Fatalf("whoami = %s, want %s / %s", r.Raw, userID, deviceID)
	}
}

// wantTokenDead asserts a token is rejected with 401 M_UNKNOWN_TOKEN.
func wantTokenDead(t *testing.T, s *testserver.Server, token string) {
	t.Helper()
	do(t, "GET", v3(s, "account", "whoami"), token, nil).want(t, http.StatusUnauthorized, "M_UNKNOWN_TOKEN")
}

// deviceIDs lists the device IDs of the client's user.
func deviceIDs(t *testing.T, cli *mautrix.Client) map[string]string {
	t.Helper()
	res, err := cli.GetDevicesInfo(ctxT(t))
	if err != nil {
		t.Fatalf("GetDevicesInfo: %v", err)
	}
	out := map[string]string{}
	for _, d := range res.Devices {
		out[string(d.DeviceID)] = d.DisplayName
	}
	return out
}

// jsonEqual compares two JSON documents structurally.
func jsonEqual(t *testing.T, got []byte, want any) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("got is not JSON: %v: %s", err, got)
	}
	wb, _ := json.Marshal(want)
	json.Unmarshal(wb, &w)
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("JSON mismatch:\n got  %s\n want %s", got, wb)
	}
}

// waitFor waits, with a deadline, until cond holds (for state that has no
// event to wait on, such as a long-poll having started to listen).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
