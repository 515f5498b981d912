package config

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) Getenv { return func(k string) string { return m[k] } }

// loadYAML loads a config file holding yaml from a fresh data dir, with env
// on top.
func loadYAML(t *testing.T, yaml string, env map[string]string) (*Config, error) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "homeserver.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	full := map[string]string{EnvConfig: path, EnvDataDir: dir}
	for k, v := range env {
		full[k] = v
	}
	cfg, _, err := Load(envOf(full))
	return cfg, err
}

func TestFirstStartWritesFileAndKeepsIt(t *testing.T) {
	dir := t.TempDir()
	cfg, path, err := Load(envOf(map[string]string{EnvDataDir: dir}))
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, "homeserver.yaml") {
		t.Fatalf("path = %s", path)
	}
	if cfg.Server.Name != "matrix.local" || cfg.Server.Listen != "0.0.0.0:8008" || cfg.Registration.Mode != RegistrationDisabled ||
		!cfg.Federation.Enabled || cfg.Federation.Listen != "" || len(cfg.Notices) != 0 {
		t.Fatalf("defaults wrong: %+v", cfg)
	}
	if cfg.Database.Path != filepath.Join(dir, "homeserver.db") || cfg.Media.Path != filepath.Join(dir, "media") ||
		cfg.Server.SigningKeyPath != filepath.Join(dir, "signing.key") || cfg.Logging.Dir != filepath.Join(dir, "logs") {
		t.Fatalf("paths wrong: %+v", cfg)
	}
	if len(cfg.Registration.SharedSecret) < 40 {
		t.Fatalf("shared secret %q too short", cfg.Registration.SharedSecret)
	}
	first, _ := os.ReadFile(path)
	cfg2, _, err := Load(envOf(map[string]string{EnvDataDir: dir}))
	if err != nil {
		t.Fatal(err)
	}
	second, _ := os.ReadFile(path)
	if !bytes.Equal(first, second) || cfg2.Registration.SharedSecret != cfg.Registration.SharedSecret {
		t.Fatal("config file was rewritten on second start")
	}
}

