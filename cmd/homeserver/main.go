// Command homeserver is a Matrix homeserver in one static binary.
//
//	homeserver [serve]                 run the server (the default)
//	homeserver generate-config         print a fresh config file
//	homeserver user add|passwd|list|deactivate
//	homeserver registration-token create|list|delete
//	homeserver media purge|check
//	homeserver backup -o FILE
//	homeserver migrate-db -to postgres://...
//	homeserver version
package main

import (
	"context"
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `usage: homeserver <command> [arguments]

commands:
  serve                                run the homeserver (default)
  generate-config [-server-name NAME] [-output FILE]
                                       write a fresh config file (stdout by default)
  user add [-admin] [-password-file F] [-displayname N] LOCALPART
  user passwd [-password-file F] USER  set a new password (prompted, or read from F or stdin)
  user list                            list local accounts
  user deactivate [-erase] USER        deactivate an account and log out all its devices
  registration-token create [-uses N] [-expires DURATION] [-token T]
  registration-token list
  registration-token delete TOKEN
  media purge [-older-than DURATION] [-user USER]
                                       delete media (and files nothing else uses)
  media check [-delete-orphans]        report orphan, missing and abandoned media files
  appservice list                      list the appservices and their delivery state
  appservice add FILE                  check a registration file, copy it into the data dir and list it in the config
  backup -o FILE                       write a consistent copy of the SQLite database (online)
  migrate-db -to postgres://USER:PASSWORD@HOST:5432/DB [-from FILE] [-batch N]
                                       copy a stopped server's SQLite database into an
                                       empty PostgreSQL database, verified table by table
  version                              print the version

Configuration comes from $MATRIX_CONFIG (default <data dir>/homeserver.yaml) and
the MATRIX_* environment variables; see README.md.
`

// run dispatches a command line; it returns the process exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = cmdServe(ctx, args, stderr)
	case "generate-config":
		err = cmdGenerateConfig(args, stdout)
	case "user":
		err = cmdUser(ctx, args, stdin, stdout, stderr)
	case "registration-token":
		err = cmdRegistrationToken(ctx, args, stdout)
	case "media":
		err = cmdMedia(ctx, args, stdout, stderr)
	case "appservice":
		err = cmdAppService(ctx, args, stdout)
	case "backup":
		err = cmdBackup(ctx, args, stdout, stderr)
	case "migrate-db":
		err = cmdMigrateDB(ctx, args, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "homeserver %s\n", version)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "homeserver %s: %v\n", cmd, err)
		return 1
	}
	return 0
}
