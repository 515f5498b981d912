// Package clientapi serves the Matrix client-server API: one route table
// (routes.go) and thin handlers named after the spec endpoints.
package clientapi

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/sirupsen/logrus"

	"matrixhs/config"
	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/internal/notifier"
	"matrixhs/internal/ratelimit"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

// API holds what the client-API handlers need.
type API struct {
	cfg      *config.Config
	db       *storage.DB
	accounts *accounts.Service
	rooms    *roomserver.Roomserver
	eph      *ephemeral
	// notify wakes long-polls for changes that concern their user.
	notify *notifier.Notifier
	// stopping is closed when the server shuts down, to end long-polls.
	stopping chan struct{}
	stopOnce sync.Once
	uia      *uiaSessions
	nonces   *nonceStore
	ss       *ssConns // sliding-sync connections
	logins   *loginLimiter
	// registrations limits new sign-up sessions per client address.
	registrations *ratelimit.Limiter
	// trusted are the proxies whose forwarding headers are believed.
	trusted *httputil.TrustedProxies
	log     logrus.FieldLogger
	// delayedWake nudges the delayed-event sender (delayed.go) after a change;
	// delayedDone is closed when it has stopped (nil: never started).
	delayedWake chan struct{}
	delayedDone chan struct{}
}

// New builds the client API.
func New(cfg *config.Config, db *storage.DB, acc *accounts.Service, rooms *roomserver.Roomserver, notify *notifier.Notifier, log logrus.FieldLogger) *API {
	a := &API{cfg: cfg, db: db, accounts: acc, rooms: rooms, notify: notify, stopping: make(chan struct{}),
		uia: newUIASessions(time.Now), nonces: newNonceStore(), ss: newSSConns(), logins: newLoginLimiter(time.Now),
		registrations: ratelimit.New(ratelimit.Options{
			Burst: cfg.Registration.RCRegistration.BurstCount, Interval: cfg.Registration.RCRegistration.Interval(), MaxKeys: maxRegistrationAddresses,
		}),
		trusted: httputil.NewTrustedProxies(cfg.TrustedProxyPrefixes()), log: log,
		delayedWake: make(chan struct{}, 1)}
	a.eph = newEphemeral(notify.Wake, a.presenceRooms)
	return a
}

// presenceRooms are the rooms whose members hear of a user's presence.
func (a *API) presenceRooms(userID string) []int64 {
	rooms, err := a.db.ListeningRooms(context.Background(), userID)
	if err != nil {
		a.log.WithError(err).Warn("listing rooms for a presence change")
	}
	return rooms
}

// Start starts the API's background work: sending delayed events.
func (a *API) Start() {
	a.delayedDone = make(chan struct{})
	go a.runDelayed()
}

// Stop ends waiting long-polls (they answer at once) and the background
// work, waiting for the latter; call it when the server begins to shut down.
func (a *API) Stop() {
	a.stopOnce.Do(func() { close(a.stopping) })
	if a.delayedDone != nil {
		<-a.delayedDone
	}
}

// Handler returns the HTTP handler for every path the server answers. extra
// registers the routes of other APIs (media) in the same table, under their
// own prefixes, before the fallbacks for unknown paths are set.
func (a *API) Handler(extra ...func(*mux.Router)) http.Handler {
	r := mux.NewRouter().SkipClean(true).UseEncodedPath()
	a.register(&router{r})
	for _, reg := range extra {
		reg(r)
	}
	r.NotFoundHandler = httputil.Handler(func(*http.Request) (any, error) {
		return nil, httputil.Unrecognized("Unrecognized request")
	})
	r.MethodNotAllowedHandler = httputil.Handler(func(*http.Request) (any, error) {
		return nil, httputil.MethodNotAllowed("Method not allowed for this endpoint")
	})
	return httputil.WithClientAddress(httputil.Outer(r, a.log, a.cfg.Server.MaxRequestBodyBytes), a.trusted)
}

// Route is one entry of the route table: a method and a path template
// ({name} or {name:regexp} for path variables).
type Route struct{ Method, Path string }

// Routes lists the client API's route table (for tests and tools; no
// handler is called).
func Routes() []Route {
	r := mux.NewRouter()
	(&API{}).register(&router{r})
	var out []Route
	_ = r.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		path, err := route.GetPathTemplate()
		if err != nil {
			return nil
		}
		methods, _ := route.GetMethods()
		for _, m := range methods {
			out = append(out, Route{Method: m, Path: path})
		}
		return nil
	})
	return out
}

// router registers endpoints under the prefixes the spec serves them on.
type router struct{ r *mux.Router }

// Client-API prefixes: v3, and r0 for older SDKs that still call it.
var clientPrefixes = []string{"/_matrix/client/v3", "/_matrix/client/r0"}

// client registers an endpoint under /_matrix/client/{v3,r0}.
func (rt *router) client(method, path string, h http.Handler) {
	h = checkPathIDs(path, h)
	for _, p := range clientPrefixes {
		rt.r.Handle(p+path, h).Methods(method)
	}
}

// v1 registers an endpoint that only exists under /_matrix/client/v1.
func (rt *router) v1(method, path string, h http.Handler) {
	h = checkPathIDs(path, h)
	rt.r.Handle("/_matrix/client/v1"+path, h).Methods(method)
}

// exact registers a full path.
func (rt *router) exact(method, path string, h http.Handler) {
	h = checkPathIDs(path, h)
	rt.r.Handle(path, h).Methods(method)
}

// pathVar returns a decoded path variable (routes match on the encoded path
// so IDs may contain '/').
func pathVar(r *http.Request, name string) string {
	v := mux.Vars(r)[name]
	if d, err := url.PathUnescape(v); err == nil {
		return d
	}
	return v
}

type sessionKey struct{}

// authed is an endpoint that needs a valid access token.
type authed func(r *http.Request, s *accounts.Session) (any, error)

// auth wraps an endpoint with access-token authentication.
func (a *API) auth(h authed) httputil.Handler {
	return func(r *http.Request) (any, error) {
		token := accessToken(r)
		if token == "" {
			return nil, httputil.MissingToken("Missing access token")
		}
		sess, err := a.accounts.Authenticate(r.Context(), token)
		if err != nil {
			return nil, err
		}
		a.accounts.Touch(r.Context(), sess, clientIP(r))
		ctx := context.WithValue(r.Context(), sessionKey{}, sess)
		return h(r.WithContext(ctx), sess)
	}
}

// accessToken and clientIP are shared with the media API (httputil).
func accessToken(r *http.Request) string { return httputil.AccessToken(r) }

func clientIP(r *http.Request) string { return httputil.ClientIP(r) }

// requireSelf refuses acting on another user's data.
func requireSelf(s *accounts.Session, userID string) error {
	if s.UserID != userID {
		return httputil.Forbidden("cannot act on behalf of another user")
	}
	return nil
}
