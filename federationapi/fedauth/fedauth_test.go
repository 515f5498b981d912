package fedauth

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/httputil"
)

// staticKeys verifies with a fixed set of keys.
type staticKeys map[spec.ServerName]map[gomatrixserverlib.KeyID]ed25519.PublicKey

func (s staticKeys) VerifyJSONs(_ context.Context, reqs []gomatrixserverlib.VerifyJSONRequest) ([]gomatrixserverlib.VerifyJSONResult, error) {
	out := make([]gomatrixserverlib.VerifyJSONResult, len(reqs))
	for i, r := range reqs {
		ids, _ := gomatrixserverlib.ListKeyIDs(string(r.ServerName), r.Message)
		out[i].Error = errors.New("no known key")
		for _, id := range ids {
			if key, ok := s[r.ServerName][id]; ok {
				out[i].Error = gomatrixserverlib.VerifyJSON(string(r.ServerName), id, key, r.Message)
			}
		}
	}
	return out, nil
}

type authFixture struct {
	srv    *httptest.Server
	priv   ed25519.PrivateKey
	got    chan string // "origin body" seen by the handler
	client *http.Client
	auth   *Authenticator
}

func newAuthFixture(t *testing.T) *authFixture {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(nil)
	auth := New("dest.test", staticKeys{"origin.test": {"ed25519:o": pub}}, nil)
	f := &authFixture{priv: priv, got: make(chan string, 1), auth: auth}
	f.srv = httptest.NewServer(auth.Handler(func(r *http.Request, origin spec.ServerName) (any, error) {
		body, _ := io.ReadAll(r.Body)
		if o, _ := Origin(r.Context()); o != origin {
			t.Errorf("context origin %q, argument %q", o, origin)
		}
		f.got <- string(origin) + " " + string(body)
		return map[string]string{"ok": "yes"}, nil
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// signed builds a request signed as origin for destination; mutate may
// alter the signed request before it is sent.
func (f *authFixture) signed(t *testing.T, method, uri string, body any, origin, destination spec.ServerName, priv ed25519.PrivateKey) *http.Request {
	t.Helper()
	fr := fclient.NewFederationRequest(method, origin, destination, uri)
	if body != nil {
		if err := fr.SetContent(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := fr.Sign(origin, "ed25519:o", priv); err != nil {
		t.Fatal(err)
	}
	req, err := fr.HTTPRequest()
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Scheme, req.URL.Host, req.Host = "http", f.srv.Listener.Addr().String(), ""
	return req
}

func (f *authFixture) send(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct {
		Errcode string `json:"errcode"`
	}
	raw, _ := io.ReadAll(resp.Body)
	json.Unmarshal(raw, &e)
	return resp.StatusCode, e.Errcode
}

func TestSignedRequestsAccepted(t *testing.T) {
	f := newAuthFixture(t)
	req := f.signed(t, "GET", "/_matrix/federation/v1/query/profile?user_id=%40a%3Aorigin.test&field=displayname", nil, "origin.test", "dest.test", f.priv)
	if status, code := f.send(t, req); status != 200 {
		t.Fatalf("GET: %d %s", status, code)
	}
	if got := <-f.got; got != "origin.test " {
		t.Fatalf("handler saw %q", got)
	}
	body := map[string]any{"pdus": []any{}, "n": 1.5, "s": "é"}
	req = f.signed(t, "PUT", "/_matrix/federation/v1/send/t%2F1", body, "origin.test", "dest.test", f.priv)
	if status, code := f.send(t, req); status != 200 {
		t.Fatalf("PUT: %d %s", status, code)
	}
	if got := <-f.got; !strings.HasPrefix(got, "origin.test {") || !strings.Contains(got, `"pdus":[]`) {
		t.Fatalf("handler saw %q", got)
	}
	// Servers older than Matrix 1.3 send no destination: accepted.
	req = f.signed(t, "GET", "/x", nil, "origin.test", "dest.test", f.priv)
	req.Header.Set("Authorization", strings.Replace(req.Header.Get("Authorization"), `,destination="dest.test"`, "", 1))
	if status, code := f.send(t, req); status != 200 {
		t.Fatalf("without destination: %d %s", status, code)
	}
	<-f.got
}

// The hook told of authenticated origins (the outbound sender resets their
// backoff) hears of accepted requests only.
func TestOnAuthenticatedHearsAcceptedOrigins(t *testing.T) {
	f := newAuthFixture(t)
	heard := make(chan spec.ServerName, 2)
	f.auth.OnAuthenticated(func(o spec.ServerName) { heard <- o })
	_, other, _ := ed25519.GenerateKey(nil)
	if status, _ := f.send(t, f.signed(t, "GET", "/x", nil, "origin.test", "dest.test", other)); status != 401 {
		t.Fatalf("bad signature: %d", status)
	}
	if status, _ := f.send(t, f.signed(t, "GET", "/x", nil, "origin.test", "dest.test", f.priv)); status != 200 {
		t.Fatalf("good signature: %d", status)
	}
	<-f.got
	if got := <-heard; got != "origin.test" || len(heard) != 0 {
		t.Fatalf("hook heard %q (and %d more)", got, len(heard))
	}
}

func TestBadRequestsRefused(t *testing.T) {
	f := newAuthFixture(t)
	_, otherKey, _ := ed25519.GenerateKey(nil)
	for name, tc := range map[string]struct {
		req    func() *http.Request
		status int
		code   string
	}{
		"no auth header": {func() *http.Request {
			req := f.signed(t, "GET", "/x", nil, "origin.test", "dest.test", f.priv)
			req.Header.Del("Authorization")
			return req
		}, 401, "M_UNAUTHORIZED"},
		"other auth scheme only": {func() *http.Request {
			req := f.signed(t, "GET", "/x", nil, "origin.test", "dest.test", f.priv)
			req.Header.Set("Authorization", "Bearer abc")
			return req
		}, 401, "M_UNAUTHORIZED"},
		"malformed header": {func() *http.Request {
			req := f.signed(t, "GET", "/x", nil, "origin.test", "dest.test", f.priv)
			req.Header.Set("Authorization", `X-Matrix origin="origin.test",key=`)
			return req
		}, 400, "M_UNAUTHORIZED"},
		"bad signature": {func() *http.Request {
			return f.signed(t, "GET", "/x", nil, "origin.test", "dest.test", otherKey)
		}, 401, "M_UNAUTHORIZED"},
		"signed for another path": {func() *http.Request {
			req := f.signed(t, "GET", "/x", nil, "origin.test", "dest.test", f.priv)
			req.URL.Path = "/y"
			return req
		}, 401, "M_UNAUTHORIZED"},
		"signed for another query": {func() *http.Request {
			req := f.signed(t, "GET", "/x?a=1", nil, "origin.test", "dest.test", f.priv)
			req.URL.RawQuery = "a=2"
			return req
		}, 401, "M_UNAUTHORIZED"},
		"signed for another method": {func() *http.Request {
			req := f.signed(t, "GET", "/x", nil, "origin.test", "dest.test", f.priv)
			req.Method = "DELETE"
			return req
		}, 401, "M_UNAUTHORIZED"},
		"body changed": {func() *http.Request {
			req := f.signed(t, "PUT", "/x", map[string]int{"a": 1}, "origin.test", "dest.test", f.priv)
			req.Body = io.NopCloser(strings.NewReader(`{"a":2}`))
			req.ContentLength = 7
			return req
		}, 401, "M_UNAUTHORIZED"},
		"wrong destination": {func() *http.Request {
			return f.signed(t, "GET", "/x", nil, "origin.test", "elsewhere.test", f.priv)
		}, 401, "M_UNAUTHORIZED"},
		"wrong origin": {func() *http.Request {
			return f.signed(t, "GET", "/x", nil, "impostor.test", "dest.test", f.priv)
		}, 401, "M_UNAUTHORIZED"},
		"origin not a server name": {func() *http.Request {
			req := f.signed(t, "GET", "/x", nil, "origin.test", "dest.test", f.priv)
			req.Header.Set("Authorization", strings.Replace(req.Header.Get("Authorization"), `origin="origin.test"`, `origin="bad name"`, 1))
			return req
		}, 400, "M_UNAUTHORIZED"},
		"body not JSON": {func() *http.Request {
			req := f.signed(t, "PUT", "/x", map[string]int{"a": 1}, "origin.test", "dest.test", f.priv)
			req.Body = io.NopCloser(strings.NewReader(`{"a":`))
			req.ContentLength = 5
			return req
		}, 400, "M_NOT_JSON"},
	} {
		status, code := f.send(t, tc.req())
		if status != tc.status || code != tc.code {
			t.Errorf("%s: %d %s, want %d %s", name, status, code, tc.status, tc.code)
		}
	}
	select {
	case got := <-f.got:
		t.Fatalf("a refused request reached the handler: %q", got)
	default:
	}
}

func TestParseXMatrix(t *testing.T) {
	for header, want := range map[string]string{
		`X-Matrix origin="a.test",key="ed25519:1",sig="abc",destination="b.test"`:       "a.test ed25519:1 abc b.test",
		`x-matrix   Origin=a.test:8448, KEY=ed25519:1 , sig = "a\"b\\c", destination=b`: `a.test:8448 ed25519:1 a"b\c b`,
		`X-Matrix origin="a,b",key="k",sig="s",extra="ignored"`:                         "a,b k s ",
	} {
		p, ok, err := ParseXMatrix(header)
		if !ok || err != nil {
			t.Errorf("%s: %v %v", header, ok, err)
			continue
		}
		if got := fmt.Sprintf("%s %s %s %s", p["origin"], p["key"], p["sig"], p["destination"]); got != want {
			t.Errorf("%s: %q, want %q", header, got, want)
		}
	}
	if _, ok, _ := ParseXMatrix("Bearer xyz"); ok {
		t.Error("Bearer taken for X-Matrix")
	}
	for _, bad := range []string{
		`X-Matrix origin`, `X-Matrix origin="a`, `X-Matrix origin=a,origin=b`, `X-Matrix origin="a"b`, `X-Matrix =a`,
		`X-Matrix origin=a"b`, `X-Matrix origin="a\`,
	} {
		if _, ok, err := ParseXMatrix(bad); !ok || err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestServerACL(t *testing.T) {
	acl := ParseACL([]byte(`{"allow":["*", 5], "deny":["evil.com", "*.evil.com", "ba?.org"], "allow_ip_literals": false}`))
	for server, want := range map[spec.ServerName]bool{
		"good.org": true, "GOOD.org:8448": true, "evil.com": false, "EVIL.COM:443": false, "sub.evil.com": false,
		"notevil.com": true, "bad.org": false, "bar.org": false, "baad.org": true, "1.2.3.4": false, "1.2.3.4:80": false,
		"[::1]:8448": false, "bad name": false,
	} {
		if got := acl.Allows(server); got != want {
			t.Errorf("%s: %v, want %v", server, got, want)
		}
	}
	if !ParseACL([]byte(`{"allow":["*"]}`)).Allows("1.2.3.4") {
		t.Error("IP literal refused though allow_ip_literals defaults to true")
	}
	if !ParseACL([]byte(`{"allow":["*"],"allow_ip_literals":"no"}`)).Allows("[::1]") {
		t.Error("a non-boolean allow_ip_literals is not true")
	}
	for content, server := range map[string]spec.ServerName{`{}`: "a.org", `{"allow":"*"}`: "a.org", `not json`: "a.org"} {
		if ParseACL([]byte(content)).Allows(server) {
			t.Errorf("%s allows %s", content, server)
		}
	}
	only := ParseACL([]byte(`{"allow":["*.example.org","matrix.org"]}`))
	for server, want := range map[spec.ServerName]bool{
		"a.example.org": true, "example.org": false, "matrix.org": true, "matrix.org.evil": false, "xmatrix.org": false,
	} {
		if got := only.Allows(server); got != want {
			t.Errorf("%s: %v, want %v", server, got, want)
		}
	}

	ctx := context.Background()
	lookup := func(_ context.Context, roomID string) ([]byte, bool, error) {
		switch roomID {
		case "!acl:x":
			return []byte(`{"allow":["*"],"deny":["evil.com"]}`), true, nil
		case "!broken:x":
			return nil, false, errors.New("db down")
		}
		return nil, false, nil
	}
	if err := CheckServerACL(ctx, lookup, "!acl:x", "good.org"); err != nil {
		t.Errorf("allowed server: %v", err)
	}
	var herr *httputil.Error
	if err := CheckServerACL(ctx, lookup, "!acl:x", "evil.com"); !errors.As(err, &herr) || herr.Status != 403 || herr.Code != "M_FORBIDDEN" {
		t.Errorf("denied server: %v", err)
	}
	if err := CheckServerACL(ctx, lookup, "!none:x", "evil.com"); err != nil {
		t.Errorf("room without ACL: %v", err)
	}
	if err := CheckServerACL(ctx, lookup, "!broken:x", "good.org"); err == nil || errors.As(err, &herr) {
		t.Errorf("lookup failure: %v", err)
	}
}

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		glob, s string
		want    bool
	}{
		{"*", "", true}, {"*", "abc", true}, {"a*c", "abbbc", true}, {"a*c", "abcd", false}, {"?", "", false},
		{"a?c", "abc", true}, {"**a", "bba", true}, {"*a*b*", "xxaxxbxx", true}, {"*a*b*", "xxbxxaxx", false},
		{"", "", true}, {"", "a", false}, {"a*", "a", true}, {"*.org", "x.org", true}, {"*.org", "xorg", false},
	} {
		if got := globMatch(tc.glob, tc.s); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v", tc.glob, tc.s, got)
		}
	}
}
