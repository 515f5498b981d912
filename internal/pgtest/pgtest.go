// Package pgtest gives tests fresh PostgreSQL databases. Tests run on
// PostgreSQL when the environment says so:
//
//	MATRIX_TEST_POSTGRES_URL  a PostgreSQL cluster where tests may create
//	                          and drop databases (a superuser's URL, e.g.
//	                          postgres://postgres@127.0.0.1:5432/postgres)
//	MATRIX_TEST_STORAGE       "postgres" runs the storage-backed tests
//	                          (storage, the e2e suites) on PostgreSQL
//	                          instead of SQLite
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Environment variables read by this package.
const (
	URLEnv     = "MATRIX_TEST_POSTGRES_URL"
	StorageEnv = "MATRIX_TEST_STORAGE"
)

// Wanted reports whether tests should run on PostgreSQL
// (MATRIX_TEST_STORAGE=postgres).
func Wanted() bool { return os.Getenv(StorageEnv) == "postgres" }

// URL creates an empty database with a unique name in the cluster at
// MATRIX_TEST_POSTGRES_URL and returns its URL; the database is dropped when
// the test ends. The test is skipped when the variable is unset, unless
// MATRIX_TEST_STORAGE=postgres asked for PostgreSQL (then it fails).
func URL(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(URLEnv)
	if admin == "" {
		if Wanted() {
			t.Fatalf("%s=postgres needs %s (a PostgreSQL cluster's URL)", StorageEnv, URLEnv)
		}
		t.Skipf("no PostgreSQL to test on: set %s to a cluster's URL (e.g. postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable)", URLEnv)
	}
	var b [6]byte
	rand.Read(b[:])
	name := "matrixhs_test_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("connecting to %s (%s): %v", URLEnv, admin, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		t.Fatalf("creating test database %s: %v", name, err)
	}
	t.Cleanup(func() { drop(t, admin, name) })
	u, err := withDatabase(admin, name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// drop removes a test database, ending the connections still open to it.
func drop(t testing.TB, admin, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Errorf("dropping test database %s: %v", name, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
		t.Errorf("dropping test database %s: %v", name, err)
	}
}

// withDatabase is the connection string admin naming database name instead.
func withDatabase(admin, name string) (string, error) {
	if strings.HasPrefix(admin, "postgres://") || strings.HasPrefix(admin, "postgresql://") {
		u, err := url.Parse(admin)
		if err != nil {
			return "", fmt.Errorf("parsing %s: %w", URLEnv, err)
		}
		u.Path = "/" + name
		return u.String(), nil
	}
	return admin + " dbname=" + name, nil // key=value form: the last dbname wins
}
