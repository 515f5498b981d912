// Package server wires the homeserver together: config, logs, signing key,
// storage and the HTTP APIs, with graceful shutdown. The CLI's serve command
// and the end-to-end tests both start servers through it.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/sirupsen/logrus"
	"golang.org/x/net/netutil"

	"matrixhs/appservice"
	"matrixhs/clientapi"
	"matrixhs/config"
	"matrixhs/federationapi"
	"matrixhs/federationapi/e2eefed"
	"matrixhs/federationapi/membership"
	"matrixhs/federationapi/sender"
	"matrixhs/internal/accounts"
	"matrixhs/internal/auth"
	"matrixhs/internal/e2ee"
	"matrixhs/internal/ephemeral"
	"matrixhs/internal/httputil"
	"matrixhs/internal/notifier"
	"matrixhs/internal/pushgateway"
	"matrixhs/mediaapi"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

// Server is a running homeserver.
type Server struct {
	Config   *config.Config
	DB       *storage.DB
	Accounts *accounts.Service
	// Auth is the one authentication middleware every API's routes use.
	Auth    *auth.Auth
	Rooms   *roomserver.Roomserver
	Media   *mediaapi.Media
	Pushers *pushgateway.Sender
	// Notifier wakes long-polls for the changes that concern their user.
	Notifier *notifier.Notifier
	// Ephemeral holds typing and presence and records receipts; Keys is
	// the end-to-end encryption key service. The client API serves them,
	// and the federation API will.
	Ephemeral  *ephemeral.Service
	Keys       *e2ee.Service
	SigningKey *config.SigningKey
	// Sender carries local events and EDUs to other servers (nil when
	// federation is disabled).
	Sender *sender.Sender
	// Federation is the federation machinery: its client, key ring and
	// request authentication.
	Federation *federationapi.API
	// Membership joins, leaves, knocks and invites across servers (nil
	// when federation is disabled).
	Membership *membership.Service
	// EphemeralFederation carries typing, receipts and presence to and
	// from other servers (nil when federation is disabled).
	EphemeralFederation *federationapi.Ephemeral
	// FedKeys carries end-to-end encryption to and from other servers (nil
	// when federation is disabled).
	FedKeys *e2eefed.Service
	// AppServices are the registered application services (bridges, bots)
	// and the sender of their transactions.
	AppServices *appservice.Service
	Log         *logrus.Logger

	http     *http.Server
	api      *clientapi.API
	active   atomic.Int64 // requests in flight
	listener net.Listener
	logFile  io.Closer
	serveErr chan error

	// fedListener serves federation on its own TLS port, when configured.
	fedListener *federationapi.TLSListener
}

// Options tune a server beyond its config.
type Options struct {
	// LogOutput replaces stdout as the console log (tests pass io.Discard).
	LogOutput io.Writer
	// PushGateway tunes push notification delivery (tests shorten backoff).
	PushGateway pushgateway.Options
	// Federation tunes federation (its TLS listener, how other servers are
	// reached, key notaries); the zero value serves it on the client port
	// with defaults. The server name and signing key are filled in.
	Federation federationapi.Options
	// Sender tunes the outbound federation queue (tests shorten backoff).
	Sender sender.Options
	// AppServices tunes appservice delivery (tests shorten backoff); the
	// server name is filled in.
	AppServices appservice.Options
}

