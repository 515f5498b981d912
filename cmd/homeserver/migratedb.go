package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"matrixhs/config"
	"matrixhs/internal/dbcopy"
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
	reports, err := dbcopy.Migrate(ctx, src, *to, dbcopy.Options{BatchSize: *batch, Progress: stdout})
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
