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

	"github.com/sirupsen/logrus"
	"golang.org/x/net/netutil"

	"matrixhs/clientapi"
	"matrixhs/config"
	"matrixhs/federationapi"
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
	Log        *logrus.Logger

	http     *http.Server
	api      *clientapi.API
	active   atomic.Int64 // requests in flight
	listener net.Listener
	logFile  io.Closer
	serveErr chan error
}

// Options tune a server beyond its config.
type Options struct {
	// LogOutput replaces stdout as the console log (tests pass io.Discard).
	LogOutput io.Writer
	// PushGateway tunes push notification delivery (tests shorten backoff).
	PushGateway pushgateway.Options
}

// New opens everything the server needs, without listening yet.
func New(ctx context.Context, cfg *config.Config, opts Options) (*Server, error) {
	s := &Server{Config: cfg, serveErr: make(chan error, 1)}
	if err := s.setupLogging(opts.LogOutput); err != nil {
		return nil, err
	}
	key, err := config.LoadOrCreateSigningKey(cfg.SigningKeyPath)
	if err != nil {
		s.closeLog()
		return nil, err
	}
	s.SigningKey = key
	db, err := storage.Open(ctx, cfg.DatabasePath)
	if err != nil {
		s.closeLog()
		return nil, err
	}
	s.DB = db
	s.Accounts = accounts.New(db, accounts.Options{
		ServerName: cfg.ServerName, BcryptCost: cfg.BcryptCost, RefreshLifetime: cfg.RefreshableAccessTokenLifetime,
	})
	n := cfg.ServerNotices
	s.Rooms = roomserver.New(db, roomserver.Options{
		ServerName: cfg.ServerName, KeyID: key.ID, PrivateKey: key.PrivateKey,
		ServerNoticesUser: cfg.ServerNoticesUserID(),
		ServerNotices: roomserver.NoticesConfig{
			DisplayName: n.SystemMXIDDisplayName, AvatarURL: n.SystemMXIDAvatarURL,
			RoomName: n.RoomName, RoomAvatarURL: n.RoomAvatarURL, RoomTopic: n.RoomTopic,
			AutoJoin: n.AutoJoin, RoomVersion: cfg.DefaultRoomVersion,
		},
	})
	// The notices user's account reserves its name before anyone registers it.
	if err := s.Rooms.EnsureNoticesUser(ctx); err != nil {
		db.Close()
		s.closeLog()
		return nil, err
	}
	s.Auth = auth.New(s.Accounts)
	media, err := mediaapi.New(cfg, db, s.Auth, s.Log, mediaapi.Options{})
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
	s.Notifier = notifier.New()
	db.OnWake(func(t storage.WakeTargets) {
		s.Notifier.Wake(notifier.Targets{Users: t.Users, Rooms: t.Rooms, All: t.All})
	})
	s.Ephemeral = ephemeral.New(db, s.Rooms, s.Notifier.Wake, s.Log)
	s.Keys = e2ee.New(db, e2ee.Options{ServerName: cfg.ServerName, Log: s.Log})
	s.api = clientapi.New(clientapi.Deps{Config: cfg, DB: db, Accounts: s.Accounts, Auth: s.Auth, Rooms: s.Rooms,
		Ephemeral: s.Ephemeral, Keys: s.Keys, Notifier: s.Notifier, Log: s.Log})
	handler := s.routes(federationapi.New(s.Accounts, cfg.ServerName, key))
	s.http = &http.Server{
		Handler:           bodyDeadline(cfg, countRequests(&s.active, handler)),
		ReadHeaderTimeout: cfg.HTTPReadHeaderTimeout,
		IdleTimeout:       cfg.HTTPIdleTimeout,
		ErrorLog:          nil,
	}
	return s, nil
}

// routes builds the one route table every API registers into, and wraps it
// in the middleware all requests pass: the client address (trusted proxies),
// then request ID, access log, panic recovery, CORS and the body limit.
// Authentication is per route (internal/auth).
func (s *Server) routes(fed *federationapi.API) http.Handler {
	rt := httputil.NewRouter()
	s.api.Register(rt)
	s.Media.Register(rt)
	fed.Register(rt)
	outer := httputil.Outer(rt, s.Log, s.Config.MaxRequestBodyBytes)
	return httputil.WithClientAddress(outer, httputil.NewTrustedProxies(s.Config.TrustedProxyPrefixes()))
}

func (s *Server) setupLogging(console io.Writer) error {
	log := logrus.New()
	level, err := logrus.ParseLevel(s.Config.LogLevel)
	if err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	log.SetLevel(level)
	log.SetFormatter(&logrus.JSONFormatter{TimestampFormat: time.RFC3339Nano})
	if console == nil {
		console = os.Stdout
	}
	file, err := newRotatingFile(s.Config.LogDir, "homeserver.log", int64(s.Config.LogMaxSizeMB)<<20, s.Config.LogMaxFiles)
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
		addr = s.Config.Listen
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	// Connections past the limit wait in the kernel's backlog until one
	// closes; the timeouts keep idle and slow ones from holding slots.
	s.listener = netutil.LimitListener(ln, s.Config.HTTPMaxConnections)
	s.Pushers.Start()
	s.api.Start()
	s.Log.WithFields(logrus.Fields{"addr": ln.Addr().String(), "server_name": s.Config.ServerName}).Info("homeserver listening")
	go func() {
		err := s.http.Serve(s.listener)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.serveErr <- err
	}()
	return nil
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
		sctx, cancel := context.WithTimeout(ctx, s.Config.ShutdownTimeout)
		defer cancel()
		if err := s.http.Shutdown(sctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
			s.http.Close()
		}
	}
	// Background thumbnail work and push delivery write to the database:
	// finish them first.
	s.Media.Close()
	s.Pushers.Stop()
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
