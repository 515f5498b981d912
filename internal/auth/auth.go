// Package auth is the server's one authentication middleware, shared by
// every API that serves users (client, media; appservices next): it
// resolves a request's credentials to a session, records the device's use,
// and hands the session to the endpoint through the request context. The
// endpoint adapters here also map the errors endpoints return to Matrix
// errors (internal/matrixerr), so domain errors meet HTTP in one place.
package auth

import (
	"context"
	"net/http"
	"net/url"
	"sync/atomic"

	"github.com/sirupsen/logrus"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/internal/matrixerr"
)

// Auth authenticates requests against the accounts service.
type Auth struct {
	accounts *accounts.Service
	// audit is told of every request to an admin endpoint (audit.go).
	audit atomic.Pointer[logrus.FieldLogger]
	// appServices resolves appservice tokens (nil: none registered).
	appServices AppServices
}

// AppServices resolves an appservice's as_token to the session of the user
// (and device) it acts as, from the request's query (user_id, device_id);
// ok is false when token is no appservice's. Package appservice is one.
type AppServices interface {
	AuthenticateAppService(ctx context.Context, token string, query url.Values) (s *accounts.Session, ok bool, err error)
}

// SetAppServices makes as_tokens valid credentials; call it before serving.
func (a *Auth) SetAppServices(as AppServices) { a.appServices = as }

// New returns the middleware for acc's sessions.
func New(acc *accounts.Service) *Auth { return &Auth{accounts: acc} }

type sessionKey struct{}

// Session is the authenticated session of a request's context (nil: the
// request is anonymous, or did not pass through the middleware).
func Session(ctx context.Context) *accounts.Session {
	s, _ := ctx.Value(sessionKey{}).(*accounts.Session)
	return s
}

// WithSession returns ctx carrying s, as the middleware passes it on.
func WithSession(ctx context.Context, s *accounts.Session) context.Context {
	return context.WithValue(ctx, sessionKey{}, s)
}

// hasCredentials reports whether r carries any credentials at all.
func hasCredentials(r *http.Request) bool {
	return httputil.AccessToken(r) != "" || r.Header.Get("Authorization") != ""
}

// authenticate resolves r's credentials to a session and records the
// device's use. Credentials are a user's access token (Authorization:
// Bearer, or the deprecated access_token parameter), or an appservice's
// as_token, acting as the user (and device) the query names.
func (a *Auth) authenticate(r *http.Request) (*accounts.Session, error) {
	token := httputil.AccessToken(r)
	if token == "" {
		return nil, httputil.MissingToken("Missing access token")
	}
	if a.appServices != nil {
		sess, ok, err := a.appServices.AuthenticateAppService(r.Context(), token, r.URL.Query())
		if ok {
			if err != nil {
				return nil, matrixerr.From(err)
			}
			if sess.DeviceID != "" {
				a.accounts.Touch(r.Context(), sess, httputil.ClientIP(r))
			}
			return sess, nil
		}
	}
	sess, err := a.accounts.Authenticate(r.Context(), token)
	if err != nil {
		return nil, matrixerr.From(err)
	}
	if sess.Locked && !isLogout(r.URL.Path) {
		// Spec (account locking): only logging out is left to the user.
		return nil, (&httputil.Error{Status: http.StatusUnauthorized, Code: "M_USER_LOCKED", Msg: "This account has been locked"}).
			With("soft_logout", true)
	}
	a.accounts.Touch(r.Context(), sess, httputil.ClientIP(r))
	return sess, nil
}

// Require passes authenticated requests to next, with their session in the
// context (Session); anything else is answered 401.
func (a *Auth) Require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, err := a.authenticate(r)
		if err != nil {
			httputil.WriteError(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithSession(r.Context(), sess)))
	})
}

// Optional authenticates requests that carry credentials (bad ones are
// still 401) and passes the others on anonymously (Session is nil).
func (a *Auth) Optional(next http.Handler) http.Handler {
	required := a.Require(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hasCredentials(r) {
			next.ServeHTTP(w, r)
			return
		}
		required.ServeHTTP(w, r)
	})
}

// Admin is Require for server admins; other users are answered 403.
// Every request that reaches this point is written to the audit log.
func (a *Auth) Admin(next http.Handler) http.Handler {
	return a.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := Session(r.Context())
		if s == nil || !s.IsAdmin {
			httputil.WriteError(w, r, httputil.Forbidden("You are not a server admin"))
			a.auditRequest(r, s, http.StatusForbidden)
			return
		}
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		a.auditRequest(r, s, rec.status)
	}))
}

// Endpoint is a JSON endpoint of an authenticated user (s is nil for an
// anonymous request to an Optional endpoint): it returns the body answered
// with 200 (or an httputil.Response), or an error.
type Endpoint func(r *http.Request, s *accounts.Session) (any, error)

func (h Endpoint) handler() http.Handler {
	return httputil.Handler(func(r *http.Request) (any, error) {
		body, err := h(r, Session(r.Context()))
		return body, matrixerr.From(err)
	})
}

// JSON serves h to authenticated users.
func (a *Auth) JSON(h Endpoint) http.Handler { return a.Require(h.handler()) }

// OptionalJSON serves h to anyone; users who send credentials are
// authenticated (see Optional).
func (a *Auth) OptionalJSON(h Endpoint) http.Handler { return a.Optional(h.handler()) }

// AdminJSON serves h to server admins.
func (a *Auth) AdminJSON(h Endpoint) http.Handler { return a.Admin(h.handler()) }

// Public serves a JSON endpoint that needs no credentials at all.
func Public(h func(r *http.Request) (any, error)) http.Handler {
	return httputil.Handler(func(r *http.Request) (any, error) {
		body, err := h(r)
		return body, matrixerr.From(err)
	})
}
