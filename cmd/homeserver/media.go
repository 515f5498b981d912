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

	"matrixhs/cmd/homeserver/server"
	"matrixhs/config"
	"matrixhs/mediaapi"
)

// cmdMedia runs the media housekeeping commands. Both are safe beside a
// running server: file deletions happen inside database writes, which SQLite
// serialises with the server's uploads.
//
//	media purge [-older-than DURATION] [-user USER]
//	media check [-delete-orphans]
func cmdMedia(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("want a subcommand: purge or check")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("media "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	olderThan := fs.Duration("older-than", 0, "purge: media uploaded longer ago than this, e.g. 720h")
	user := fs.String("user", "", "purge: media uploaded by this user (@name:server or a local name)")
	fix := fs.Bool("delete-orphans", false, "check: delete orphan files and abandoned temporary files")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	cfg, _, err := config.Load(os.Getenv)
	if err != nil {
		return err
	}
	db, err := server.OpenDatabase(ctx, cfg.Database)
	if err != nil {
		return err
	}
	defer db.Close()
	store, err := mediaapi.OpenStore(cfg.Media.Path)
	if err != nil {
		return err
	}
	now := time.Now()
	switch sub {
	case "purge":
		if *olderThan < 0 {
			return errors.New("-older-than must not be negative")
		}
		if *olderThan == 0 && *user == "" {
			return errors.New("media purge wants -older-than DURATION and/or -user USER")
		}
		opts := mediaapi.PurgeOptions{UserID: *user}
		if opts.UserID != "" && !strings.HasPrefix(opts.UserID, "@") {
			opts.UserID = "@" + strings.ToLower(opts.UserID) + ":" + cfg.Server.Name
		}
		if *olderThan > 0 {
			opts.Before = now.Add(-*olderThan)
		}
		res, err := mediaapi.Purge(ctx, db, store, opts, now)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "purged %d media, deleted %d files, dropped %d cached URL previews\n", res.Media, res.Files, res.Previews)
	case "check":
		res, err := mediaapi.Check(ctx, db, store, now)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d files on disk, %d referenced contents\n", res.Files, res.Referenced)
		for _, f := range res.Orphans {
			fmt.Fprintf(stdout, "orphan file (not referenced): %s (%d bytes)\n", f.Path, f.Size)
		}
		for _, h := range res.Missing {
			fmt.Fprintf(stdout, "missing file (referenced, not on disk): %s\n", store.Path(h))
		}
		for _, f := range res.StaleTemp {
			fmt.Fprintf(stdout, "abandoned temporary file: %s (%d bytes)\n", f.Path, f.Size)
		}
		fmt.Fprintf(stdout, "%d orphan, %d missing, %d abandoned temporary\n", len(res.Orphans), len(res.Missing), len(res.StaleTemp))
		if *fix {
			n, err := mediaapi.Repair(ctx, db, store, res)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "deleted %d files\n", n)
		}
		if len(res.Missing) > 0 {
			return fmt.Errorf("%d referenced files are missing", len(res.Missing))
		}
	default:
		return fmt.Errorf("unknown media subcommand %q", sub)
	}
	return nil
}