// TestSectionedFileLoads: every key of every section, set away from its
// default, lands in its field; no notices.
func TestSectionedFileLoads(t *testing.T) {
	dir := t.TempDir()
	yaml := `
server:
  server_name: example.org
  listen: 127.0.0.1:8118
  public_baseurl: https://matrix.example.org/
  well_known_server: matrix.example.org:443
  data_dir: ` + dir + `
  signing_key_path: keys/signing.key
  max_request_body_bytes: 1048576
  shutdown_timeout: 3s
  trusted_proxies: [203.0.113.7]
  http: {read_header_timeout: 5s, read_body_timeout: 6s, idle_timeout: 7s, max_connections: 12}
database:
  path: db/hs.db
registration:
  mode: token
  shared_secret: s3cret
  rc_registration: {per_second: 1, burst_count: 2}
  bcrypt_cost: 12
  refreshable_access_token_lifetime: 2m
rooms: {default_room_version: "12"}
media:
  path: /srv/media
  max_upload_bytes: 1234
  quota_bytes_per_user: 99
  thumbnail_memory_bytes: 33554432
  url_preview_enabled: yes
  url_preview_ip_range_blacklist: [10.9.0.0/16]
  url_preview_ip_range_whitelist: [10.8.0.0/16]
push: {ip_range_blacklist: [10.7.0.0/16], ip_range_whitelist: [10.6.0.0/16]}
voip: {turn_uris: ["turn:turn.example.org"], turn_shared_secret: ts, turn_user_lifetime: 2h}
federation:
  enabled: disabled
  allow_private_addresses: "1"
  key_notaries: [matrix.org, "notary.example:8448"]
  key_validity_period: 24h
  inbound_rate_limit: {per_second: 5, burst_count: 20}
presence: {enabled: false}
logging: {level: debug, dir: /var/log/mhs, max_size_mb: 7, max_files: 3}
server_notices: {system_mxid_localpart: notices, auto_join: Enabled}
support: {support_page: https://example.org/help}
app_service_config_files: [appservices/bridge.yaml, /etc/matrix/irc.yaml]
`
	path := filepath.Join(dir, "homeserver.yaml")
	os.WriteFile(path, []byte(yaml), 0o600)
	cfg, _, err := Load(envOf(map[string]string{EnvConfig: path}))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Server = ServerConfig{
		Name: "example.org", Listen: "127.0.0.1:8118", PublicBaseURL: "https://matrix.example.org/",
		WellKnownServer: "matrix.example.org:443", DataDir: dir, SigningKeyPath: filepath.Join(dir, "keys/signing.key"),
		MaxRequestBodyBytes: 1 << 20, ShutdownTimeout: 3 * time.Second, TrustedProxies: []string{"203.0.113.7"},
		HTTP: HTTPConfig{ReadHeaderTimeout: 5 * time.Second, ReadBodyTimeout: 6 * time.Second, IdleTimeout: 7 * time.Second, MaxConnections: 12},
	}
	want.Database.Path = filepath.Join(dir, "db/hs.db")
	want.Registration = RegistrationConfig{Mode: RegistrationToken, SharedSecret: "s3cret", RCRegistration: RateLimit{PerSecond: 1, BurstCount: 2},
		BcryptCost: 12, RefreshableAccessTokenLifetime: 2 * time.Minute}
	want.Rooms.DefaultRoomVersion = "12"
	want.Media = MediaConfig{Path: "/srv/media", MaxUploadBytes: 1234, QuotaBytesPerUser: 99, ThumbnailMemoryBytes: 32 << 20,
		URLPreviewEnabled: true, URLPreviewIPRangeBlacklist: []string{"10.9.0.0/16"}, URLPreviewIPRangeWhitelist: []string{"10.8.0.0/16"}}
	want.Push = PushConfig{IPRangeBlacklist: []string{"10.7.0.0/16"}, IPRangeWhitelist: []string{"10.6.0.0/16"}}
	want.VoIP = VoIPConfig{TURNURIs: []string{"turn:turn.example.org"}, TURNSharedSecret: "ts", TURNUserLifetime: 2 * time.Hour}
	want.Federation = FederationConfig{Enabled: false, AllowPrivateAddresses: true,
		KeyNotaries: []string{"matrix.org", "notary.example:8448"}, KeyValidityPeriod: 24 * time.Hour,
		InboundRateLimit: RateLimit{PerSecond: 5, BurstCount: 20}}
	want.Presence.Enabled = false
	want.Logging = LoggingConfig{Level: "debug", Dir: "/var/log/mhs", MaxSizeMB: 7, MaxFiles: 3}
	want.ServerNotices.SystemMXIDLocalpart = "notices"
	want.ServerNotices.AutoJoin = true
	want.Support = &SupportInfo{Page: "https://example.org/help"}
	want.AppServiceConfigFiles = []string{filepath.Join(dir, "appservices/bridge.yaml"), "/etc/matrix/irc.yaml"}
	if !reflect.DeepEqual(*cfg, want) {
		t.Fatalf("loaded\n%+v\nwant\n%+v", *cfg, want)
	}
}

