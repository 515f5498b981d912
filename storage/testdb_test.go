package storage

import (
	"context"
	"path/filepath"
	"testing"

	"matrixhs/internal/pgtest"
)

// testDB says where openTestDB's database lives, to open it again.
type testDB struct {
	path string // SQLite
	url  string // PostgreSQL
}

// onPostgres reports whether the storage tests run on PostgreSQL
// (MATRIX_TEST_STORAGE=postgres, see internal/pgtest).
func onPostgres() bool { return pgtest.Wanted() }

// openTestDB opens a fresh database for a test, closed at its end: SQLite
// in a temporary directory, or a new PostgreSQL database when the tests
// run on PostgreSQL.
func openTestDB(t *testing.T) (*DB, testDB) {
	t.Helper()
	var src testDB
	if onPostgres() {
		src.url = migratedPostgres(t)
	} else {
		src.path = filepath.Join(t.TempDir(), "test.db")
	}
	db, err := src.open(context.Background())
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db, src
}

// open opens the test's database (again).
func (s testDB) open(ctx context.Context) (*DB, error) {
	if s.url != "" {
		return OpenPostgres(ctx, s.url, 0)
	}
	return Open(ctx, s.path)
}

// sqliteOnly skips a test of something only SQLite has.
func sqliteOnly(t *testing.T, why string) {
	t.Helper()
	if onPostgres() {
		t.Skip("SQLite only: " + why)
	}
}

// migratedPostgres is a fresh PostgreSQL database that already holds the
// schema (a copy of a migrated template, see pgtest.MigratedURL).
func migratedPostgres(t *testing.T) string {
	t.Helper()
	digest, err := SchemaDigest()
	if err != nil {
		t.Fatal(err)
	}
	return pgtest.MigratedURL(t, "schema "+digest, func(ctx context.Context, url string) error {
		db, err := OpenPostgres(ctx, url, 2)
		if err != nil {
			return err
		}
		return db.Close()
	})
}
