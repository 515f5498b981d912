package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"matrixhs/config"
	"matrixhs/storage"
)

func cmdRegistrationToken(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("want a subcommand: create, list or delete")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("registration-token "+sub, flag.ContinueOnError)
	uses := fs.Int64("uses", 0, "how many registrations the token allows (0: unlimited)")
	expires := fs.Duration("expires", 0, "how long the token is valid, e.g. 72h (0: forever)")
	token := fs.String("token", "", "the token text (random when empty)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	db, acc, err := offline(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	now := acc.Now()
	switch sub {
	case "create":
		if *uses < 0 || *expires < 0 {
			return errors.New("-uses and -expires must not be negative")
		}
		t := storage.RegistrationToken{Token: *token, UsesAllowed: *uses, CreatedTS: now.UnixMilli()}
		if t.Token == "" {
			if t.Token, err = config.RandomSecret(12); err != nil {
				return err
			}
		}
		if len(t.Token) > 64 {
			return errors.New("a token is at most 64 characters")
		}
		if *expires > 0 {
			t.ExpiryTS = now.Add(*expires).UnixMilli()
		}
		err := db.Write(ctx, func(tx *storage.Tx) error { return tx.InsertRegistrationToken(ctx, t) })
		if errors.Is(err, storage.ErrExists) {
			return fmt.Errorf("token %q already exists", t.Token)
		}
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, t.Token)
	case "list":
		all, err := db.RegistrationTokens(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TOKEN\tUSED\tALLOWED\tEXPIRES\tVALID")
		for _, t := range all {
			allowed, exp := "unlimited", "never"
			if t.UsesAllowed > 0 {
				allowed = fmt.Sprint(t.UsesAllowed)
			}
			if t.ExpiryTS > 0 {
				exp = time.UnixMilli(t.ExpiryTS).UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%v\n", t.Token, t.Completed, allowed, exp, t.Usable(now.UnixMilli()))
		}
		return tw.Flush()
	case "delete":
		if fs.NArg() != 1 {
			return errors.New("registration-token delete wants the token")
		}
		err := db.Write(ctx, func(tx *storage.Tx) error { return tx.DeleteRegistrationToken(ctx, fs.Arg(0)) })
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("no such token %q", fs.Arg(0))
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted %s\n", fs.Arg(0))
	default:
		return fmt.Errorf("unknown registration-token subcommand %q", sub)
	}
	return nil
}
