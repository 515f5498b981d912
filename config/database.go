package config

import (
	"fmt"
	"net/url"
	"strings"
)

// Database engines.
const (
	EngineSQLite   = "sqlite"
	EnginePostgres = "postgres"
)

// EnvDatabaseURL selects PostgreSQL: a postgres:// URL here wins over the
// file's database section.
const EnvDatabaseURL = "MATRIX_DATABASE_URL"

// DefaultDatabaseMaxConnections is PostgreSQL's pool size unless set
// (Synapse's cp_max).
const DefaultDatabaseMaxConnections = 10

// DatabaseConfig is the "database" section: one SQLite file (the default)
// or a PostgreSQL database.
type DatabaseConfig struct {
	// Engine is sqlite or postgres.
	Engine string `yaml:"engine,omitempty"`
	// Path is SQLite's file.
	Path string `yaml:"path,omitempty"`
	// URL is PostgreSQL's connection URL,
	// postgres://user:password@host:5432/database?sslmode=...
	URL string `yaml:"url,omitempty"`
	// MaxConnections bounds PostgreSQL's connection pool.
	MaxConnections int `yaml:"max_connections,omitempty"`
}

// Postgres reports whether the database is PostgreSQL.
func (d DatabaseConfig) Postgres() bool { return d.Engine == EnginePostgres }

// IsPostgresURL reports whether s is a PostgreSQL connection URL.
func IsPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// RedactedURL is URL without its password, for logs and messages.
func (d DatabaseConfig) RedactedURL() string { return RedactURL(d.URL) }

// RedactURL hides the password of a connection URL.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// applyEnv reads MATRIX_DATABASE_URL: a postgres:// URL selects
// PostgreSQL; anything else is a mistake worth stopping for.
func (d *DatabaseConfig) applyEnv(getenv Getenv) error {
	v := strings.TrimSpace(getenv(EnvDatabaseURL))
	if v == "" {
		return nil
	}
	if !IsPostgresURL(v) {
		return fmt.Errorf("%s must be a postgres:// URL (SQLite is configured with database.path)", EnvDatabaseURL)
	}
	d.Engine, d.URL = EnginePostgres, v
	return nil
}

func (d *DatabaseConfig) validate(bad func(string, ...any)) {
	switch d.Engine {
	case EngineSQLite:
		if d.URL != "" {
			bad("database.url is set but database.engine is sqlite (set engine: postgres to use it)")
		}
	case EnginePostgres:
		if d.URL == "" {
			bad("database.engine postgres needs database.url (postgres://user:password@host:5432/database) or %s", EnvDatabaseURL)
			break
		}
		u, err := url.Parse(d.URL)
		// The host may instead be a Unix socket directory, given as the
		// host parameter (postgres://user@/database?host=/var/run/postgresql).
		if err != nil || !IsPostgresURL(d.URL) || (u.Host == "" && u.Query().Get("host") == "") || strings.Trim(u.Path, "/") == "" {
			bad("database.url %s must be postgres://user:password@host:port/database (or postgres://user@/database?host=/socket/dir)", RedactURL(d.URL))
		}
	default:
		bad("database.engine %q must be sqlite or postgres", d.Engine)
	}
	if d.MaxConnections < 1 {
		bad("database.max_connections %d must be at least 1", d.MaxConnections)
	}
}
