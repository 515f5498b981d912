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
	"crypto/sha256"
	"encoding/binary"
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
	admin := adminURL(t)
	name := uniqueName()
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
	return dropAtEnd(t, admin, name)
}

// MigratedURL is like URL, but the database already holds the schema: it
// is a copy of a template database that migrate built once per cluster and
// key (key names the schema, e.g. a digest of the migrations, so that a
// changed schema gets a template of its own). Copying a template is much
// cheaper than running every migration for every test. migrate must close
// its connections to the database before it returns.
func MigratedURL(t testing.TB, key string, migrate func(ctx context.Context, url string) error) string {
	t.Helper()
	admin := adminURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("connecting to %s (%s): %v", URLEnv, admin, err)
	}
	defer conn.Close(ctx)
	template, err := ensureTemplate(ctx, conn, admin, key, migrate)
	if err != nil {
		t.Fatalf("building the template database: %v", err)
	}
	name := uniqueName()
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+name+` TEMPLATE `+template); err != nil {
		t.Fatalf("creating test database %s from %s: %v", name, template, err)
	}
	return dropAtEnd(t, admin, name)
}

// ensureTemplate returns the name of key's template database, building it
// first if there is none. Test processes run in parallel: an advisory lock
// makes one build it while the others wait, and a template appears under
// its name only once complete (built under another name, then renamed).
func ensureTemplate(ctx context.Context, conn *pgx.Conn, admin, key string, migrate func(ctx context.Context, url string) error) (string, error) {
	sum := sha256.Sum256([]byte(key))
	template := "matrixhs_template_" + hex.EncodeToString(sum[:8])
	lock := int64(binary.BigEndian.Uint64(sum[8:16]))
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, lock); err != nil {
		return "", fmt.Errorf("locking: %w", err)
	}
	defer conn.Exec(context.Background(), `SELECT pg_advisory_unlock($1)`, lock)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, template).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return template, nil
	}
	building := template + "_building"
	// Left by a process that died while building: start again.
	if _, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS `+building+` WITH (FORCE)`); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+building); err != nil {
		return "", err
	}
	url, err := withDatabase(admin, building)
	if err == nil {
		err = migrate(ctx, url)
	}
	if err == nil {
		_, err = conn.Exec(ctx, `ALTER DATABASE `+building+` RENAME TO `+template)
	}
	if err != nil {
		conn.Exec(context.Background(), `DROP DATABASE IF EXISTS `+building+` WITH (FORCE)`)
		return "", err
	}
	return template, nil
}

// uniqueName is a new test database's name.
func uniqueName() string {
	var b [6]byte
	rand.Read(b[:])
	return "matrixhs_test_" + hex.EncodeToString(b[:])
}

// dropAtEnd drops database name when the test ends and returns its URL.
func dropAtEnd(t testing.TB, admin, name string) string {
	t.Helper()
	t.Cleanup(func() { drop(t, admin, name) })
	u, err := withDatabase(admin, name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// adminURL is MATRIX_TEST_POSTGRES_URL; the test is skipped without it,
// unless MATRIX_TEST_STORAGE=postgres asked for PostgreSQL (then it fails).
func adminURL(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(URLEnv)
	if admin == "" {
		if Wanted() {
			t.Fatalf("%s=postgres needs %s (a PostgreSQL cluster's URL)", StorageEnv, URLEnv)
		}
		t.Skipf("no PostgreSQL to test on: set %s to a cluster's URL (e.g. postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable)", URLEnv)
	}
	return admin
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
