package config

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func envOf(m map[string]string) Getenv { return func(k string) string { return m[k] } }

func TestFirstStartWritesFileAndKeepsIt(t *testing.T) {
	dir := t.TempDir()
	cfg, path, err := Load(envOf(map[string]string{EnvDataDir: dir}))
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, "homeserver.yaml") {
		t.Fatalf("path = %s", path)
	}
	if cfg.ServerName != "matrix.local" || cfg.Listen != "0.0.0.0:8008" || cfg.Registration != RegistrationDisabled {
		t.Fatalf("defaults wrong: %+v", cfg)
	}
	if cfg.DatabasePath != filepath.Join(dir, "homeserver.db") || cfg.MediaPath != filepath.Join(dir, "media") ||
		cfg.SigningKeyPath != filepath.Join(dir, "signing.key") || cfg.LogDir != filepath.Join(dir, "logs") {
		t.Fatalf("paths wrong: %+v", cfg)
	}
	if len(cfg.RegistrationSharedSecret) < 40 {
		t.Fatalf("shared secret %q too short", cfg.RegistrationSharedSecret)
	}
	first, _ := os.ReadFile(path)
	cfg2, _, err := Load(envOf(map[string]string{EnvDataDir: dir}))
	if err != nil {
		t.Fatal(err)
	}
	second, _ := os.ReadFile(path)
	if !bytes.Equal(first, second) || cfg2.RegistrationSharedSecret != cfg.RegistrationSharedSecret {
		t.Fatal("config file was rewritten on second start")
	}
}

func TestEnvironmentWinsOverFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "custom.yaml")
	os.WriteFile(path, []byte("server_name: file.example\nlisten: 127.0.0.1:1\nregistration: open\nlog_level: debug\nregistration_shared_secret: fromfile\n"), 0o600)
	cfg, got, err := Load(envOf(map[string]string{
		EnvConfig: path, EnvDataDir: dir,
		EnvServerName: "env.example", EnvListen: "127.0.0.1:2", EnvPublicBaseURL: "https://m.env.example",
		EnvRegistration: "token", EnvRegistrationSharedSecret: "fromenv", EnvLogLevel: "warn",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got != path {
		t.Fatalf("path = %s", got)
	}
	if cfg.ServerName != "env.example" || cfg.Listen != "127.0.0.1:2" || cfg.PublicBaseURL != "https://m.env.example" ||
		cfg.Registration != "token" || cfg.RegistrationSharedSecret != "fromenv" || cfg.LogLevel != "warn" {
		t.Fatalf("env did not win: %+v", cfg)
	}
	if cfg.BaseURL("ignored", false) != "https://m.env.example/" {
		t.Fatalf("BaseURL = %s", cfg.BaseURL("ignored", false))
	}
	cfg2, _, err := Load(envOf(map[string]string{EnvConfig: path, EnvDataDir: dir}))
	if err != nil || cfg2.ServerName != "file.example" || cfg2.Registration != "open" {
		t.Fatalf("file values = %+v, %v", cfg2, err)
	}
	if cfg2.BaseURL("h:1", true) != "https://h:1/" {
		t.Fatalf("derived BaseURL = %s", cfg2.BaseURL("h:1", true))
	}
}

func TestValidationMessages(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"server_name: 'bad name'\n", "server_name"},
		{"listen: nonsense\n", "listen"},
		{"registration: sometimes\n", "registration"},
		{"log_level: loud\n", "log_level"},
		{"default_room_version: '99'\n", "default_room_version"},
		{"default_room_version: org.matrix.msc4242.12\n", "default_room_version"},
		{"public_baseurl: ftp://x\n", "public_baseurl"},
		{"bcrypt_cost: 2\n", "bcrypt_cost"},
		{"max_request_body_bytes: 10\n", "max_request_body_bytes"},
		{"no_such_key: 1\n", "no_such_key"},
		{"listen: [1, 2]\n", "line 1"},
		{"support: {}\n", "support"},
		{"support: {contacts: [{role: m.role.admin}]}\n", "support contact"},
		{"trusted_proxies: [10.0.0.0/33]\n", "trusted_proxies"},
		{"trusted_proxies: [proxy.example.org]\n", "trusted_proxies"},
		{"rc_registration: {per_second: 0}\n", "rc_registration"},
		{"rc_registration: {burst_count: 0}\n", "rc_registration"},
		{"server_notices: {system_mxid_localpart: 'Big Boss'}\n", "system_mxid_localpart"},
		{"server_notices: {room_avatar_url: 'https://x/a.png'}\n", "room_avatar_url"},
		{"server_notices: {no_such: 1}\n", "no_such"},
	} {
		dir := t.TempDir()
		path := filepath.Join(dir, "c.yaml")
		os.WriteFile(path, []byte(tc.yaml), 0o600)
		_, _, err := Load(envOf(map[string]string{EnvConfig: path, EnvDataDir: dir}))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want mention of %q", tc.yaml, err, tc.want)
		}
	}
	if _, _, err := Load(envOf(map[string]string{EnvDataDir: t.TempDir(), EnvRegistration: "bogus"})); err == nil {
		t.Error("invalid MATRIX_REGISTRATION accepted")
	}
}

