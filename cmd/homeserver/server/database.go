package server

import (
	"context"
	"fmt"

	"matrixhs/config"
	"matrixhs/storage"
)

// OpenDatabase opens the configured engine's database and brings its
// schema up to date. A PostgreSQL server that cannot be used (unreachable,
// wrong password, no such database, too old) is an error at once, naming
// the cause and the server (never its password), so that a supervisor sees
// the process exit instead of a server retrying in silence.
func OpenDatabase(ctx context.Context, d config.DatabaseConfig) (*storage.DB, error) {
	if !d.Postgres() {
		return storage.Open(ctx, d.Path)
	}
	db, err := storage.OpenPostgres(ctx, d.URL, d.MaxConnections)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL database %s: %w", d.RedactedURL(), err)
	}
	return db, nil
}
