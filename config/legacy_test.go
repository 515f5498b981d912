package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// legacySamples is a non-default value for every old flat key.
var legacySamples = map[string]string{
	"server_name":                       "other.example",
	"data_dir":                          "/srv/matrix",
	"listen":                            "127.0.0.1:9999",
	"public_baseurl":                    "https://m.example.org",
	"well_known_server":                 "example.org:443",
	"signing_key_path":                  "keys/signing.key",
	"max_request_body_bytes":            "1048576",
	"shutdown_timeout":                  "3s",
	"trusted_proxies":                   "[203.0.113.1]",
	"http_read_header_timeout":          "5s",
	"http_read_body_timeout":            "6s",
	"http_idle_timeout":                 "7s",
	"http_max_connections":              "12",
	"database_path":                     "db/x.db",
	"media_path":                        "m",
	"max_upload_bytes":                  "1234",
	"media_quota_bytes_per_user":        "99",
	"thumbnail_memory_bytes":            "33554432",
	"url_preview_enabled":               "true",
	"url_preview_ip_range_blacklist":    "[10.9.0.0/16]",
	"url_preview_ip_range_whitelist":    "[10.8.0.0/16]",
	"registration":                      "open",
	"registration_shared_secret":        "s3cret",
	"rc_registration":                   "{per_second: 1, burst_count: 2}",
	"bcrypt_cost":                       "12",
	"refreshable_access_token_lifetime": "2m",
	"default_room_version":              `"12"`,
	"ip_range_blacklist":                "[10.7.0.0/16]",
	"ip_range_whitelist":                "[10.6.0.0/16]",
	"turn_uris":                         `["turn:t.example.org"]`,
	"turn_shared_secret":                "ts",
	"turn_user_lifetime":                "2h",
	"log_level":                         "debug",
	"log_dir":                           "/var/log/mhs",
	"log_max_size_mb":                   "7",
	"log_max_files":                     "3",
}

// nested writes value at a dotted key path as a YAML document.
func nested(path, value string) string {
	parts := strings.Split(path, ".")
	var b strings.Builder
	for i, p := range parts {
		b.WriteString(strings.Repeat("  ", i) + p + ":")
		if i < len(parts)-1 {
			b.WriteString("\n")
		}
	}
	return b.String() + " " + value + "\n"
}

// TestLegacyKeysLoadIntoSections: each old flat key loads exactly as its
// new sectioned key does, with one notice naming the new key.
func TestLegacyKeysLoadIntoSections(t *testing.T) {
	if len(legacySamples) != len(legacyKeys) {
		t.Fatalf("%d samples for %d legacy keys: add the missing ones", len(legacySamples), len(legacyKeys))
	}
	for old, newKey := range legacyKeys {
		t.Run(old, func(t *testing.T) {
			value, ok := legacySamples[old]
			if !ok {
				t.Fatalf("no sample for %s", old)
			}
			if _, ok := typeAt(newKey); !ok {
				t.Fatalf("%s maps to %s, which is no key", old, newKey)
			}
			flat := Default()
			if err := Parse([]byte(old+": "+value+"\n"), &flat); err != nil {
				t.Fatal(err)
			}
			want := []Notice{{Key: old, NewKey: newKey, Line: 1}}
			if !reflect.DeepEqual(flat.Notices, want) {
				t.Fatalf("notices = %v, want %v", flat.Notices, want)
			}
			if msg := flat.Notices[0].String(); !strings.Contains(msg, newKey) || !strings.Contains(msg, old) {
				t.Fatalf("notice %q does not name %s and %s", msg, old, newKey)
			}
			sectioned := Default()
			if err := Parse([]byte(nested(newKey, value)), &sectioned); err != nil {
				t.Fatal(err)
			}
			if len(sectioned.Notices) != 0 {
				t.Fatalf("sectioned key gave notices %v", sectioned.Notices)
			}
			flat.Notices = nil
			if !reflect.DeepEqual(flat, sectioned) {
				t.Fatalf("%s: %+v\n%s: %+v", old, flat, newKey, sectioned)
			}
			if reflect.DeepEqual(flat, Default()) {
				t.Fatalf("sample %q for %s left the defaults unchanged", value, old)
			}
		})
	}
}