// TestEnvironmentWinsOverFile: every MATRIX_* variable beats the file.
func TestEnvironmentWinsOverFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "custom.yaml")
	os.WriteFile(path, []byte("server: {server_name: file.example, listen: 127.0.0.1:1}\n"+
		"registration: {mode: open, shared_secret: fromfile}\nlogging: {level: debug}\n"+
		"federation: {enabled: true, listen: 127.0.0.1:3, tls_cert: nope.pem, tls_key: nope.key, extra_ca_file: nope-ca.pem}\n"), 0o600)
	cert, key := writeKeyPair(t, dir, "ec-sec1", false)
	ca := writeCA(t, dir)
	cfg, got, err := Load(envOf(map[string]string{
		EnvConfig: path, EnvDataDir: dir,
		EnvServerName: "env.example", EnvListen: "127.0.0.1:2", EnvPublicBaseURL: "https://m.env.example",
		EnvRegistration: "token", EnvRegistrationSharedSecret: "fromenv", EnvLogLevel: "warn",
		EnvFederation: "disabled", EnvFederationListen: "0.0.0.0:8448", EnvTLSCert: cert, EnvTLSKey: filepath.Base(key),
		EnvFederationCA: ca, EnvFederationAllowPrivate: "true",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got != path {
		t.Fatalf("path = %s", got)
	}
	if cfg.Server.Name != "env.example" || cfg.Server.Listen != "127.0.0.1:2" || cfg.Server.PublicBaseURL != "https://m.env.example" ||
		cfg.Registration.Mode != "token" || cfg.Registration.SharedSecret != "fromenv" || cfg.Logging.Level != "warn" {
		t.Fatalf("env did not win: %+v", cfg)
	}
	// A relative MATRIX_TLS_KEY is under the data dir, like the file's paths.
	f := cfg.Federation
	if f.Enabled || f.Listen != "0.0.0.0:8448" || f.TLSCert != cert || f.TLSKey != key || f.ExtraCAFile != ca || !f.AllowPrivateAddresses {
		t.Fatalf("federation env did not win: %+v", f)
	}
	if cfg.BaseURL("ignored", false) != "https://m.env.example/" {
		t.Fatalf("BaseURL = %s", cfg.BaseURL("ignored", false))
	}
	os.WriteFile(path, []byte("server: {server_name: file.example}\nregistration: {mode: open}\n"), 0o600)
	cfg2, _, err := Load(envOf(map[string]string{EnvConfig: path, EnvDataDir: dir}))
	if err != nil || cfg2.Server.Name != "file.example" || cfg2.Registration.Mode != "open" {
		t.Fatalf("file values = %+v, %v", cfg2, err)
	}
	if cfg2.BaseURL("h:1", true) != "https://h:1/" {
		t.Fatalf("derived BaseURL = %s", cfg2.BaseURL("h:1", true))
	}
}

// TestBooleanSpellings: yes/no settings take the same spellings in the
// environment and in the file, in any case.
func TestBooleanSpellings(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"true", true}, {"True", true}, {"1", true}, {"yes", true}, {"YES", true}, {"enabled", true}, {"Enabled", true}, {"on", true},
		{"false", false}, {"FALSE", false}, {"0", false}, {"no", false}, {"No", false}, {"disabled", false}, {"DISABLED", false}, {"off", false},
	} {
		// Each setting starts from the opposite value, so a spelling that
		// is ignored fails.
		start := "federation: {enabled: " + map[bool]string{true: "false", false: "true"}[tc.want] +
			", allow_private_addresses: " + map[bool]string{true: "false", false: "true"}[tc.want] + "}\n"
		cfg, err := loadYAML(t, start, map[string]string{EnvFederation: tc.in, EnvFederationAllowPrivate: tc.in})
		if err != nil || cfg.Federation.Enabled != tc.want || cfg.Federation.AllowPrivateAddresses != tc.want {
			t.Errorf("env %q: %+v, %v", tc.in, cfg, err)
		}
		cfg, err = loadYAML(t, "federation: {enabled: '"+tc.in+"', allow_private_addresses: "+tc.in+"}\n"+
			"media: {url_preview_enabled: "+tc.in+"}\nserver_notices: {auto_join: "+tc.in+"}\n", nil)
		if err != nil || cfg.Federation.Enabled != tc.want || cfg.Federation.AllowPrivateAddresses != tc.want ||
			cfg.Media.URLPreviewEnabled != tc.want || cfg.ServerNotices.AutoJoin != tc.want {
			t.Errorf("file %q: %+v, %v", tc.in, cfg, err)
		}
	}
	for _, name := range []string{EnvFederation, EnvFederationAllowPrivate} {
		if _, err := loadYAML(t, "", map[string]string{name: "sometimes"}); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=sometimes: err = %v", name, err)
		}
	}
	if _, err := loadYAML(t, "media:\n  url_preview_enabled: maybe\n", nil); err == nil ||
		!strings.Contains(err.Error(), "line 2: media.url_preview_enabled") {
		t.Errorf("url_preview_enabled: maybe: err = %v", err)
	}
}