// New opens everything the server needs, without listening yet.
func New(ctx context.Context, cfg *config.Config, opts Options) (*Server, error) {
	s := &Server{Config: cfg, serveErr: make(chan error, 1)}
	if err := s.setupLogging(opts.LogOutput); err != nil {
		return nil, err
	}
	for _, n := range cfg.Notices {
		s.Log.WithFields(logrus.Fields{"key": n.Key, "new_key": n.NewKey, "line": n.Line}).Warn(n.String())
	}
	key, err := config.LoadOrCreateSigningKey(cfg.Server.SigningKeyPath)
	if err != nil {
		s.closeLog()
		return nil, err
	}
	s.SigningKey = key
	db, err := OpenDatabase(ctx, cfg.Database)
	if err != nil {
		s.closeLog()
		return nil, err
	}
	s.DB = db
	s.Accounts = accounts.New(db, accounts.Options{
		ServerName: cfg.Server.Name, BcryptCost: cfg.Registration.BcryptCost, RefreshLifetime: cfg.Registration.RefreshableAccessTokenLifetime,
	})
	fedOpts, err := federationOptions(cfg, key, s.Log, opts.Federation)
	if err == nil {
		s.Federation, err = federationapi.New(ctx, db, s.Accounts, fedOpts)
	}
	if err != nil {
		db.Close()
		s.closeLog()
		return nil, err
	}
	n := cfg.ServerNotices
	s.Rooms = roomserver.New(db, roomserver.Options{
		ServerName: cfg.Server.Name, KeyID: key.ID, PrivateKey: key.PrivateKey, Verifier: s.Federation.KeyRing,
		ServerNoticesUser: cfg.ServerNoticesUserID(),
		ServerNotices: roomserver.NoticesConfig{
			DisplayName: n.SystemMXIDDisplayName, AvatarURL: n.SystemMXIDAvatarURL,
			RoomName: n.RoomName, RoomAvatarURL: n.RoomAvatarURL, RoomTopic: n.RoomTopic,
			AutoJoin: n.AutoJoin, RoomVersion: cfg.Rooms.DefaultRoomVersion,
		},
	})
	// Room federation (transactions, history, backfill) goes through the roomserver.
	s.Federation.AttachRooms(s.Rooms)
	// The notices user's account reserves its name before anyone registers it.
	if err := s.Rooms.EnsureNoticesUser(ctx); err != nil {
		db.Close()
		s.closeLog()
		return nil, err
	}
	s.Auth = auth.New(s.Accounts)
	s.Auth.SetAuditLog(s.Log)
	if err := s.setupAppServices(ctx, opts.AppServices); err != nil {
		db.Close()
		s.closeLog()
		return nil, err
	}
	var mediaOpts mediaapi.Options
	if !s.Federation.Options().Disabled {
		mediaOpts.Federation = s.Federation
	}
	media, err := mediaapi.New(cfg, db, s.Auth, s.Log, mediaOpts)
	if err != nil {
		db.Close()
		s.closeLog()
		return nil, err
	}
	s.Media = media
	pushOpts := opts.PushGateway
	if pushOpts.Filter == nil {
		pushOpts.Filter = cfg.OutboundFilter()
	}
	s.Pushers = pushgateway.New(db, s.Log, pushOpts)
	if !s.Federation.Options().Disabled {
		// Every new local event goes to the other servers of its room.
		s.Sender = sender.New(db, cfg.Server.Name, s.Federation.Client, s.Log, opts.Sender)
		s.Federation.Auth.OnAuthenticated(func(origin spec.ServerName) { s.Sender.ResetBackoff(string(origin)) })
		// Joins, leaves, knocks and invites across servers; what this
		// server accepts as a room's resident is forwarded to the others.
		s.Membership = membership.New(s.Federation, s.Rooms, db, membership.Options{Forward: s.Sender.Forward, Log: s.Log})
		s.Rooms.SetRemote(s.Membership)
	}
	s.Notifier = notifier.New()
	db.OnWake(func(t storage.WakeTargets) {
		s.Notifier.Wake(notifier.Targets{Users: t.Users, Rooms: t.Rooms, All: t.All})
	})
	s.Ephemeral = ephemeral.New(db, s.Rooms, s.Notifier.Wake, s.Log)
	s.Ephemeral.SetPresenceEnabled(cfg.Presence.Enabled)
	// Appservices that asked for ephemeral data hear of typing and presence.
	s.AppServices.AttachEphemeral(s.Ephemeral)
	if s.Sender != nil {
		// Typing, receipts and presence go to and come from other servers.
		if s.EphemeralFederation, err = s.Federation.AttachEphemeral(s.Ephemeral, s.Sender); err != nil {
			db.Close()
			s.closeLog()
			return nil, err
		}
	}
	s.Keys = e2ee.New(db, e2ee.Options{ServerName: cfg.Server.Name, Log: s.Log})
	if s.Sender != nil {
		// Keys, device lists and to-device messages across servers.
		s.FedKeys = e2eefed.New(s.Federation, s.Keys, s.Sender)
		s.Keys.SetRemote(s.FedKeys)
	}
	deps := clientapi.Deps{Config: cfg, DB: db, Accounts: s.Accounts, Auth: s.Auth, Rooms: s.Rooms,
		Ephemeral: s.Ephemeral, Keys: s.Keys, Notifier: s.Notifier, Log: s.Log, AppServices: s.AppServices}
	if s.Sender != nil {
		deps.FederationSender = s.Sender
	}
	if !s.Federation.Options().Disabled {
		deps.Profiles = s.Federation
		deps.Directory = s.Federation
	}
	s.api = clientapi.New(deps)
	handler := s.routes()
	s.http = &http.Server{
		Handler:           bodyDeadline(cfg, countRequests(&s.active, handler)),
		ReadHeaderTimeout: cfg.Server.HTTP.ReadHeaderTimeout,
		IdleTimeout:       cfg.Server.HTTP.IdleTimeout,
		ErrorLog:          nil,
	}
	return s, nil
}

// routes builds the one route table every API registers into, and wraps it
// in the middleware all requests pass: the client address (trusted proxies),
// then request ID, access log, panic recovery, CORS and the body limit.
// Authentication is per route (internal/auth).
func (s *Server) routes() http.Handler {
	rt := httputil.NewRouter()
	s.api.Register(rt)
	s.Media.Register(rt)
	s.Media.RegisterFederation(rt)
	s.Federation.Register(rt)
	if s.Membership != nil {
		s.Membership.Register(rt)
	}
	if s.FedKeys != nil {
		s.FedKeys.Register(rt)
	}
	outer := httputil.Outer(rt, s.Log, s.Config.Server.MaxRequestBodyBytes)
	return httputil.WithClientAddress(outer, httputil.NewTrustedProxies(s.Config.TrustedProxyPrefixes()))
}

