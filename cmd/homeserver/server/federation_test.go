package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/config"
	"matrixhs/federationapi"
	"matrixhs/federationapi/fedclient"
	"matrixhs/tests/fednet"
)

// startWithEnv starts a server on a fresh data dir with env overrides.
func startWithEnv(t *testing.T, env map[string]string) *Server {
	t.Helper()
	full := map[string]string{config.EnvListen: "127.0.0.1:0", config.EnvServerName: "hs.test"}
	for k, v := range env {
		full[k] = v
	}
	if full[config.EnvDataDir] == "" {
		full[config.EnvDataDir] = t.TempDir()
	}
	cfg, _, err := config.Load(func(k string) string { return full[k] })
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(context.Background(), cfg, Options{LogOutput: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s
}

// TestFederationFromConfig: the federation section's listener, certificate,
// extra CA and private-address switch reach the federation machinery.
func TestFederationFromConfig(t *testing.T) {
	ca := fednet.NewCA(t)
	dir := t.TempDir()
	certPEM, keyPEM := ca.IssuePEM(t, fednet.KeySEC1, "127.0.0.1")
	for name, data := range map[string][]byte{"cert.pem": certPEM, "key.pem": keyPEM, "ca.pem": ca.PEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s := startWithEnv(t, map[string]string{
		config.EnvDataDir: dir, config.EnvFederationListen: "127.0.0.1:0",
		config.EnvTLSCert: "cert.pem", config.EnvTLSKey: "key.pem", config.EnvFederationCA: "ca.pem",
		config.EnvFederationAllowPrivate: "true",
	})
	addr := s.FederationAddr()
	if addr == "" {
		t.Fatal("no federation listener")
	}
	// The server's own client trusts the extra CA and may reach loopback:
	// it fetches its own keys from its federation port by IP literal.
	var keys gomatrixserverlib.ServerKeys
	if err := s.Federation.Client.Do(context.Background(), http.MethodGet, spec.ServerName(addr), "/_matrix/key/v2/server", nil, &keys); err != nil {
		t.Fatalf("own federation port: %v", err)
	}
	if keys.ServerName != "hs.test" {
		t.Fatalf("keys of %q", keys.ServerName)
	}
	if o := s.Federation.Options(); o.KeyValidity != s.Config.Federation.KeyValidityPeriod || o.Disabled {
		t.Fatalf("options = %+v", o)
	}

	cfg := *s.Config
	cfg.Federation.KeyNotaries = []string{"notary.example:8448"}
	o, err := federationOptions(&cfg, s.SigningKey, s.Log, federationOptionsForTest())
	if err != nil || len(o.Notaries) != 1 || o.Notaries[0].ServerName != "notary.example:8448" || o.Listen != "127.0.0.1:9" {
		t.Fatalf("options = %+v, %v", o, err)
	}
}

// TestFederationDisabled: with federation off nothing listens for it and
// nothing is sent to other servers; the key endpoint stays.
func TestFederationDisabled(t *testing.T) {
	s := startWithEnv(t, map[string]string{config.EnvFederation: "disabled", config.EnvFederationAllowPrivate: "true"})
	if s.FederationAddr() != "" {
		t.Fatal("federation listener while disabled")
	}
	err := s.Federation.Client.Do(context.Background(), http.MethodGet, spec.ServerName(s.Addr()), "/_matrix/key/v2/server", nil, nil)
	if !errors.Is(err, fedclient.ErrDisabled) {
		t.Fatalf("outbound request: %v", err)
	}
	resp, err := http.Get(s.URL() + "/_matrix/key/v2/server")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("key endpoint: %v %v", resp, err)
	}
	resp.Body.Close()
}

// federationOptionsForTest are options a caller sets, which win over the
// config.
func federationOptionsForTest() federationapi.Options {
	return federationapi.Options{Listen: "127.0.0.1:9"}
}
