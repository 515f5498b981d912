// Package fedauth authenticates requests from other servers: the X-Matrix
// Authorization header signs the method, the request target, the origin,
// the destination (us) and the JSON body with the origin's signing key,
// which the key ring checks. Handlers wrapped by an Authenticator run only
// for requests that pass, and learn the origin (Origin, or the origin
// argument of Handler).
//
// Register a federation endpoint as
//
//	r.Handle("/_matrix/federation/v1/…", auth.Handler(func(r *http.Request, origin spec.ServerName) (any, error) {…}))
//
// (or auth.Require(h) for a plain http.Handler). Endpoints that act on a
// room also check its server ACL with CheckServerACL.
package fedauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/httputil"
	"matrixhs/internal/ratelimit"
)

// Authenticator checks X-Matrix signatures on requests to this server.
type Authenticator struct {
	serverName spec.ServerName
	verifier   gomatrixserverlib.JSONVerifier
	now        func() time.Time
	// onAuthenticated is told each authenticated origin (may be unset).
	onAuthenticated atomic.Pointer[func(spec.ServerName)]
	// origins limits each origin's requests (nil: no limit; limits.go).
	origins *ratelimit.Limiter
}

// New builds an Authenticator for requests to serverName, checking
// signatures with verifier (the key ring); now is the clock (nil:
// time.Now).
func New(serverName spec.ServerName, verifier gomatrixserverlib.JSONVerifier, now func() time.Time) *Authenticator {
	if now == nil {
		now = time.Now
	}
	return &Authenticator{serverName: serverName, verifier: verifier, now: now}
}

type originKey struct{}

// Origin is the server that signed the request being served (set for
// handlers behind Require or Handler).
func Origin(ctx context.Context) (spec.ServerName, bool) {
	o, ok := ctx.Value(originKey{}).(spec.ServerName)
	return o, ok && o != ""
}

// WithOrigin returns ctx marked as serving a request from origin (for
// tests of handlers).
func WithOrigin(ctx context.Context, origin spec.ServerName) context.Context {
	return context.WithValue(ctx, originKey{}, origin)
}

// Require serves next only for requests whose X-Matrix signature checks
// out; others are answered 401 (or 400 for a malformed header) with
// M_UNAUTHORIZED. Bodies larger than DefaultMaxBody are refused (413), and
// origins past their request budget are answered 429 (limits.go).
func (a *Authenticator) Require(next http.Handler) http.Handler {
	return a.RequireWithBody(next, DefaultMaxBody)
}

// RequireWithBody is Require with its own body limit (0: only the
// server's).
func (a *Authenticator) RequireWithBody(next http.Handler, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if maxBody > 0 && r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		}
		origin, err := a.Authenticate(r)
		if err != nil {
			httputil.WriteError(w, r, err)
			return
		}
		if f := a.onAuthenticated.Load(); f != nil {
			(*f)(origin)
		}
		if err := a.admit(r, origin); err != nil {
			httputil.WriteError(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithOrigin(r.Context(), origin)))
	})
}

// OnAuthenticated sets a function told of every authenticated request's
// origin (the outbound sender resets that server's backoff: it is up).
func (a *Authenticator) OnAuthenticated(f func(spec.ServerName)) { a.onAuthenticated.Store(&f) }

// HandlerFunc is a federation endpoint: it is told the authenticated
// origin and returns its JSON answer or an error (as httputil.Handler).
type HandlerFunc func(r *http.Request, origin spec.ServerName) (any, error)

// Handler serves fn behind Require.
func (a *Authenticator) Handler(fn HandlerFunc) http.Handler {
	return a.HandlerWithBody(fn, DefaultMaxBody)
}

// HandlerWithBody serves fn behind RequireWithBody: for endpoints whose
// bodies may be larger than DefaultMaxBody (transactions).
func (a *Authenticator) HandlerWithBody(fn HandlerFunc, maxBody int64) http.Handler {
	return a.RequireWithBody(httputil.Handler(func(r *http.Request) (any, error) {
		origin, _ := Origin(r.Context())
		return fn(r, origin)
	}), maxBody)
}

func unauthorized(status int, format string, args ...any) *httputil.Error {
	return &httputil.Error{Status: status, Code: "M_UNAUTHORIZED", Msg: fmt.Sprintf(format, args...)}
}

