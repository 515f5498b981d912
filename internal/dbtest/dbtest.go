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
		url = []byte(pgtest.URL(t))
		if err := os.WriteFile(memo, url, 0o600); err != nil {
			return nil, err
		}
	}
	return storage.OpenPostgres(ctx, string(url), 0)
}
