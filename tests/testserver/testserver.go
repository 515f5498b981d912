// Package testserver starts real homeservers in-process on loopback ports
// with temporary data dirs, for end-to-end tests.
package testserver

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	adminapi "matrixhs/clientapi/admin"
	"matrixhs/cmd/homeserver/server"
	"matrixhs/config"
	"matrixhs/internal/dbtest"
	"matrixhs/internal/pgtest"
)

// Server is a running test homeserver.
type Server struct {
	*server.Server
	DataDir string
	Env     map[string]string
	t       testing.TB
	stopped bool
}

// Start starts a server on 127.0.0.1 with a fresh data dir. env holds
// MATRIX_* overrides (registration defaults to open, bcrypt to its minimum
// cost so tests stay fast).
func Start(t testing.TB, env map[string]string) *Server {
	t.Helper()
	return StartIn(t, t.TempDir(), env)
}

// StartIn starts a server on an existing data dir (for restart tests).
func StartIn(t testing.TB, dataDir string, env map[string]string) *Server {
	t.Helper()
	return StartInWith(t, dataDir, env, server.Options{})
}

// StartWith is Start with server options (e.g. a shorter push retry
// backoff); a nil LogOutput logs as Start does.
func StartWith(t testing.TB, env map[string]string, opts server.Options) *Server {
	t.Helper()
	return StartInWith(t, t.TempDir(), env, opts)
}

// StartInWith is StartIn with server options.
func StartInWith(t testing.TB, dataDir string, env map[string]string, opts server.Options) *Server {
	t.Helper()
	return start(t, dataDir, env, opts, true)
}

// StartSQLite starts a server on SQLite whatever engine the tests run on
// (to migrate it to PostgreSQL, say).
func StartSQLite(t testing.TB, env map[string]string) *Server {
	t.Helper()
	return start(t, t.TempDir(), env, server.Options{}, false)
}

// start starts a server; engineFromEnv lets MATRIX_TEST_STORAGE choose its
// database.
func start(t testing.TB, dataDir string, env map[string]string, opts server.Options, engineFromEnv bool) *Server {
	t.Helper()
	full := map[string]string{
		config.EnvDataDir:      dataDir,
		config.EnvListen:       "127.0.0.1:0",
		config.EnvRegistration: config.RegistrationOpen,
		config.EnvServerName:   "hs.test",
	}
	for k, v := range env {
		full[k] = v
	}
	if engineFromEnv {
		postgresDatabase(t, dataDir, full)
	}
	cfg, _, err := config.Load(func(k string) string { return full[k] })
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	cfg.Registration.BcryptCost = 4
	if opts.LogOutput == nil {
		opts.LogOutput = io.Discard
		if os.Getenv("TEST_SERVER_LOGS") != "" {
			opts.LogOutput = os.Stderr
		}
	}
	srv, err := server.New(context.Background(), cfg, opts)
	if err != nil {
		t.Fatalf("starting server: %v", err)
	}
	if err := srv.Listen(""); err != nil {
		t.Fatalf("listen: %v", err)
	}
	s := &Server{Server: srv, DataDir: dataDir, Env: full, t: t}
	t.Cleanup(s.Stop)
	return s
}

// postgresDatabase gives a server its own fresh PostgreSQL database when
// the tests run on PostgreSQL (MATRIX_TEST_STORAGE=postgres). The URL is
// kept in the data dir, so a server restarted on it reopens the same
// database, as one on SQLite reopens its file.
func postgresDatabase(t testing.TB, dataDir string, env map[string]string) {
	t.Helper()
	if !pgtest.Wanted() || env[config.EnvDatabaseURL] != "" {
		return
	}
	file := filepath.Join(dataDir, "test-database-url")
	if raw, err := os.ReadFile(file); err == nil {
		env[config.EnvDatabaseURL] = string(raw)
		return
	}
	url := dbtest.PostgresURL(t)
	if err := os.WriteFile(file, []byte(url), 0o600); err != nil {
		t.Fatalf("keeping the database URL: %v", err)
	}
	env[config.EnvDatabaseURL] = url
}

// Stop shuts the server down gracefully (idempotent).
func (s *Server) Stop() {
	if s.stopped {
		return
	}
	s.stopped = true
	if err := s.Shutdown(context.Background()); err != nil {
		s.t.Errorf("shutdown: %v", err)
	}
}

// Restart stops the server and starts a new one on the same data dir.
func (s *Server) Restart() *Server {
	s.Stop()
	return StartIn(s.t, s.DataDir, s.Env)
}

// SharedSecretMAC exposes the admin-registration MAC for tests.
func SharedSecretMAC(secret, nonce, user, password string, admin bool) string {
	return adminapi.SharedSecretMAC(secret, nonce, user, password, admin, "")
}

// UserID is the full ID of a localpart on this server.
func (s *Server) UserID(localpart string) string {
	return "@" + strings.ToLower(localpart) + ":" + s.Config.Server.Name
}