// Authenticate checks r's X-Matrix signature and returns the origin. It
// reads the body and puts it back for the handler.
func (a *Authenticator) Authenticate(r *http.Request) (spec.ServerName, error) {
	auth, err := parseAuthHeaders(r.Header.Values("Authorization"))
	if err != nil {
		return "", err
	}
	if auth.destination != "" && auth.destination != a.serverName {
		return "", unauthorized(http.StatusUnauthorized, "Destination %q in the Authorization header is not this server", auth.destination)
	}
	body, err := httputil.ReadBody(r)
	if err != nil {
		return "", err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	signed := struct {
		Method      string                                                 `json:"method"`
		URI         string                                                 `json:"uri"`
		Origin      spec.ServerName                                        `json:"origin"`
		Destination spec.ServerName                                        `json:"destination"`
		Content     json.RawMessage                                        `json:"content,omitempty"`
		Signatures  map[spec.ServerName]map[gomatrixserverlib.KeyID]string `json:"signatures"`
	}{
		Method: r.Method, URI: requestTarget(r), Origin: auth.origin, Destination: a.serverName,
		Signatures: map[spec.ServerName]map[gomatrixserverlib.KeyID]string{auth.origin: auth.sigs},
	}
	if len(bytes.TrimSpace(body)) > 0 {
		if !json.Valid(body) || !utf8.Valid(body) {
			return "", httputil.NotJSON("request body is not valid UTF-8 JSON")
		}
		signed.Content = body
	}
	msg, err := json.Marshal(signed)
	if err != nil {
		return "", httputil.BadJSON("request body: %v", err)
	}
	results, err := a.verifier.VerifyJSONs(r.Context(), []gomatrixserverlib.VerifyJSONRequest{{
		ServerName: auth.origin, AtTS: spec.AsTimestamp(a.now()), Message: msg,
		ValidityCheckingFunc: gomatrixserverlib.StrictValiditySignatureCheck,
	}})
	if err != nil {
		return "", fmt.Errorf("checking request signature: %w", err)
	}
	if results[0].Error != nil {
		httputil.Logger(r.Context()).WithError(results[0].Error).WithField("origin", auth.origin).Info("federation request refused")
		return "", unauthorized(http.StatusUnauthorized, "Invalid signature for server %s: %v", auth.origin, results[0].Error)
	}
	return auth.origin, nil
}

// requestTarget is the path and query as the client sent them, which is
// what it signed.
func requestTarget(r *http.Request) string {
	if strings.HasPrefix(r.RequestURI, "/") {
		return r.RequestURI
	}
	return r.URL.RequestURI()
}

// xMatrix is what the X-Matrix headers of a request say.
type xMatrix struct {
	origin, destination spec.ServerName
	sigs                map[gomatrixserverlib.KeyID]string
}

// parseAuthHeaders reads the X-Matrix Authorization headers (one per
// signing key); other schemes are ignored.
func parseAuthHeaders(values []string) (xMatrix, error) {
	out := xMatrix{sigs: map[gomatrixserverlib.KeyID]string{}}
	for _, v := range values {
		params, isXMatrix, err := ParseXMatrix(v)
		if !isXMatrix {
			continue
		}
		if err != nil {
			return out, unauthorized(http.StatusBadRequest, "Malformed Authorization header: %v", err)
		}
		origin, key, sig := spec.ServerName(params["origin"]), gomatrixserverlib.KeyID(params["key"]), params["sig"]
		if origin == "" || key == "" || sig == "" {
			return out, unauthorized(http.StatusBadRequest, "Malformed Authorization header: origin, key and sig are required")
		}
		if _, _, ok := spec.ParseAndValidateServerName(origin); !ok {
			return out, unauthorized(http.StatusBadRequest, "Malformed Authorization header: origin %q is not a server name", origin)
		}
		dest := spec.ServerName(params["destination"])
		if (out.origin != "" && origin != out.origin) || (out.destination != "" && dest != out.destination) {
			return out, unauthorized(http.StatusBadRequest, "Malformed Authorization header: X-Matrix headers disagree")
		}
		out.origin, out.destination = origin, dest
		out.sigs[key] = sig
	}
	if out.origin == "" {
		return out, unauthorized(http.StatusUnauthorized, "Missing Authorization headers")
	}
	return out, nil
}

// ParseXMatrix parses an Authorization header value of the X-Matrix
// scheme (RFC 7235 syntax, as the spec describes it): parameter names are
// case-insensitive (returned lower-cased), values are tokens or quoted
// strings with backslash escapes, and colons are allowed unquoted.
// isXMatrix is false for other schemes.
func ParseXMatrix(header string) (params map[string]string, isXMatrix bool, err error) {
	scheme, rest, _ := strings.Cut(strings.TrimLeft(header, " "), " ")
	if !strings.EqualFold(scheme, "X-Matrix") {
		return nil, false, nil
	}
	params = map[string]string{}
	s := strings.TrimLeft(rest, " \t")
	for s != "" {
		name, after, found := strings.Cut(s, "=")
		if !found {
			return nil, true, fmt.Errorf("parameter %q has no value", strings.TrimSpace(name))
		}
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "" {
			return nil, true, errors.New("empty parameter name")
		}
		value, remaining, err := readValue(strings.TrimLeft(after, " \t"))
		if err != nil {
			return nil, true, fmt.Errorf("parameter %s: %w", name, err)
		}
		if _, dup := params[name]; dup {
			return nil, true, fmt.Errorf("parameter %s given twice", name)
		}
		params[name] = value
		remaining = strings.TrimLeft(remaining, " \t")
		if remaining != "" && remaining[0] != ',' {
			return nil, true, fmt.Errorf("unexpected %q after parameter %s", remaining, name)
		}
		s = strings.TrimLeft(strings.TrimPrefix(remaining, ","), " \t")
	}
	return params, true, nil
}

// readValue reads a quoted string or a token from the start of s.
func readValue(s string) (value, rest string, err error) {
	if !strings.HasPrefix(s, `"`) {
		end := strings.IndexAny(s, ", \t")
		if end < 0 {
			end = len(s)
		}
		if strings.Contains(s[:end], `"`) {
			return "", "", errors.New("stray quote")
		}
		return s[:end], s[end:], nil
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 == len(s) {
				return "", "", errors.New("unterminated escape")
			}
			i++
			b.WriteByte(s[i])
		case '"':
			return b.String(), s[i+1:], nil
		default:
			b.WriteByte(c)
		}
	}
	return "", "", errors.New("unterminated quoted string")
}
