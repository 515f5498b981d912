// Package clientapi serves the Matrix client-server API: one route table
// (routes.go) and thin handlers named after the spec endpoints.
package clientapi

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/sirupsen/logrus"

	"matrixhs/appservice"
	"matrixhs/clientapi/admin"
	"matrixhs/clientapi/internal/roomview"
	"matrixhs/clientapi/internal/users"
	"matrixhs/clientapi/syncapi"
	"matrixhs/config"
	"matrixhs/internal/accounts"
	"matrixhs/internal/auth"
	"matrixhs/internal/e2ee"
	"matrixhs/internal/ephemeral"
	"matrixhs/internal/httputil"
	"matrixhs/internal/notifier"
	"matrixhs/internal/ratelimit"
	"matrixhs/internal/roomdir"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

// API holds what the client-API handlers need.
type API struct {
	cfg      *config.Config
	db       *storage.DB
	accounts *accounts.Service
	rooms    *roomserver.Roomserver
	eph      *ephemeral.Service
	keys     *e2ee.Service
	// view reads rooms as their users may see them.
	view *roomview.Reader
	// users changes and reads local users beyond accounts.
	users *users.Service
	// admin serves the Synapse-compatible admin API.
	admin *admin.API
	// sync serves /sync and sliding sync.
	sync *syncapi.API
	// stopping is closed when the server shuts down (delayed.go stops).
	stopping chan struct{}
	stopOnce sync.Once
	uia      *uiaSessions
	logins   *loginLimiter
	// registrations limits new sign-up sessions per client address.
	registrations *ratelimit.Limiter
	// authn authenticates requests (the server's one middleware).
	authn *auth.Auth
	// appsvc holds the registered application services.
	appsvc *appservice.Service
	log    logrus.FieldLogger
	// profiles reads other servers' users' profiles (nil: no federation).
	profiles RemoteProfiles
	// directory asks other servers for their room lists and spaces (nil:
	// no federation).
	directory RemoteDirectory
	// delayedWake nudges the delayed-event sender (delayed.go) after a change;
	// delayedDone is closed when it has stopped (nil: never started).
	delayedWake chan struct{}
	delayedDone chan struct{}
}

// Deps are the services the client API serves: built by the server, which
// shares them with the other APIs.
type Deps struct {
	Config    *config.Config
	DB        *storage.DB
	Accounts  *accounts.Service
	Auth      *auth.Auth
	Rooms     *roomserver.Roomserver
	Ephemeral *ephemeral.Service
	Keys      *e2ee.Service
	Notifier  *notifier.Notifier
	// Profiles asks other servers for their users' profiles (nil without
	// federation: those profiles are not found).
	Profiles RemoteProfiles
	// Directory asks other servers for their public room lists and space
	// hierarchies (nil without federation).
	Directory RemoteDirectory
	Log       logrus.FieldLogger
	// FederationSender retries federation destinations for the admin API
	// (nil when federation is disabled).
	FederationSender admin.DestinationWaker
	// AppServices are the registered application services (nil: none).
	AppServices *appservice.Service
}

// RemoteProfiles asks a user's server for the user's profile (field "" for
// display name and avatar): federationapi's QueryProfile.
type RemoteProfiles interface {
	QueryProfile(ctx context.Context, userID, field string) (map[string]string, error)
}

// RemoteDirectory asks other servers for their public room list and for
// the hierarchy of rooms this server is not in: federationapi's.
type RemoteDirectory interface {
	PublicRooms(ctx context.Context, server spec.ServerName, body roomdir.Body) (*roomdir.RemotePublicRooms, error)
	Hierarchy(ctx context.Context, roomID string, servers []string, suggestedOnly bool) (*roomdir.FederationHierarchy, error)
}

// New builds the client API.
func New(d Deps) *API {
	cfg, db, acc, authn, rooms, log := d.Config, d.DB, d.Accounts, d.Auth, d.Rooms, d.Log
	a := &API{cfg: cfg, db: db, accounts: acc, authn: authn, rooms: rooms, eph: d.Ephemeral, keys: d.Keys,
		stopping: make(chan struct{}),
		uia:      newUIASessions(time.Now), logins: newLoginLimiter(time.Now),
		registrations: ratelimit.New(ratelimit.Options{
			Burst: cfg.Registration.RCRegistration.BurstCount, Interval: cfg.Registration.RCRegistration.Interval(), MaxKeys: maxRegistrationAddresses,
		}),
		log:         log,
		profiles:    d.Profiles,
		directory:   d.Directory,
		appsvc:      d.AppServices,
		delayedWake: make(chan struct{}, 1)}
	a.view = roomview.New(db, rooms, log)
	a.users = users.New(db, acc, rooms, log)
	a.admin = admin.New(cfg, db, acc, authn, rooms, a.users, log)
	if d.FederationSender != nil {
		a.admin.SetFederationSender(d.FederationSender)
	}
	a.sync = syncapi.New(syncapi.Deps{DB: db, Rooms: rooms, View: a.view, Users: a.users, Ephemeral: a.eph, Keys: a.keys,
		Notifier: d.Notifier, Auth: authn, Log: log})
	return a
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
	a.sync.Stop()
	if a.delayedDone != nil {
		<-a.delayedDone
	}
}

// Register adds the client API's endpoints to the server's route table.
func (a *API) Register(rt *httputil.Router) { a.register(rt) }

// Routes lists the client API's route table (for tests and tools; no
// handler is called).
func Routes() []httputil.Route {
	rt := httputil.NewRouter()
	(&API{admin: &admin.API{}, sync: &syncapi.API{}}).register(rt)
	return rt.Routes()
}

// authed is an endpoint that needs a valid access token.
type authed = auth.Endpoint

// auth serves an endpoint to authenticated users (internal/auth).
func (a *API) auth(h authed) http.Handler { return a.authn.JSON(h) }

// optionalAuth authenticates the request when it carries an access token
// and otherwise calls h with a nil session.
func (a *API) optionalAuth(h authed) http.Handler { return a.authn.OptionalJSON(h) }

// pathVar returns a decoded path variable.
func pathVar(r *http.Request, name string) string { return httputil.PathVar(r, name) }

func clientIP(r *http.Request) string { return httputil.ClientIP(r) }

// requireSelf refuses acting on another user's data.
func requireSelf(s *accounts.Session, userID string) error {
	if s.UserID != userID {
		return httputil.Forbidden("cannot act on behalf of another user")
	}
	return nil
}