func TestValidationMessages(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"server: {server_name: 'bad name'}\n", "server.server_name"},
		{"server: {listen: nonsense}\n", "server.listen"},
		{"registration: sometimes\n", "registration.mode"},
		{"registration: {mode: sometimes}\n", "registration.mode"},
		{"logging: {level: loud}\n", "logging.level"},
		{"log_level: loud\n", "logging.level"},
		{"log_level: loud\n", "log_level -> logging.level"},
		{"rooms: {default_room_version: '99'}\n", "rooms.default_room_version"},
		{"rooms: {default_room_version: org.matrix.msc4242.12}\n", "rooms.default_room_version"},
		{"server: {public_baseurl: ftp://x}\n", "server.public_baseurl"},
		{"registration: {bcrypt_cost: 2}\n", "registration.bcrypt_cost"},
		{"server: {max_request_body_bytes: 10}\n", "server.max_request_body_bytes"},
		{"server: {http: {max_connections: 0}}\n", "server.http.max_connections"},
		{"server: {http: {idle_timeout: 1ms}}\n", "server.http.idle_timeout"},
		{"media: {thumbnail_memory_bytes: 1}\n", "media.thumbnail_memory_bytes"},
		{"media: {quota_bytes_per_user: -1}\n", "media.quota_bytes_per_user"},
		{"media: {url_preview_ip_range_whitelist: [10.0.0.0/33]}\n", "media.url_preview_ip_range_whitelist"},
		{"push: {ip_range_blacklist: [nonsense]}\n", "push.ip_range_blacklist"},
		{"voip: {turn_uris: ['http://turn']}\n", "voip.turn_uris"},
		{"logging: {max_files: 0}\n", "logging.max_files"},
		{"server: {listen: [1, 2]}\n", "line 1"},
		{"support: {}\n", "support"},
		{"support: {contacts: [{role: m.role.admin}]}\n", "support contact"},
		{"server: {trusted_proxies: [10.0.0.0/33]}\n", "server.trusted_proxies"},
		{"server: {trusted_proxies: [proxy.example.org]}\n", "server.trusted_proxies"},
		{"registration: {rc_registration: {per_second: 0}}\n", "registration.rc_registration"},
		{"registration: {rc_registration: {burst_count: 0}}\n", "registration.rc_registration"},
		{"server_notices: {system_mxid_localpart: 'Big Boss'}\n", "system_mxid_localpart"},
		{"server_notices: {room_avatar_url: 'https://x/a.png'}\n", "room_avatar_url"},
		{"federation: {key_notaries: ['not a server']}\n", "federation.key_notaries"},
		{"federation: {key_validity_period: 1m}\n", "federation.key_validity_period"},
		{"federation: {inbound_rate_limit: {per_second: 0}}\n", "federation.inbound_rate_limit"},
		{"federation: {inbound_rate_limit: {burst_count: 0}}\n", "federation.inbound_rate_limit"},
		{"presence: {enabled: maybe}\n", "presence"},
		{"app_service_config_files: ['  ']\n", "app_service_config_files"},
		{"app_service_config_files: [a.yaml, a.yaml]\n", "twice"},
		{"app_service_config_files: [bridges/]\n", "directory"},
		{"[1, 2]\n", "mapping"},
	} {
		_, err := loadYAML(t, tc.yaml, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want mention of %q", tc.yaml, err, tc.want)
		}
	}
	if _, err := loadYAML(t, "", map[string]string{EnvRegistration: "bogus"}); err == nil {
		t.Error("invalid MATRIX_REGISTRATION accepted")
	}
}

