// Package federationapi serves the server-server API and holds the
// federation machinery the rest of the server builds on:
//
//   - keyring: other servers' signing keys, fetched directly or through
//     notaries, stored and cached; a gomatrixserverlib.JSONVerifier for
//     event signatures and request authentication.
//   - fedclient: outbound requests (server discovery, a vetted TLS
//     transport, X-Matrix signing, gomatrixserverlib's typed client).
//   - fedauth: inbound X-Matrix authentication for handlers, and server
//     ACL checks.
//   - sender: the outbound per-destination queues.
//   - membership: joins, leaves, knocks and invites across servers.
//
// This package serves the signing keys (/_matrix/key/v2/server, with old
// keys once the key changes), the notary endpoints (/_matrix/key/v2/query),
// the version, and OpenID userinfo, which lets a widget or Element Call's
// token service learn who holds an OpenID token. Room membership across
// servers is served by membership. Once rooms are attached (AttachRooms) it
// serves inbound transactions (send.go) and room history (history.go), and
// fetches missing events and history from other servers for the roomserver
// (fetcher.go).
package federationapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/sirupsen/logrus"

	"matrixhs/config"
	"matrixhs/federationapi/fedauth"
	"matrixhs/federationapi/fedclient"
	"matrixhs/federationapi/keyring"
	"matrixhs/internal/accounts"
	"matrixhs/internal/auth"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// DefaultKeyValidity is how long other servers may use our published key
// before asking again, when Options.KeyValidity is not set.
const DefaultKeyValidity = 7 * 24 * time.Hour

// Options configure federation. The zero value (with ServerName and
// SigningKey, which the server fills in) serves federation on the client
// port, reaches other servers through the system's DNS, roots and
// HTTPS_PROXY, and refuses private addresses.
type Options struct {
	ServerName spec.ServerName
	SigningKey *config.SigningKey
	// Disabled turns federation off (MATRIX_FEDERATION=disabled): no
	// request leaves for another server and there is no federation
	// listener. The key, version and OpenID endpoints stay; endpoints
	// built on this API should check Options().Disabled and stay away.
	Disabled bool
	// KeyValidity is the validity (valid_until_ts) of the key we publish.
	KeyValidity time.Duration
	// Notaries are asked for other servers' keys before the servers
	// themselves.
	Notaries []keyring.Notary
	// KeyRefetchInterval is how soon a server's keys may be fetched again
	// (keyring.DefaultRefetchInterval).
	KeyRefetchInterval time.Duration
	// Client tunes outbound federation: trusted roots, private addresses,
	// proxy, DNS, timeouts. Its identity fields are filled in.
	Client fedclient.Options

	// Listen, when set, is the address of an extra TLS listener serving
	// the federation routes (e.g. ":8448"), with Certificate (the chain,
	// leaf first, and its key; see LoadCertificate).
	Listen      string
	Certificate *tls.Certificate

	// EDU tunes typing, receipts and presence across servers
	// (AttachEphemeral).
	EDU EDUOptions
	// InboundRate limits the requests each other server may make: a
	// token bucket per origin (zero: the config's default, generous: it
	// only stops a flood); past it they are answered 429
	// M_LIMIT_EXCEEDED with retry_after_ms.
	InboundRate config.RateLimit

	// ExtraRoutes registers more federation endpoints wherever Register
	// registers these (the client port and the federation listener):
	// endpoints built elsewhere on this API, or tests' (which may stand in
	// for the room endpoints: they are registered first).
	ExtraRoutes func(rt *httputil.Router, api *API)

	Log logrus.FieldLogger
	Now func() time.Time
}

// API is the federation API and machinery.
type API struct {
	// Client makes signed requests to other servers.
	Client *fedclient.Client
	// KeyRing checks other servers' signatures.
	KeyRing *keyring.KeyRing
	// Auth authenticates requests from other servers.
	Auth *fedauth.Authenticator
	// Own are this server's signing keys, current and past.
	Own *keyring.OwnKeys

	accounts    *accounts.Service
	db          *storage.DB
	serverName  spec.ServerName
	keyValidity time.Duration
	opts        Options
	now         func() time.Time

	// rooms serves room federation once attached (rooms.go).
	rooms *roomFederation
	// edus are the handlers of inbound EDUs by type (edus.go).
	edus eduHandlers
}

