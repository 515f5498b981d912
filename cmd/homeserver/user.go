package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"matrixhs/cmd/homeserver/server"
	"matrixhs/config"
	"matrixhs/internal/accounts"
	"matrixhs/storage"
)

// offline opens the database and account service without serving, for the
// admin commands. They may run beside a live server (SQLite locks, and
// PostgreSQL is made for it).
func offline(ctx context.Context) (*storage.DB, *accounts.Service, error) {
	cfg, _, err := config.Load(os.Getenv)
	if err != nil {
		return nil, nil, err
	}
	db, err := server.OpenDatabase(ctx, cfg.Database)
	if err != nil {
		return nil, nil, err
	}
	return db, accounts.New(db, accounts.Options{
		ServerName: cfg.Server.Name, BcryptCost: cfg.Registration.BcryptCost, RefreshLifetime: cfg.Registration.RefreshableAccessTokenLifetime,
	}), nil
}

// readPassword takes the password from a file, else prompts twice on a
// terminal, else reads the first line of stdin. Never from argv, where other
// users of the machine could see it.
func readPassword(file string, stdin io.Reader, stderr io.Writer) (string, error) {
	if file != "" {
		raw, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("reading password file: %w", err)
		}
		return strings.TrimRight(string(raw), "\r\n"), nil
	}
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(stderr, "Password: ")
		p1, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", err
		}
		fmt.Fprint(stderr, "Confirm password: ")
		p2, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", err
		}
		if string(p1) != string(p2) {
			return "", errors.New("passwords do not match")
		}
		return string(p1), nil
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading password from stdin: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func cmdUser(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("want a subcommand: add, passwd, list or deactivate")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("user "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	admin := fs.Bool("admin", false, "make the user a server admin (add)")
	passwordFile := fs.String("password-file", "", "read the password from this file")
	displayName := fs.String("displayname", "", "display name (add)")
	erase := fs.Bool("erase", false, "also erase the profile (deactivate)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if sub != "list" && fs.NArg() != 1 {
		return fmt.Errorf("user %s wants exactly one user name", sub)
	}
	db, acc, err := offline(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	switch sub {
	case "add":
		local, err := acc.ParseLocalUser(fs.Arg(0))
		if err != nil {
			return err
		}
		password, err := readPassword(*passwordFile, stdin, stderr)
		if err != nil {
			return err
		}
		login, err := acc.Register(ctx, accounts.Registration{
			Localpart: local, Password: password, Admin: *admin, DisplayName: *displayName, InhibitLogin: true,
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created %s%s\n", login.UserID, map[bool]string{true: " (admin)"}[*admin])
	case "passwd":
		userID, err := existingUser(ctx, db, acc, fs.Arg(0))
		if err != nil {
			return err
		}
		password, err := readPassword(*passwordFile, stdin, stderr)
		if err != nil {
			return err
		}
		if err := acc.ChangePassword(ctx, userID, password, true, ""); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "password changed for %s; all its devices were logged out\n", userID)
	case "deactivate":
		userID, err := existingUser(ctx, db, acc, fs.Arg(0))
		if err != nil {
			return err
		}
		if err := acc.Deactivate(ctx, userID, *erase); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deactivated %s\n", userID)
	case "list":
		all, err := db.Accounts(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USER\tADMIN\tDEACTIVATED\tCREATED")
		for _, a := range all {
			fmt.Fprintf(tw, "%s\t%v\t%v\t%s\n", a.UserID, a.IsAdmin, a.Deactivated,
				time.UnixMilli(a.CreatedTS).UTC().Format(time.RFC3339))
		}
		return tw.Flush()
	default:
		return fmt.Errorf("unknown user subcommand %q", sub)
	}
	return nil
}

func existingUser(ctx context.Context, db *storage.DB, acc *accounts.Service, name string) (string, error) {
	local, err := acc.ParseLocalUser(name)
	if err != nil {
		return "", err
	}
	userID := acc.UserID(local)
	if _, err := db.Account(ctx, userID); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return "", fmt.Errorf("no such user %s", userID)
		}
		return "", err
	}
	return userID, nil
}
