package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"matrixhs/internal/pgtest"
)

// OpenPostgres says why it cannot start: server unreachable, database
// missing (both for real), authentication failed and server too old (from
// the server's answers).
func TestOpenPostgresClassifiesErrors(t *testing.T) {
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	_, err = OpenPostgres(ctx, fmt.Sprintf("postgres://u@127.0.0.1:%d/db?sslmode=disable&connect_timeout=5", closedPort), 0)
	if !errors.Is(err, ErrPostgresUnreachable) || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Errorf("closed port: %v, want ErrPostgresUnreachable naming the address", err)
	}
	if _, err := OpenPostgres(ctx, "::not a url", 0); err == nil || errors.Is(err, ErrPostgresUnreachable) {
		t.Errorf("bad URL: %v", err)
	}

	cfg, _ := pgx.ParseConfig("postgres://alice@db.example:5433/hs")
	auth := classifyConnectError(&pgconn.PgError{Code: "28P01", Message: "password authentication failed"}, cfg)
	if !errors.Is(auth, ErrPostgresAuth) || !strings.Contains(auth.Error(), `"alice"`) {
		t.Errorf("auth: %v", auth)
	}
	if err := checkPostgresVersion("120011", cfg); !errors.Is(err, ErrPostgresTooOld) || !strings.Contains(err.Error(), "need 13") {
		t.Errorf("version 12: %v", err)
	}
	if err := checkPostgresVersion("130000", cfg); err != nil {
		t.Errorf("version 13: %v", err)
	}

	if os.Getenv(pgtest.URLEnv) == "" {
		return // no cluster to ask for a missing database
	}
	u, err := url.Parse(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/matrixhs_no_such_database"
	if _, err := OpenPostgres(ctx, u.String(), 0); !errors.Is(err, ErrPostgresNoDatabase) || !strings.Contains(err.Error(), "matrixhs_no_such_database") {
		t.Errorf("missing database: %v", err)
	}
}

// A lost writer connection fails the writes in flight with ErrUnavailable
// (nothing of them is kept), and the writer reconnects by itself: what was
// acknowledged before is there, and writes go on at the next position.
func TestPostgresWriterReconnects(t *testing.T) {
	if !onPostgres() {
		t.Skip("PostgreSQL only: run with MATRIX_TEST_STORAGE=postgres")
	}
	ctx := context.Background()
	db, _ := openTestDB(t)
	put := func(typ string) error {
		return db.Write(ctx, func(tx *Tx) error {
			_, err := tx.PutAccountData(ctx, "@u:x", "", typ, []byte(`{}`))
			return err
		})
	}
	if err := put("before"); err != nil {
		t.Fatal(err)
	}
	var pid int
	mustWrite(t, db, func(tx *Tx) error { return tx.q().QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid) })
	var killed bool
	if err := db.readers.QueryRowContext(ctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminating the writer's backend %d: %v %v", pid, killed, err)
	}
	err := put("lost")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("write on the lost connection: %v, want ErrUnavailable", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for err = put("after"); err != nil; err = put("after") {
		if !errors.Is(err, ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("write after the loss: %v", err)
		}
	}
	items, err := db.AccountDataChanges(ctx, "@u:x", 0, db.StreamPosition())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range items {
		got = append(got, fmt.Sprintf("%s@%d", it.Type, it.StreamPos))
	}
	if strings.Join(got, " ") != "before@1 after@2" {
		t.Fatalf("account data = %v, want before@1 after@2 (the failed write gone, no gap)", got)
	}
}

// Connection failures, not statement errors, make a read ErrUnavailable.
func TestReadErrorUnavailable(t *testing.T) {
	for _, c := range []struct {
		err  error
		lost bool
	}{
		{&pgconn.PgError{Code: "08006"}, true},
		{&pgconn.PgError{Code: "23505"}, false},
		{fmt.Errorf("reading: %w", io.ErrUnexpectedEOF), true},
		{errors.New("no rows"), false},
	} {
		if got := errors.Is(readError(dialectPostgres, c.err), ErrUnavailable); got != c.lost {
			t.Errorf("readError(%v) unavailable = %v, want %v", c.err, got, c.lost)
		}
	}
	if errors.Is(readError(dialectSQLite, io.ErrUnexpectedEOF), ErrUnavailable) {
		t.Error("an SQLite error became ErrUnavailable")
	}
}
