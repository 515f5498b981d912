package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// MinPostgresVersion is the oldest PostgreSQL major version OpenPostgres
// accepts.
const MinPostgresVersion = 13

// The reasons OpenPostgres cannot start, for errors.Is; the errors wrapping
// them say what to do.
var (
	ErrPostgresUnreachable = errors.New("PostgreSQL server unreachable")
	ErrPostgresAuth        = errors.New("PostgreSQL authentication failed")
	ErrPostgresNoDatabase  = errors.New("PostgreSQL database does not exist")
	ErrPostgresTooOld      = errors.New("PostgreSQL server too old")
)

// pgWriter is the state of the PostgreSQL writer connection, used only by
// the write loop: after the connection is lost, writes fail with
// ErrUnavailable until a reconnection (tried with backoff) succeeds.
type pgWriter struct {
	broken  bool
	retryAt time.Time
	backoff time.Duration
}

const (
	reconnectMinBackoff = 50 * time.Millisecond
	reconnectMaxBackoff = 5 * time.Second
	// pgConnectTimeout bounds one attempt to reach the server.
	pgConnectTimeout = 10 * time.Second
)

// OpenPostgres opens the PostgreSQL database at url (a postgres:// URL or
// key=value DSN), applies migrations and returns the same DB as Open does.
// maxConns bounds the read pool (0: a default from the CPU count); the
// writer has a connection of its own. Errors that keep it from starting
// wrap ErrPostgresUnreachable, ErrPostgresAuth, ErrPostgresNoDatabase or
// ErrPostgresTooOld.
func OpenPostgres(ctx context.Context, url string, maxConns int) (*DB, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parsing the PostgreSQL URL: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = pgConnectTimeout
	}
	cfg.RuntimeParams["application_name"] = "matrixhs"
	writer := stdlib.OpenDB(*cfg)
	writer.SetMaxIdleConns(1)
	if err := checkPostgres(ctx, writer, cfg); err != nil {
		writer.Close()
		return nil, err
	}
	if err := migrate(ctx, writer, dialectPostgres); err != nil {
		writer.Close()
		return nil, err
	}
	rcfg := cfg.Copy()
	rcfg.RuntimeParams["default_transaction_read_only"] = "on"
	readers := stdlib.OpenDB(*rcfg)
	if maxConns <= 0 {
		maxConns = defaultReadConns()
	}
	readers.SetMaxOpenConns(maxConns)
	readers.SetMaxIdleConns(maxConns)
	readers.SetConnMaxIdleTime(5 * time.Minute)

	warmPool(ctx, readers, min(maxConns, 4))
	db := &DB{dialect: dialectPostgres, writer: writer, readers: readers, pg: &pgWriter{}}
	if err := db.start(ctx, maxConns/2); err != nil {
		return nil, err
	}
	return db, nil
}

// warmPool opens n connections of the pool at once, so that the first
// requests after start do not each wait for a connection to be set up.
func warmPool(ctx context.Context, pool *sql.DB, n int) {
	conns := make([]*sql.Conn, 0, n)
	for range n {
		c, err := pool.Conn(ctx)
		if err != nil {
			break // the requests will try again
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Close()
	}
}

// checkPostgres connects once, classifying why that fails, and checks the
// server's version.
func checkPostgres(ctx context.Context, db *sql.DB, cfg *pgx.ConnConfig) error {
	var num string
	err := db.QueryRowContext(ctx, `SHOW server_version_num`).Scan(&num)
	if err != nil {
		return classifyConnectError(err, cfg)
	}
	return checkPostgresVersion(num, cfg)
}

// checkPostgresVersion checks a server_version_num (e.g. 150004 for 15.4).
func checkPostgresVersion(num string, cfg *pgx.ConnConfig) error {
	v, err := strconv.Atoi(num)
	if err != nil {
		return fmt.Errorf("reading the PostgreSQL server version %q: %w", num, err)
	}
	if v/10000 < MinPostgresVersion {
		return fmt.Errorf("%w: the server at %s:%d runs version %d.%d, need %d or later", ErrPostgresTooOld,
			cfg.Host, cfg.Port, v/10000, v%10000, MinPostgresVersion)
	}
	return nil
}

// classifyConnectError says why connecting failed, from the server's error
// code (authentication, missing database) or the network error.
func classifyConnectError(err error, cfg *pgx.ConnConfig) error {
	where := fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28P01", "28000":
			return fmt.Errorf("%w for user %q at %s (check the user and password in the database URL): %w",
				ErrPostgresAuth, cfg.User, where, err)
		case "3D000":
			return fmt.Errorf("%w: %q at %s (create it, e.g. createdb -O %s %s): %w",
				ErrPostgresNoDatabase, cfg.Database, where, cfg.User, cfg.Database, err)
		}
		return fmt.Errorf("connecting to PostgreSQL at %s: %w", where, err)
	}
	var netErr net.Error
	var connErr *pgconn.ConnectError
	if errors.As(err, &netErr) || errors.As(err, &connErr) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w at %s (is it running, and does it accept TCP connections there?): %w",
			ErrPostgresUnreachable, where, err)
	}
	return fmt.Errorf("connecting to PostgreSQL at %s: %w", where, err)
}

// readError marks the error of a read whose connection failed as
// ErrUnavailable (database/sql already retried it on a fresh connection).
func readError(d dialect, err error) error {
	if err == nil || d != dialectPostgres || !IsUnavailable(err) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// unavailable marks err as ErrUnavailable when the writer connection is
// lost (then the write loop reconnects before the next batch).
func (db *DB) unavailable(err error) error {
	if db.pg == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && !IsUnavailable(err) {
		return err // the server answered: the statement failed, not the connection
	}
	ctx, cancel := context.WithTimeout(context.Background(), pgConnectTimeout)
	defer cancel()
	if pingErr := db.wconn.PingContext(ctx); pingErr == nil {
		return err
	}
	db.pg.broken = true
	db.pg.retryAt = time.Time{}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// writerReady reconnects a lost writer connection, no sooner than the
// backoff allows; until then writes fail at once with ErrUnavailable.
func (db *DB) writerReady() error {
	p := db.pg
	if p == nil || !p.broken {
		return nil
	}
	if time.Now().Before(p.retryAt) {
		return fmt.Errorf("%w: reconnecting to the database server", ErrUnavailable)
	}
	if err := db.reconnectWriter(); err != nil {
		p.backoff = min(max(2*p.backoff, reconnectMinBackoff), reconnectMaxBackoff)
		p.retryAt = time.Now().Add(p.backoff)
		return fmt.Errorf("%w: reconnecting: %w", ErrUnavailable, err)
	}
	p.broken, p.backoff = false, 0
	return nil
}

// reconnectWriter replaces the writer connection by a new one.
func (db *DB) reconnectWriter() error {
	// Close the old driver connection so the pool never hands it out again.
	db.wconn.Raw(func(dc any) error {
		if c, ok := dc.(interface{ Close() error }); ok {
			c.Close()
		}
		return nil
	})
	db.wconn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), pgConnectTimeout)
	defer cancel()
	conn, err := db.writer.Conn(ctx)
	if err != nil {
		return err
	}
	if err := conn.PingContext(ctx); err != nil {
		conn.Close()
		return err
	}
	db.wconn = conn
	db.writeStmts = newStmtCache(conn, db.dialect)
	return nil
}