// TestAllLegacyKeysTogether: a flat file with every old key loads and
// validates, one notice per key (MATRIX_DATA_DIR wins over its data_dir).
func TestAllLegacyKeysTogether(t *testing.T) {
	var b strings.Builder
	for old, v := range legacySamples {
		b.WriteString(old + ": " + v + "\n")
	}
	cfg, err := loadYAML(t, b.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Notices) != len(legacyKeys) {
		t.Fatalf("%d notices for %d keys", len(cfg.Notices), len(legacyKeys))
	}
	if cfg.Server.Name != "other.example" || cfg.Registration.Mode != RegistrationOpen || cfg.Server.HTTP.MaxConnections != 12 ||
		cfg.Logging.Level != "debug" || cfg.Database.Path != filepath.Join(cfg.Server.DataDir, "db/x.db") {
		t.Fatalf("flat file loaded as %+v", cfg)
	}
}

// TestLegacyAndNewKeyTogether: an old key next to its new one is fine when
// they agree (by value, not by spelling) and an error naming both when not.
func TestLegacyAndNewKeyTogether(t *testing.T) {
	for _, yaml := range []string{
		"listen: 127.0.0.1:1\nserver: {listen: 127.0.0.1:1}\n",
		"shutdown_timeout: 60s\nserver: {shutdown_timeout: 1m}\n",
		"url_preview_enabled: yes\nmedia: {url_preview_enabled: true}\n",
		"rc_registration: {per_second: 1, burst_count: 2}\nregistration: {rc_registration: {burst_count: 2, per_second: 1.0}}\n",
		"registration: open\n", // the old mode, alone
	} {
		cfg, err := loadYAML(t, yaml, nil)
		if err != nil || len(cfg.Notices) != 1 {
			t.Errorf("%q: %v, notices %v", yaml, err, cfg)
		}
	}
	for _, tc := range []struct{ yaml, want string }{
		{"listen: 127.0.0.1:1\nserver:\n  listen: 127.0.0.1:2\n", "line 1: listen and server.listen (line 3) are both given, with different values"},
		{"http_max_connections: 5\nserver: {http: {max_connections: 6}}\n", "http_max_connections and server.http.max_connections"},
		{"registration_shared_secret: a\nregistration: {shared_secret: b}\n", "registration_shared_secret and registration.shared_secret"},
		{"log_level: debug\nlogging: {level: info}\n", "log_level and logging.level"},
		{"registration: open\nregistration: {mode: open}\n", "registration is given twice"},
		{"server: 5\nlisten: 127.0.0.1:1\n", "server must be a section"},
	} {
		_, err := loadYAML(t, tc.yaml, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

// TestPreviousReleaseFileLoads: a homeserver.yaml written by the flat
// generator of earlier releases (testdata, verbatim) loads to the same
// settings as today's generated file, one notice per key it sets, and is
// left untouched on disk.
func TestPreviousReleaseFileLoads(t *testing.T) {
	fixture, err := os.ReadFile("testdata/homeserver-flat.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "homeserver.yaml")
	os.WriteFile(path, fixture, 0o600)
	cfg, _, err := Load(envOf(map[string]string{EnvDataDir: dir}))
	if err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(path)
	if string(after) != string(fixture) {
		t.Fatal("the old file was rewritten")
	}
	if cfg.Server.Name != "example.org" || cfg.Registration.SharedSecret != "g6OeTnIxUCf30TfAU81qYkk5EdA_E8INBd0IJ6eVrLA" {
		t.Fatalf("server name %q, secret %q", cfg.Server.Name, cfg.Registration.SharedSecret)
	}
	// 23 old keys are set in that file (the rest are comments; its
	// server_notices block is where it was).
	if len(cfg.Notices) != 23 {
		t.Fatalf("%d notices: %v", len(cfg.Notices), cfg.Notices)
	}
	for _, n := range cfg.Notices {
		if legacyKeys[n.Key] != n.NewKey || n.Line < 1 {
			t.Errorf("notice %+v", n)
		}
	}
	want := Default()
	want.Server.Name = "example.org"
	want.Server.DataDir = dir
	want.Registration.SharedSecret = cfg.Registration.SharedSecret
	want.fillPaths()
	got := *cfg
	got.Notices = nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("old file loads as\n%+v\nwant\n%+v", got, want)
	}
}
