// Package dbtest opens the database of a test that needs one, on the engine
// the tests run on: SQLite, or PostgreSQL when MATRIX_TEST_STORAGE=postgres
// (see internal/pgtest).
package dbtest

import (
	"context"
	"os"
	"testing"

	"matrixhs/internal/pgtest"
	"matrixhs/storage"
)

// Open opens the test database at path: the SQLite file, or on PostgreSQL
// a fresh database whose URL is kept beside path, so that opening the same
// path again (a restart) reopens the same database.
func Open(t testing.TB, ctx context.Context, path string) (*storage.DB, error) {
	t.Helper()
	if !pgtest.Wanted() {
		return storage.Open(ctx, path)
	}
	memo := path + ".postgres-url"
	url, err := os.ReadFile(memo)
	if err != nil {
		url = []byte(PostgresURL(t))
		if err := os.WriteFile(memo, url, 0o600); err != nil {
			return nil, err
		}
	}
	return storage.OpenPostgres(ctx, string(url), 0)
}

// PostgresURL is a fresh PostgreSQL database that already holds the schema
// (a copy of a template migrated once per cluster, see pgtest.MigratedURL).
func PostgresURL(t testing.TB) string {
	t.Helper()
	digest, err := storage.SchemaDigest()
	if err != nil {
		t.Fatal(err)
	}
	return pgtest.MigratedURL(t, "schema "+digest, func(ctx context.Context, url string) error {
		db, err := storage.OpenPostgres(ctx, url, 2)
		if err != nil {
			return err
		}
		return db.Close()
	})
}