func TestGeneratedFileRoundTrips(t *testing.T) {
	raw, err := Generate("example.org")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Default()
	if err := Parse(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.ServerName != "example.org" || cfg.DefaultRoomVersion != "11" || cfg.RegistrationSharedSecret == "" {
		t.Fatalf("parsed generated config = %+v", cfg)
	}
	if !slices.Equal(cfg.TrustedProxies, DefaultTrustedProxies()) || cfg.RCRegistration != Default().RCRegistration {
		t.Fatalf("generated trusted_proxies %v, rc_registration %+v", cfg.TrustedProxies, cfg.RCRegistration)
	}
	cfg.DataDir = "/x"
	cfg.fillPaths()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

// trusted_proxies: CIDRs and single addresses; [] trusts no one; a file
// without the key keeps the defaults (files written before it existed).
func TestTrustedProxies(t *testing.T) {
	cfg := Default()
	if err := Parse([]byte("trusted_proxies: [203.0.113.7, \"2001:db8::/32\", \"::ffff:198.51.100.1\"]\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	got := cfg.TrustedProxyPrefixes()
	want := []string{"203.0.113.7/32", "2001:db8::/32", "198.51.100.1/32"}
	if len(got) != len(want) {
		t.Fatalf("prefixes = %v", got)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Fatalf("prefixes = %v, want %v", got, want)
		}
	}
	none := Default()
	if err := Parse([]byte("trusted_proxies: []\n"), &none); err != nil || len(none.TrustedProxyPrefixes()) != 0 {
		t.Fatalf("[] = %v, %v", none.TrustedProxies, err)
	}
	old := Default()
	if err := Parse([]byte("server_name: x.example\n"), &old); err != nil || !slices.Equal(old.TrustedProxies, DefaultTrustedProxies()) {
		t.Fatalf("defaults lost: %v, %v", old.TrustedProxies, err)
	}
	partial := Default()
	if err := Parse([]byte("rc_registration: {burst_count: 3}\n"), &partial); err != nil ||
		partial.RCRegistration != (RateLimit{PerSecond: 0.17, BurstCount: 3}) {
		t.Fatalf("partial rc_registration = %+v, %v", partial.RCRegistration, err)
	}
}

func TestSigningKeySynapseFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing.key")
	k1, err := LoadOrCreateSigningKey(path)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	fields := strings.Fields(string(raw))
	if len(fields) != 3 || fields[0] != "ed25519" || "ed25519:"+fields[1] != k1.ID || strings.Contains(fields[2], "=") {
		t.Fatalf("key file %q not in Synapse format", raw)
	}
	k2, err := LoadOrCreateSigningKey(path)
	if err != nil || k2.ID != k1.ID || !k2.PrivateKey.Equal(k1.PrivateKey) {
		t.Fatalf("reloaded key differs: %v", err)
	}
	// A key file as Synapse writes it.
	synapse := "ed25519 a_AbCd nJnEa0YVgTFr0Z3TX3Sa4C7CoezQm76ZZh4/v1D6Xyw\n"
	k3, err := ParseSigningKey([]byte(synapse))
	if err != nil || k3.ID != "ed25519:a_AbCd" || string(k3.Format()) != synapse {
		t.Fatalf("Synapse key = %+v, %v; formats as %q", k3, err, k3.Format())
	}
	for _, bad := range []string{"", "ed25519 a_x\n", "rsa a_x AAAA\n", "ed25519 a_x not-base64!\n", "ed25519 a_x AAAA\n"} {
		if _, err := ParseSigningKey([]byte(bad)); err == nil {
			t.Errorf("ParseSigningKey(%q) accepted", bad)
		}
	}
}

// TestServerNoticesConfig: server notices are on by default with Synapse's
// keys; a partial block keeps the other defaults; an empty localpart turns
// them off.
func TestServerNoticesConfig(t *testing.T) {
	load := func(yaml string) *Config {
		t.Helper()
		dir := t.TempDir()
		path := filepath.Join(dir, "c.yaml")
		os.WriteFile(path, []byte("server_name: example.org\n"+yaml), 0o600)
		cfg, _, err := Load(envOf(map[string]string{EnvConfig: path, EnvDataDir: dir}))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	if c := load(""); c.ServerNoticesUserID() != "@_server:example.org" || c.ServerNotices.RoomName != "Server Notices" || c.ServerNotices.AutoJoin {
		t.Fatalf("defaults = %+v", c.ServerNotices)
	}
	c := load("server_notices:\n  system_mxid_localpart: notices\n  room_topic: From the admins\n  auto_join: true\n")
	if c.ServerNoticesUserID() != "@notices:example.org" || c.ServerNotices.RoomTopic != "From the admins" || !c.ServerNotices.AutoJoin ||
		c.ServerNotices.SystemMXIDDisplayName != "Server Notices" {
		t.Fatalf("partial block = %+v", c.ServerNotices)
	}
	if c := load("server_notices:\n  system_mxid_localpart: \"\"\n"); c.ServerNoticesUserID() != "" {
		t.Fatalf("turned off, yet notices user %q", c.ServerNoticesUserID())
	}
}
