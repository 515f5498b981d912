package main

import (
	"context"
	"crypto/sha256"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"matrixhs/config"
	"matrixhs/internal/pgtest"
	"matrixhs/storage"
)

func TestBackupCommand(t *testing.T) {
	dir := setupEnv(t)
	if code, _, errOut := cli(t, "pw\n", "user", "add", "alice"); code != 0 {
		t.Fatalf("user add: %s", errOut)
	}
	out := filepath.Join(dir, "backup.db")
	if code, stdout, errOut := cli(t, "", "backup", "-o", out); code != 0 || !strings.Contains(stdout, "to restore") {
		t.Fatalf("backup: %d %q %q", code, stdout, errOut)
	}
	db, err := storage.Open(context.Background(), out)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Account(context.Background(), "@alice:cli.test"); err != nil {
		t.Errorf("the backup lacks alice: %v", err)
	}
	if code, _, errOut := cli(t, "", "backup", "-o", out); code != 1 || !strings.Contains(errOut, "exists") {
		t.Errorf("backup over an existing file: %d %q", code, errOut)
	}
	if code, _, errOut := cli(t, "", "backup"); code != 1 || !strings.Contains(errOut, "-o FILE") {
		t.Errorf("backup without -o: %d %q", code, errOut)
	}
	t.Setenv(config.EnvDatabaseURL, "postgres://matrix:secret@127.0.0.1:1/matrix")
	code, _, errOut := cli(t, "", "backup", "-o", filepath.Join(dir, "pg.dump"))
	if code != 1 || !strings.Contains(errOut, "pg_dump") || strings.Contains(errOut, "secret") {
		t.Errorf("backup of PostgreSQL: %d %q, want pg_dump named and no password", code, errOut)
	}
}

// TestMigrateDBCommand: migrate-db copies the SQLite database into an empty
// PostgreSQL database without changing the SQLite file, prints the config
// change, and refuses a database that holds data.
func TestMigrateDBCommand(t *testing.T) {
	target := pgtest.URL(t)
	dir := setupEnv(t)
	if code, _, errOut := cli(t, "pw\n", "user", "add", "-admin", "alice"); code != 0 {
		t.Fatalf("user add: %s", errOut)
	}
	src := filepath.Join(dir, "homeserver.db")
	before := fileSum(t, src)
	code, stdout, errOut := cli(t, "", "migrate-db", "-to", target, "-batch", "1")
	if code != 0 {
		t.Fatalf("migrate-db: %d %s %s", code, stdout, errOut)
	}
	for _, want := range []string{"copying accounts: 1/", "verified accounts", "engine: postgres", "MATRIX_DATABASE_URL"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("migrate-db output lacks %q:\n%s", want, stdout)
		}
	}
	if fileSum(t, src) != before {
		t.Error("migrate-db changed the SQLite file")
	}
	t.Setenv(config.EnvDatabaseURL, target)
	if code, out, errOut := cli(t, "", "user", "list"); code != 0 || !strings.Contains(out, "@alice:cli.test  true") {
		t.Errorf("user list on PostgreSQL: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := cli(t, "", "migrate-db", "-to", target); code != 1 || !strings.Contains(errOut, "not empty") {
		t.Errorf("migrating into a filled database: %d %q", code, errOut)
	}
	if code, _, errOut := cli(t, "", "migrate-db", "-to", "mysql://x"); code != 1 || !strings.Contains(errOut, "-to postgres://") {
		t.Errorf("migrate-db to a non-PostgreSQL URL: %d %q", code, errOut)
	}
}

// TestServeRefusesUnusablePostgres: a PostgreSQL server that cannot be used
// stops the server at once with the reason, never its password.
func TestServeRefusesUnusablePostgres(t *testing.T) {
	cluster := pgtest.URL(t)
	u, err := url.Parse(cluster)
	if err != nil {
		t.Fatal(err)
	}
	// A role the server refuses to log in (the test cluster trusts every
	// password, so a wrong one would be let in).
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, cluster)
	if err != nil {
		t.Fatal(err)
	}
	role := "matrixhs_nologin_" + strings.TrimPrefix(strings.Trim(u.Path, "/"), "matrixhs_test_")
	if _, err := conn.Exec(ctx, `CREATE ROLE `+role+` NOLOGIN PASSWORD 'secret'`); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	t.Cleanup(func() {
		if conn, err := pgx.Connect(context.Background(), cluster); err == nil {
			conn.Exec(context.Background(), `DROP ROLE IF EXISTS `+role)
			conn.Close(context.Background())
		}
	})
	refused := *u
	refused.User = url.UserPassword(role, "secret")
	u.Path = "/no_such_database"
	for dbURL, want := range map[string]string{
		"postgres://matrix:secret@127.0.0.1:1/matrix?connect_timeout=5": "unreachable",
		u.String():       "does not exist",
		refused.String(): "authentication failed",
	} {
		setupEnv(t)
		t.Setenv(config.EnvDatabaseURL, dbURL)
		code, _, errOut := cli(t, "", "serve")
		if code != 1 || !strings.Contains(errOut, want) || strings.Contains(errOut, "secret") {
			t.Errorf("serve on %s: exit %d, %q; want 1 and %q without the password", config.RedactURL(dbURL), code, errOut, want)
		}
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(raw)
}
