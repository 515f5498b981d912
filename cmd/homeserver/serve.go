package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"matrixhs/cmd/homeserver/server"
	"matrixhs/config"
)

// cmdServe runs the server until SIGTERM or SIGINT, then shuts down gracefully.
func cmdServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, path, err := config.Load(os.Getenv)
	if err != nil {
		return err
	}
	srv, err := server.New(ctx, cfg, server.Options{})
	if err != nil {
		return err
	}
	srv.Log.WithField("config", path).WithField("version", version).Info("starting")
	// Signals are caught before the port opens, so a supervisor that sees the
	// server answer can always stop it gracefully.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := srv.Listen(""); err != nil {
		srv.Shutdown(ctx)
		return err
	}
	for {
		select {
		case <-hup:
			reloadAppServices(ctx, srv)
			continue
		case sig := <-sigs:
			srv.Log.WithField("signal", sig.String()).Info("shutting down")
		case err := <-srv.Done():
			srv.Shutdown(ctx)
			return fmt.Errorf("server stopped: %w", err)
		}
		return srv.Shutdown(context.Background())
	}
}

// reloadAppServices rereads the config's app_service_config_files and the
// registration files (SIGHUP); a bad file leaves those in force.
func reloadAppServices(ctx context.Context, srv *server.Server) {
	cfg, _, err := config.Load(os.Getenv)
	if err == nil {
		err = srv.AppServices.Reload(ctx, cfg.AppServiceConfigFiles)
	}
	if err != nil {
		srv.Log.WithError(err).Error("SIGHUP: appservice registrations not reloaded; the previous ones stay in force")
	}
}

// cmdGenerateConfig writes a fresh commented config file.
func cmdGenerateConfig(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("generate-config", flag.ContinueOnError)
	serverName := fs.String("server-name", config.Default().Server.Name, "server name (the domain in user IDs)")
	output := fs.String("output", "", "file to write (never overwritten); stdout when empty")
	if err := fs.Parse(args); err != nil {
		return err
	}
	raw, err := config.Generate(*serverName)
	if err != nil {
		return err
	}
	var cfg config.Config = config.Default()
	if err := config.Parse(raw, &cfg); err != nil {
		return fmt.Errorf("generated config does not parse: %w", err)
	}
	if *output == "" {
		_, err = stdout.Write(raw)
		return err
	}
	f, err := os.OpenFile(*output, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(raw); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