func (s *Server) setupLogging(console io.Writer) error {
	log := logrus.New()
	level, err := logrus.ParseLevel(s.Config.Logging.Level)
	if err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	log.SetLevel(level)
	log.SetFormatter(&logrus.JSONFormatter{TimestampFormat: time.RFC3339Nano})
	if console == nil {
		console = os.Stdout
	}
	file, err := newRotatingFile(s.Config.Logging.Dir, "homeserver.log", int64(s.Config.Logging.MaxSizeMB)<<20, s.Config.Logging.MaxFiles)
	if err != nil {
		return err
	}
	s.logFile = file
	log.SetOutput(io.MultiWriter(console, file))
	s.Log = log
	return nil
}

func (s *Server) closeLog() {
	if s.logFile != nil {
		s.logFile.Close()
	}
}

// Listen binds the configured address (or addr, when not empty) and starts
// serving in the background. The server is ready when Listen returns.
func (s *Server) Listen(addr string) error {
	if addr == "" {
		addr = s.Config.Server.Listen
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	// Connections past the limit wait in the kernel's backlog until one
	// closes; the timeouts keep idle and slow ones from holding slots.
	s.listener = netutil.LimitListener(ln, s.Config.Server.HTTP.MaxConnections)
	if err := s.listenFederation(); err != nil {
		ln.Close()
		return err
	}
	s.Pushers.Start()
	if s.Sender != nil {
		s.Sender.Start()
	}
	s.Keys.Start()
	s.AppServices.Start()
	s.api.Start()
	s.Log.WithFields(logrus.Fields{"addr": ln.Addr().String(), "server_name": s.Config.Server.Name}).Info("homeserver listening")
	if unreachableName(s.Config.Server.Name) {
		s.Log.WithField("server_name", s.Config.Server.Name).Warn(federationHint)
	}
	go func() {
		err := s.http.Serve(s.listener)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.serveErr <- err
	}()
	return nil
}

// listenFederation starts the federation TLS listener, if one is
// configured.
func (s *Server) listenFederation() error {
	fo := s.Federation.Options()
	if fo.Listen == "" {
		return nil
	}
	hc := s.Config.Server.HTTP
	extra := []func(*httputil.Router){s.Media.RegisterFederation}
	if s.Membership != nil {
		extra = append(extra, s.Membership.Register)
	}
	if s.FedKeys != nil {
		extra = append(extra, s.FedKeys.Register)
	}
	l, err := federationapi.ListenTLS(s.Federation.Handler(s.Log, s.Config.Server.MaxRequestBodyBytes, extra...), federationapi.TLSListenerOptions{
		Addr: fo.Listen, Certificate: fo.Certificate,
		ReadHeaderTimeout: hc.ReadHeaderTimeout, IdleTimeout: hc.IdleTimeout, MaxConnections: hc.MaxConnections,
	})
	if err != nil {
		return err
	}
	s.fedListener = l
	s.Log.WithField("addr", l.Addr().String()).Info("federation listening (TLS)")
	return nil
}

// FederationAddr is the address of the federation TLS listener ("" when
// federation is served on the client port only).
func (s *Server) FederationAddr() string {
	if s.fedListener == nil {
		return ""
	}
	return s.fedListener.Addr().String()
}

// Handler is the server's whole HTTP handler, for in-process tests that
// skip the network (fuzzing).
func (s *Server) Handler() http.Handler { return s.http.Handler }

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.listener.Addr().String() }

// URL is the base URL of the listening server.
func (s *Server) URL() string { return "http://" + s.Addr() }

// Done yields the serve loop's error if it stops on its own.
func (s *Server) Done() <-chan error { return s.serveErr }

// Shutdown stops accepting connections, waits for in-flight requests (up to
// the config's shutdown timeout or ctx), then closes the database and logs.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs []error
	s.api.Stop()
	if s.listener != nil {
		sctx, cancel := context.WithTimeout(ctx, s.Config.Server.ShutdownTimeout)
		defer cancel()
		if s.fedListener != nil {
			if err := s.fedListener.Shutdown(sctx); err != nil {
				errs = append(errs, err)
			}
		}
		if err := s.http.Shutdown(sctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
			s.http.Close()
		}
	}
	// Background thumbnail work and push delivery write to the database:
	// finish them first.
	s.Media.Close()
	s.Pushers.Stop()
	s.AppServices.Stop()
	// Both queue EDUs on the sender: stop them first.
	s.EphemeralFederation.Stop()
	s.Keys.Stop()
	if s.Sender != nil {
		s.Sender.Stop()
	}
	s.Federation.Client.Transport().CloseIdleConnections()
	if err := s.DB.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing database: %w", err))
	}
	s.Log.Info("homeserver stopped")
	s.closeLog()
	return errors.Join(errs...)
}

// countRequests keeps a count of requests in flight.
func countRequests(n *atomic.Int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		defer n.Add(-1)
		next.ServeHTTP(w, r)
	})
}

// activeRequests is the number of requests being served.
func (s *Server) activeRequests() int64 { return s.active.Load() }
