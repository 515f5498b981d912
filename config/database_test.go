package config

import (
	"strings"
	"testing"
)

func TestDatabaseEngineFromFile(t *testing.T) {
	cfg, err := loadYAML(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Database.Engine != EngineSQLite || cfg.Database.Postgres() || cfg.Database.MaxConnections != DefaultDatabaseMaxConnections {
		t.Errorf("default database = %+v, want sqlite with a pool of %d", cfg.Database, DefaultDatabaseMaxConnections)
	}
	cfg, err = loadYAML(t, "database: {engine: postgres, url: 'postgres://u:p@db:5432/matrix?sslmode=disable', max_connections: 25}\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Database.Postgres() || cfg.Database.URL != "postgres://u:p@db:5432/matrix?sslmode=disable" || cfg.Database.MaxConnections != 25 {
		t.Errorf("postgres database = %+v", cfg.Database)
	}
	if got := cfg.Database.RedactedURL(); strings.Contains(got, ":p@") {
		t.Errorf("redacted URL %q shows the password", got)
	}
	// A server on the same machine, through its Unix socket.
	socket := "postgres://matrix@/matrix?host=/var/run/postgresql"
	cfg, err = loadYAML(t, "database: {engine: postgres, url: '"+socket+"'}\n", nil)
	if err != nil || cfg.Database.URL != socket {
		t.Errorf("socket URL: %+v %v", cfg.Database, err)
	}
}

// TestDatabaseURLFromEnvironment: a postgres:// MATRIX_DATABASE_URL selects
// PostgreSQL over the file's SQLite; anything else is refused.
func TestDatabaseURLFromEnvironment(t *testing.T) {
	url := "postgresql://matrix:secret@127.0.0.1:5432/hs"
	cfg, err := loadYAML(t, "database: {engine: sqlite}\n", map[string]string{EnvDatabaseURL: url})
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Database.Postgres() || cfg.Database.URL != url {
		t.Errorf("database = %+v, want postgres at %s", cfg.Database, url)
	}
	_, err = loadYAML(t, "", map[string]string{EnvDatabaseURL: "/data/homeserver.db"})
	if err == nil || !strings.Contains(err.Error(), EnvDatabaseURL) {
		t.Errorf("a non-postgres %s: err = %v, want it named", EnvDatabaseURL, err)
	}
}

func TestDatabaseValidation(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"database: {engine: mysql}\n", "database.engine"},
		{"database: {engine: postgres}\n", "database.url"},
		{"database: {engine: postgres, url: 'mysql://x/y'}\n", "database.url"},
		{"database: {engine: postgres, url: 'postgres://u:hunter2@host:5432'}\n", "database.url"},
		{"database: {engine: postgres, url: 'postgres://u:hunter2@/db'}\n", "database.url"},
		{"database: {url: 'postgres://u@host/db'}\n", "engine is sqlite"},
		{"database: {engine: postgres, url: 'postgres://u@host/db', max_connections: -1}\n", "database.max_connections"},
	} {
		_, err := loadYAML(t, tc.yaml, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want mention of %q", tc.yaml, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%q: error shows the password: %v", tc.yaml, err)
		}
	}
}
