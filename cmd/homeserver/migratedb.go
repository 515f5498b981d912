package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"matrixhs/config"
	"matrixhs/internal/dbcopy"
	"matrixhs/storage"
)

// cmdMigrateDB copies a stopped server's SQLite database into an empty
// PostgreSQL database. The SQLite file is opened read-only and never
// changed; the target is written in one transaction, committed only after
// every table's rows and checksum are verified.
func cmdMigrateDB(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate-db", flag.ContinueOnError)
	fs.SetOutput(stderr)
	to := fs.String("to", "", "the PostgreSQL database to fill: postgres://user:password@host:5432/database")
	from := fs.String("from", "", "the SQLite database file (default: database.path of the config)")
	batch := fs.Int("batch", dbcopy.DefaultBatchSize, "rows per batch")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if !config.IsPostgresURL(*to) {
		return errors.New("-to postgres://user:password@host:5432/database is required")
	}
	src := *from
	if src == "" {
		// The config names the SQLite file; MATRIX_DATABASE_URL (perhaps
		// already pointing at the target) does not matter here.
		cfg, _, err := config.Load(func(k string) string {
			if k == config.EnvDatabaseURL {
				return ""
			}
			return os.Getenv(k)
		})
		if err != nil {
			return err
		}
		src = cfg.Database.Path
	}
	start := time.Now()
	reports, err := migrateDB(ctx, src, *to, *batch, stdout)
	if err != nil {
		return err
	}
	var rows int64
	for _, r := range reports {
		rows += r.Rows
	}
	fmt.Fprintf(stdout, `
Copied %d rows in %d tables from %s to %s in %s; every table's row count and
checksum match. The SQLite file was not changed (keep it as a backup).

To run the server on PostgreSQL, set in homeserver.yaml:

  database:
    engine: postgres
    url: %s

or set the environment variable MATRIX_DATABASE_URL to that URL (with its
password). Media files stay where media.path says.
`, rows, len(reports), src, config.RedactURL(*to), time.Since(start).Round(time.Millisecond), config.RedactURL(*to))
	return nil
}

// migrateDB checks both ends and copies.
func migrateDB(ctx context.Context, srcPath, url string, batch int, progress io.Writer) ([]dbcopy.TableReport, error) {
	if _, err := os.Stat(srcPath); err != nil {
		return nil, fmt.Errorf("the SQLite database: %w", err)
	}
	// mode=ro: SQLite itself refuses every write on this connection.
	src, err := sql.Open("sqlite", "file:"+srcPath+"?mode=ro&_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", srcPath, err)
	}
	defer src.Close()
	srcVersion, err := schemaVersion(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("reading the schema version of %s: %w", srcPath, err)
	}

	redacted := config.RedactURL(url)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", redacted, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// Refused before the migrations touch it.
	if err := dbcopy.CheckEmpty(ctx, conn); err != nil {
		return nil, fmt.Errorf("%s: %w", redacted, err)
	}
	fmt.Fprintf(progress, "creating the tables in %s\n", redacted)
	dstVersion, err := migrateTarget(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", redacted, err)
	}
	if srcVersion != dstVersion {
		return nil, fmt.Errorf("the SQLite database is at schema version %d and this binary's PostgreSQL schema at %d: "+
			"run this version of the server once on the SQLite database (it upgrades it), stop it, and migrate again", srcVersion, dstVersion)
	}
	return dbcopy.Copy(ctx, src, conn, dbcopy.Options{BatchSize: batch, Progress: progress, Finish: rebuildSearch})
}

// migrateTarget brings the target's schema up to date, returning its
// version.
func migrateTarget(ctx context.Context, url string) (int, error) {
	db, err := storage.OpenPostgres(ctx, url, 2)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	return db.SchemaVersion(ctx)
}

func schemaVersion(ctx context.Context, db *sql.DB) (int, error) {
	var v int
	err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}