// TestUnknownKeys: a typo anywhere stops the server, naming the full key
// and its line; so does a key given twice.
func TestUnknownKeys(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"no_such_key: 1\n", "line 1: unknown key no_such_key"},
		{"server:\n  listn: 1.2.3.4:5\n", "line 2: unknown key server.listn"},
		{"server: {http: {max_conns: 3}}\n", "unknown key server.http.max_conns"},
		{"federation:\n  enabled: true\n  tls_certificate: x.pem\n", "line 3: unknown key federation.tls_certificate"},
		{"server_notices: {no_such: 1}\n", "unknown key server_notices.no_such"},
		{"support: {contacts: [{role: m.role.admin, phone: 1}]}\n", "unknown key support.contacts[0].phone"},
		{"registration: {mode: open, rc_login: {per_second: 1}}\n", "unknown key registration.rc_login"},
		{"media: {path: a, path: b}\n", "media.path is given twice"},
		{"listen: 1.2.3.4:5\nlisten: 1.2.3.4:5\n", "line 2: listen is given twice (first on line 1)"},
		{"server: {}\nserver: {}\n", "server is given twice"},
	} {
		_, err := loadYAML(t, tc.yaml, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

// TestEmptyFileAndSections: an empty file, and sections whose keys are all
// commented out, mean the defaults.
func TestEmptyFileAndSections(t *testing.T) {
	for _, yaml := range []string{"", "# nothing\n", "~\n", "server:\nmedia:\n# path: x\npush:\nregistration:\n"} {
		cfg, err := loadYAML(t, yaml, nil)
		if err != nil {
			t.Fatalf("%q: %v", yaml, err)
		}
		want := Default()
		if cfg.Server.Listen != want.Server.Listen || cfg.Registration.Mode != want.Registration.Mode ||
			cfg.Media.MaxUploadBytes != want.Media.MaxUploadBytes || len(cfg.Notices) != 0 {
			t.Fatalf("%q: %+v", yaml, cfg)
		}
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
	if cfg.Registration.SharedSecret == "" || len(cfg.Notices) != 0 {
		t.Fatalf("secret %q, notices %v", cfg.Registration.SharedSecret, cfg.Notices)
	}
	// The file spells out the defaults: parsed, it is Default() with the
	// server name and the secret.
	want := Default()
	want.Server.Name = "example.org"
	want.Registration.SharedSecret = cfg.Registration.SharedSecret
	if want.Federation.KeyNotaries == nil {
		want.Federation.KeyNotaries = []string{} // written as []
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("generated file parses to\n%+v\nwant\n%+v", cfg, want)
	}
	for _, section := range []string{"\nserver:\n", "\ndatabase:\n", "\nregistration:\n", "\nrooms:\n", "\nmedia:\n",
		"\npush:\n", "\nvoip:\n", "\nfederation:\n", "\npresence:\n", "\nlogging:\n", "\nserver_notices:\n"} {
		if !strings.Contains(string(raw), section) {
			t.Errorf("generated file lacks section %q", strings.TrimSpace(section))
		}
	}
	cfg.Server.DataDir = "/x"
	cfg.fillPaths()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	raw2, _ := Generate("example.org")
	if bytes.Equal(raw, raw2) {
		t.Fatal("two generated files share a shared secret")
	}
}

// server.trusted_proxies: CIDRs and single addresses; [] trusts no one; a
// file without the key keeps the defaults (files written before it existed).
func TestTrustedProxies(t *testing.T) {
	cfg := Default()
	if err := Parse([]byte("server:\n  trusted_proxies: [203.0.113.7, \"2001:db8::/32\", \"::ffff:198.51.100.1\"]\n"), &cfg); err != nil {
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
	if err := Parse([]byte("server: {trusted_proxies: []}\n"), &none); err != nil || len(none.TrustedProxyPrefixes()) != 0 {
		t.Fatalf("[] = %v, %v", none.Server.TrustedProxies, err)
	}
	old := Default()
	if err := Parse([]byte("server: {server_name: x.example}\n"), &old); err != nil || !slices.Equal(old.Server.TrustedProxies, DefaultTrustedProxies()) {
		t.Fatalf("defaults lost: %v, %v", old.Server.TrustedProxies, err)
	}
	partial := Default()
	if err := Parse([]byte("registration: {rc_registration: {burst_count: 3}}\n"), &partial); err != nil ||
		partial.Registration.RCRegistration != (RateLimit{PerSecond: 0.17, BurstCount: 3}) {
		t.Fatalf("partial rc_registration = %+v, %v", partial.Registration.RCRegistration, err)
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
		cfg, err := loadYAML(t, "server: {server_name: example.org}\n"+yaml, nil)
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

// TestAppServiceConfigFiles: Synapse's top-level key is accepted for good;
// the paths are resolved like the others, the files are not read.
func TestAppServiceConfigFiles(t *testing.T) {
	cfg, err := loadYAML(t, "app_service_config_files:\n  - bridges/whatsapp.yaml\n  - /etc/matrix/irc.yaml\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.AppServiceConfigFiles; len(got) != 2 || !filepath.IsAbs(got[0]) || !strings.HasSuffix(got[0], "bridges/whatsapp.yaml") ||
		got[1] != "/etc/matrix/irc.yaml" || len(cfg.Notices) != 0 {
		t.Fatalf("app_service_config_files = %v, notices %v", got, cfg.Notices)
	}
}
