package fedtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"matrixhs/internal/accounts"
)

// MautrixUser is a logged-in user of one server of the network: its mautrix
// client does what a client would, Do and the sync helpers make the raw
// client-API requests that checks need.
type MautrixUser struct {
	*mautrix.Client
	HS    *Server
	ID    string
	Token string
	t     testing.TB
}

// NewUser registers localpart on s (through the accounts service, as the
// admin CLI does) and logs it in.
func (s *Server) NewUser(t testing.TB, localpart string) *MautrixUser {
	t.Helper()
	login, err := s.Accounts.Register(context.Background(), accounts.Registration{Localpart: localpart, Password: "correct horse battery staple"})
	if err != nil {
		t.Fatalf("registering %s on %s: %v", localpart, s.Name, err)
	}
	cli, err := mautrix.NewClient(s.URL(), id.UserID(login.UserID), login.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	return &MautrixUser{Client: cli, HS: s, ID: login.UserID, Token: login.AccessToken, t: t}
}

// Follow points the user's client at its server again after a restart
// (which moves the client port).
func (u *MautrixUser) Follow() {
	u.Client.HomeserverURL, _ = url.Parse(u.HS.URL())
}

// Ctx is a context for one client request.
func (u *MautrixUser) Ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	u.t.Cleanup(cancel)
	return ctx
}

// Response is a client-API answer.
type Response struct {
	Status int
	Body   map[string]any
	Raw    []byte
}

// Want fails unless the answer has the status and errcode ("" for any).
func (r Response) Want(t testing.TB, status int, errcode string) {
	t.Helper()
	if r.Status != status || (errcode != "" && r.Body["errcode"] != errcode) {
		t.Fatalf("got %d %s, want %d %s", r.Status, r.Raw, status, errcode)
	}
}

// Do sends a client-API request (path under /_matrix/client/v3) with a
// JSON body (nil for none).
func (u *MautrixUser) Do(method, path string, body any) Response {
	u.t.Helper()
	var rd io.Reader
	if body != nil {
		js, err := json.Marshal(body)
		if err != nil {
			u.t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, u.HS.URL()+"/_matrix/client/v3"+path, rd)
	if err != nil {
		u.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+u.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		u.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := Response{Status: resp.StatusCode, Raw: raw}
	json.Unmarshal(raw, &out.Body)
	return out
}

// Must is Do expecting 200.
func (u *MautrixUser) Must(method, path string, body any) map[string]any {
	u.t.Helper()
	r := u.Do(method, path, body)
	if r.Status != http.StatusOK {
		u.t.Fatalf("%s %s as %s: %d %s", method, path, u.ID, r.Status, r.Raw)
	}
	return r.Body
}

// Sync runs one /sync (a long-poll when since is set) with a filter (""
// for none).
func (u *MautrixUser) Sync(since, filter string, timeout time.Duration) map[string]any {
	u.t.Helper()
	q := url.Values{"timeout": {fmt.Sprint(timeout.Milliseconds())}}
	if since != "" {
		q.Set("since", since)
	}
	if filter != "" {
		q.Set("filter", filter)
	}
	return u.Must("GET", "/sync?"+q.Encode(), nil)
}

// SyncUntil long-polls /sync with a filter until check accepts a response
// (each sync waits on the server for news), failing after the deadline.
func (u *MautrixUser) SyncUntil(filter string, deadline time.Duration, what string, check func(sync map[string]any) bool) map[string]any {
	u.t.Helper()
	end := time.Now().Add(deadline)
	since := ""
	for time.Now().Before(end) {
		res := u.Sync(since, filter, 2*time.Second)
		if check(res) {
			return res
		}
		since, _ = res["next_batch"].(string)
	}
	u.t.Fatalf("%s never saw %s", u.ID, what)
	return nil
}

// Get walks a decoded JSON value along keys.
func Get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// List is a decoded JSON array (nil if v is none).
func List(v any) []any {
	l, _ := v.([]any)
	return l
}