// New records the server's signing key (a changed key turns the previous
// one into an old key) and builds the federation machinery.
func New(ctx context.Context, db *storage.DB, acc *accounts.Service, opts Options) (*API, error) {
	if opts.SigningKey == nil || opts.ServerName == "" {
		return nil, errors.New("federation needs the server name and signing key")
	}
	if opts.KeyValidity <= 0 {
		opts.KeyValidity = DefaultKeyValidity
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = logrus.StandardLogger()
	}
	keyID := gomatrixserverlib.KeyID(opts.SigningKey.ID)
	own, err := keyring.LoadOwnKeys(ctx, db, opts.ServerName, keyID, opts.SigningKey.PrivateKey, opts.Now())
	if err != nil {
		return nil, fmt.Errorf("recording the signing key: %w", err)
	}
	if opts.Disabled {
		opts.Listen = ""
	}
	copts := opts.Client
	copts.Disabled = copts.Disabled || opts.Disabled
	copts.ServerName, copts.KeyID, copts.PrivateKey = opts.ServerName, keyID, opts.SigningKey.PrivateKey
	if copts.Now == nil {
		copts.Now = opts.Now
	}
	client, err := fedclient.New(copts)
	if err != nil {
		return nil, err
	}
	ring := keyring.New(keyring.Options{
		Own: own, DB: db, Client: client, Notaries: opts.Notaries,
		RefetchInterval: opts.KeyRefetchInterval, Log: opts.Log, Now: opts.Now,
	})
	if opts.InboundRate.PerSecond <= 0 || opts.InboundRate.BurstCount < 1 {
		opts.InboundRate = config.DefaultFederation().InboundRateLimit
	}
	authn := fedauth.New(opts.ServerName, ring, opts.Now)
	authn.LimitOrigins(opts.InboundRate.PerSecond, opts.InboundRate.BurstCount)
	return &API{
		Client:      client,
		KeyRing:     ring,
		Auth:        authn,
		Own:         own,
		accounts:    acc,
		db:          db,
		serverName:  opts.ServerName,
		keyValidity: opts.KeyValidity,
		opts:        opts,
		now:         opts.Now,
	}, nil
}

// Register adds the federation endpoints to a route table (the server's
// one table, and the federation listener's).
func (f *API) Register(rt *httputil.Router) {
	get := http.MethodGet
	rt.Exact(get, "/_matrix/federation/v1/openid/userinfo", auth.Public(f.openIDUserInfo))
	rt.Exact(get, "/_matrix/federation/v1/version", auth.Public(f.version))
	rt.Exact(get, "/_matrix/key/v2/server", auth.Public(f.serverKeys))
	rt.Exact(get, "/_matrix/key/v2/server/{keyId}", auth.Public(f.serverKeys))
	rt.Exact(http.MethodPost, "/_matrix/key/v2/query", auth.Public(f.queryKeysBatch))
	rt.Exact(get, "/_matrix/key/v2/query/{serverName}", auth.Public(f.queryKeys))
	rt.Exact(get, "/_matrix/key/v2/query/{serverName}/{keyId}", auth.Public(f.queryKeys))
	if !f.opts.Disabled {
		rt.Exact(get, "/_matrix/federation/v1/query/profile", f.Auth.Handler(f.queryProfile))
	}
	if f.opts.ExtraRoutes != nil {
		f.opts.ExtraRoutes(rt, f)
	}
	// After the extra routes, so that a test's stand-in for a room
	// endpoint (another server's /send) is the one served.
	if f.rooms != nil {
		f.roomRoutes(rt)
	}
}

// Handler is a handler serving only the federation routes (those of
// Register and of extra), for the federation listener.
func (f *API) Handler(log logrus.FieldLogger, maxBody int64, extra ...func(*httputil.Router)) http.Handler {
	rt := httputil.NewRouter()
	f.Register(rt)
	for _, reg := range extra {
		reg(rt)
	}
	return httputil.Outer(rt, log, maxBody)
}

// version serves GET /_matrix/federation/v1/version.
func (f *API) version(*http.Request) (any, error) {
	return map[string]any{"server": map[string]string{"name": "matrixhs", "version": "0.1"}}, nil
}

// openIDUserInfo serves GET /_matrix/federation/v1/openid/userinfo.
func (f *API) openIDUserInfo(r *http.Request) (any, error) {
	token := r.URL.Query().Get("access_token")
	if token == "" {
		return nil, httputil.MissingToken("Missing access_token")
	}
	userID, err := f.accounts.OpenIDUser(r.Context(), token)
	if err != nil {
		return nil, err
	}
	return map[string]any{"sub": userID}, nil
}

// Options are the options the API was built with (defaults filled in).
func (f *API) Options() Options { return f.opts }
