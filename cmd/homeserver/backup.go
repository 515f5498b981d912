package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"matrixhs/cmd/homeserver/server"
	"matrixhs/config"
)

// cmdBackup writes a consistent copy of a SQLite database while the server
// runs (VACUUM INTO). PostgreSQL has its own tools for that, named in the
// error.
func cmdBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "the backup file to write (must not exist)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if *out == "" {
		return errors.New("-o FILE is required")
	}
	cfg, _, err := config.Load(os.Getenv)
	if err != nil {
		return err
	}
	if cfg.Database.Postgres() {
		return fmt.Errorf("the database is PostgreSQL: back it up with pg_dump, e.g.\n"+
			"  pg_dump --format=custom --file %s '%s'\n"+
			"and restore into an empty database with pg_restore --dbname URL %s (see README.md)",
			*out, cfg.Database.RedactedURL(), *out)
	}
	if _, err := os.Stat(*out); err == nil {
		return fmt.Errorf("%s exists: choose a new file", *out)
	}
	db, err := server.OpenDatabase(ctx, cfg.Database)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Backup(ctx, *out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s; to restore, stop the server and put it in place of %s\n", *out, cfg.Database.Path)
	return nil
}
