package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"matrixhs/config"
)

const cliReg = `id: irc
url: http://127.0.0.1:9999
as_token: as-irc
hs_token: hs-irc
sender_localpart: ircbot
namespaces:
  users: [{regex: '@irc_.*:cli\.test', exclusive: true}]
`

func TestAppServiceCommands(t *testing.T) {
	dir := setupEnv(t)
	// The first run writes the generated config (with its comments).
	if code, _, errOut := cli(t, "", "appservice", "list"); code != 0 {
		t.Fatalf("list on a fresh data dir: %d %s", code, errOut)
	}
	file := filepath.Join(t.TempDir(), "irc.yaml")
	os.WriteFile(file, []byte(cliReg), 0o600)
	code, out, errOut := cli(t, "", "appservice", "add", file)
	if code != 0 || !strings.Contains(out, "appservice irc registered") {
		t.Fatalf("add: %d %q %q", code, out, errOut)
	}
	cfg, _, err := config.Load(func(k string) string { return os.Getenv(k) })
	if err != nil {
		t.Fatalf("config after add: %v", err)
	}
	if len(cfg.AppServiceConfigFiles) != 1 || cfg.AppServiceConfigFiles[0] != filepath.Join(dir, "appservices", "irc.yaml") {
		t.Fatalf("app_service_config_files = %v", cfg.AppServiceConfigFiles)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "homeserver.yaml"))
	if !strings.Contains(string(raw), "# ") {
		t.Fatalf("the config's comments were lost:\n%s", raw)
	}
	code, out, _ = cli(t, "", "appservice", "list")
	if code != 0 || !strings.Contains(out, "irc") || !strings.Contains(out, "@ircbot:cli.test") {
		t.Fatalf("list: %d %q", code, out)
	}
	// The same appservice again, or one overlapping it, is refused.
	if code, _, errOut := cli(t, "", "appservice", "add", file); code == 0 || !strings.Contains(errOut, "already used") {
		t.Fatalf("adding twice: %d %q", code, errOut)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(strings.ReplaceAll(cliReg, "'@irc_", "'@irc_(")), 0o600)
	if code, _, errOut := cli(t, "", "appservice", "add", bad); code == 0 || !strings.Contains(errOut, "bad.yaml") {
		t.Fatalf("adding a bad file: %d %q", code, errOut)
	}
	if code, _, _ := cli(t, "", "appservice", "frobnicate"); code == 0 {
		t.Fatal("unknown subcommand accepted")
	}
}
