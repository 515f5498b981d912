// Package config holds the homeserver's settings: a struct of sections with
// defaults, a YAML file written on first start, environment overrides that win
// over the file, and validation. Files written before the sections existed
// (flat keys at the top level) still load; see legacy.go.
package config

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib"

	"matrixhs/internal/safenet"
)

// Registration modes.
const (
	RegistrationDisabled = "disabled"
	RegistrationToken    = "token"
	RegistrationOpen     = "open"
)

// Environment variables that override the file. Other tools (conformance
// suites, benchmarks, deployment scripts) start the server through them:
// keep the names exact.
const (
	EnvConfig                   = "MATRIX_CONFIG"
	EnvDataDir                  = "MATRIX_DATA_DIR"
	EnvServerName               = "MATRIX_SERVER_NAME"
	EnvListen                   = "MATRIX_LISTEN"
	EnvPublicBaseURL            = "MATRIX_PUBLIC_BASEURL"
	EnvRegistration             = "MATRIX_REGISTRATION"
	EnvRegistrationSharedSecret = "MATRIX_REGISTRATION_SHARED_SECRET"
	EnvLogLevel                 = "MATRIX_LOG_LEVEL"

	EnvFederation             = "MATRIX_FEDERATION" // enabled | disabled
	EnvFederationListen       = "MATRIX_FEDERATION_LISTEN"
	EnvTLSCert                = "MATRIX_TLS_CERT"
	EnvTLSKey                 = "MATRIX_TLS_KEY"
	EnvFederationCA           = "MATRIX_FEDERATION_CA"
	EnvFederationAllowPrivate = "MATRIX_FEDERATION_ALLOW_PRIVATE"
)

// Config is the whole configuration, one field per section of the file.
// Empty paths mean "the default under Server.DataDir".
type Config struct {
	Server       ServerConfig       `yaml:"server"`
	Database     DatabaseConfig     `yaml:"database"`
	Registration RegistrationConfig `yaml:"registration"`
	Rooms        RoomsConfig        `yaml:"rooms"`
	Media        MediaConfig        `yaml:"media"`
	Push         PushConfig         `yaml:"push"`
	VoIP         VoIPConfig         `yaml:"voip"`
	Federation   FederationConfig   `yaml:"federation"`
	Presence     PresenceConfig     `yaml:"presence"`
	Logging      LoggingConfig      `yaml:"logging"`
	// ServerNotices configures messages from the server to its users
	// (Synapse's server_notices block and key names).
	ServerNotices ServerNotices `yaml:"server_notices"`
	// Support is served as /.well-known/matrix/support (spec v1.10): who to
	// contact about this server. Unset: 404.
	Support *SupportInfo `yaml:"support,omitempty"`
	// AppServiceConfigFiles are the registration files of application
	// services (Synapse's top-level key, kept at the top level for good),
	// read by package appservice at start.
	AppServiceConfigFiles []string `yaml:"app_service_config_files,omitempty"`

	// Notices is what loading the file has to tell the admin (old flat keys
	// read into their sections); the server logs them at startup.
	Notices []Notice `yaml:"-"`
}

// ServerConfig is the "server" section: identity, addresses, the data dir
// and the HTTP front door.
type ServerConfig struct {
	// Name is the domain in user IDs (@alice:name).
	Name string `yaml:"server_name"`
	// Listen is the client API address (host:port).
	Listen        string `yaml:"listen"`
	PublicBaseURL string `yaml:"public_baseurl,omitempty"`
	// WellKnownServer, when set, is served as /.well-known/matrix/server
	// (federation delegation, e.g. "example.org:443").
	WellKnownServer string `yaml:"well_known_server,omitempty"`
	DataDir         string `yaml:"data_dir,omitempty"`
	SigningKeyPath  string `yaml:"signing_key_path,omitempty"`
	// MaxRequestBodyBytes bounds every client-API JSON body.
	MaxRequestBodyBytes int64 `yaml:"max_request_body_bytes"`
	// ShutdownTimeout bounds how long in-flight requests may take on SIGTERM.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// TrustedProxies are the peers (CIDRs or addresses) whose forwarding
	// headers are believed for the client's address (limits, last seen).
	TrustedProxies []string   `yaml:"trusted_proxies"`
	HTTP           HTTPConfig `yaml:"http"`
}

// HTTPConfig bounds HTTP connections. A request's headers must arrive within
// ReadHeaderTimeout; its body within ReadBodyTimeout plus one second for
// every 32 KiB its size allows (a 50 MiB upload gets ~27 minutes more); an
// idle keep-alive connection is closed after IdleTimeout. Long-polls are not
// limited: once its body is read a request may take as long as it needs. At
// most MaxConnections are served at once; more wait to be accepted.
type HTTPConfig struct {
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadBodyTimeout   time.Duration `yaml:"read_body_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	MaxConnections    int           `yaml:"max_connections"`
}

// RegistrationConfig is the "registration" section: who may sign up, and
// how passwords and tokens of new and existing accounts are handled.
type RegistrationConfig struct {
	// Mode is disabled, token or open.
	Mode string `yaml:"mode"`
	// SharedSecret authenticates /_synapse/admin/v1/register.
	SharedSecret string `yaml:"shared_secret"`
	// RCRegistration limits new registration sessions per client address.
	RCRegistration RateLimit `yaml:"rc_registration"`
	// BcryptCost is the work factor of password hashes.
	BcryptCost int `yaml:"bcrypt_cost"`
	// RefreshableAccessTokenLifetime is the lifetime of access tokens issued
	// together with a refresh token (clients that ask for refresh_token).
	RefreshableAccessTokenLifetime time.Duration `yaml:"refreshable_access_token_lifetime"`
}

// RoomsConfig is the "rooms" section.
type RoomsConfig struct {
	DefaultRoomVersion string `yaml:"default_room_version"`
}

// MediaConfig is the "media" section: the media store, uploads, thumbnails
// and URL previews.
type MediaConfig struct {
	Path string `yaml:"path,omitempty"`
	// MaxUploadBytes bounds one media upload.
	MaxUploadBytes int64 `yaml:"max_upload_bytes"`
	// QuotaBytesPerUser bounds the total size of a user's uploads (0: unlimited).
	QuotaBytesPerUser int64 `yaml:"quota_bytes_per_user"`
	// ThumbnailMemoryBytes is the memory thumbnailing may use at once, the
	// decoded image and its reductions included; an image that alone needs
	// more (judged from its header: size, bit depth, components) is stored
	// without thumbnails. The default admits 4:2:0 JPEG photos up to 32
	// megapixels, progressive ones of about 13.
	ThumbnailMemoryBytes int64 `yaml:"thumbnail_memory_bytes"`
	// URLPreviewEnabled turns on /preview_url, which makes the server fetch
	// URLs that users send it.
	URLPreviewEnabled bool `yaml:"url_preview_enabled"`
	// URLPreviewIPRangeBlacklist adds ranges (CIDR) that previews never
	// fetch from to the built-in list (loopback, private, link-local, ...);
	// URLPreviewIPRangeWhitelist exempts ranges from both (Synapse's names).
	URLPreviewIPRangeBlacklist []string `yaml:"url_preview_ip_range_blacklist,omitempty"`
	URLPreviewIPRangeWhitelist []string `yaml:"url_preview_ip_range_whitelist,omitempty"`
}

// PushConfig is the "push" section. IPRangeBlacklist and IPRangeWhitelist
// do for push gateways (hosts chosen by users) what the url_preview_* lists
// do for previews. An internal push gateway needs its range whitelisted.
type PushConfig struct {
	IPRangeBlacklist []string `yaml:"ip_range_blacklist,omitempty"`
	IPRangeWhitelist []string `yaml:"ip_range_whitelist,omitempty"`
}

// VoIPConfig is the "voip" section: TURN for calls (GET /voip/turnServer),
// the TURN server URIs and the secret shared with it (coturn's
// static-auth-secret); credentials are valid for TURNUserLifetime. Unset URIs
// or secret: no TURN.
type VoIPConfig struct {
	TURNURIs         []string      `yaml:"turn_uris,omitempty"`
	TURNSharedSecret string        `yaml:"turn_shared_secret,omitempty"`
	TURNUserLifetime time.Duration `yaml:"turn_user_lifetime"`
}

// PresenceConfig is Synapse's "presence" section.
type PresenceConfig struct {
	// Enabled false turns presence off: updates are accepted and ignored,
	// everyone shows offline, and no presence goes to or comes from other
	// servers.
	Enabled bool `yaml:"enabled"`
}

// LoggingConfig is the "logging" section. MaxSizeMB and MaxFiles bound the
// rotated log files under Dir.
type LoggingConfig struct {
	Level     string `yaml:"level"`
	Dir       string `yaml:"dir,omitempty"`
	MaxSizeMB int    `yaml:"max_size_mb"`
	MaxFiles  int    `yaml:"max_files"`
}

// SupportInfo is the /.well-known/matrix/support document.
type SupportInfo struct {
	Contacts []SupportContact `yaml:"contacts,omitempty" json:"contacts,omitempty"`
	Page     string           `yaml:"support_page,omitempty" json:"support_page,omitempty"`
}

// SupportContact is one way to reach the server's admins or security team.
type SupportContact struct {
	Role     string `yaml:"role" json:"role"` // m.role.admin or m.role.security
	MatrixID string `yaml:"matrix_id,omitempty" json:"matrix_id,omitempty"`
	Email    string `yaml:"email_address,omitempty" json:"email_address,omitempty"`
}

// ServerNotices configures server notices: the user they come from and the
// room each recipient gets them in. An empty SystemMXIDLocalpart turns them
// off.
type ServerNotices struct {
	SystemMXIDLocalpart   string `yaml:"system_mxid_localpart"`
	SystemMXIDDisplayName string `yaml:"system_mxid_display_name"`
	SystemMXIDAvatarURL   string `yaml:"system_mxid_avatar_url"`
	RoomName              string `yaml:"room_name"`
	RoomAvatarURL         string `yaml:"room_avatar_url"`
	RoomTopic             string `yaml:"room_topic"`
	// AutoJoin joins recipients to their notices room instead of inviting them.
	AutoJoin bool `yaml:"auto_join"`
}

// ServerNoticesUserID is the user server notices come from, "" when off.
func (c *Config) ServerNoticesUserID() string {
	if c.ServerNotices.SystemMXIDLocalpart == "" {
		return ""
	}
	return "@" + c.ServerNotices.SystemMXIDLocalpart + ":" + c.Server.Name
}

// Default returns the built-in defaults. DataDir is left for Load to fill.
func Default() Config {
	return Config{
		Server: ServerConfig{
			Name:                "matrix.local",
			Listen:              "0.0.0.0:8008",
			MaxRequestBodyBytes: 8 << 20,
			ShutdownTimeout:     10 * time.Second,
			TrustedProxies:      DefaultTrustedProxies(),
			HTTP: HTTPConfig{
				ReadHeaderTimeout: 20 * time.Second,
				ReadBodyTimeout:   60 * time.Second,
				IdleTimeout:       90 * time.Second,
				MaxConnections:    1000,
			},
		},
		Registration: RegistrationConfig{
			Mode: RegistrationDisabled,
			// Synapse's sustained rate; a burst of 50 rather than its 3, so a
			// group signing up behind one NAT and conformance suites (dozens
			// of users from one address) pass.
			RCRegistration:                 RateLimit{PerSecond: 0.17, BurstCount: 50},
			BcryptCost:                     10,
			RefreshableAccessTokenLifetime: 5 * time.Minute,
		},
		Database: DatabaseConfig{Engine: EngineSQLite, MaxConnections: DefaultDatabaseMaxConnections},
		Rooms:    RoomsConfig{DefaultRoomVersion: string(gomatrixserverlib.RoomVersionV11)},
		Media: MediaConfig{
			MaxUploadBytes:       50 << 20,
			ThumbnailMemoryBytes: 100 << 20,
		},
		VoIP:       VoIPConfig{TURNUserLifetime: time.Hour},
		Federation: DefaultFederation(),
		Presence:   PresenceConfig{Enabled: true},
		Logging:    LoggingConfig{Level: "info", MaxSizeMB: 20, MaxFiles: 5},
		ServerNotices: ServerNotices{
			SystemMXIDLocalpart:   "_server",
			SystemMXIDDisplayName: "Server Notices",
			RoomName:              "Server Notices",
		},
	}
}

// DefaultDataDir is /data when it exists and is writable, else ./data.
func DefaultDataDir() string {
	if st, err := os.Stat("/data"); err == nil && st.IsDir() && writable("/data") {
		return "/data"
	}
	return "data"
}

func writable(dir string) bool {
	f, err := os.CreateTemp(dir, ".writetest-*")
	if err != nil {
		return false
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	return true
}

// Getenv is how Load reads the environment; tests pass a map.
type Getenv func(string) string

// Load resolves the data dir and config path, reads the config file (writing
// a fresh one with a random shared secret when it does not exist), applies
// the environment overrides and validates the result. The returned path is
// the config file that was read or written; cfg.Notices holds what the
// server should log about the file (old keys).
func Load(getenv Getenv) (*Config, string, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	dataDir := getenv(EnvDataDir)
	if dataDir == "" {
		dataDir = DefaultDataDir()
	}
	path := getenv(EnvConfig)
	if path == "" {
		path = filepath.Join(dataDir, "homeserver.yaml")
	}
	cfg := Default()
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := Parse(raw, &cfg); err != nil {
			return nil, path, fmt.Errorf("config %s: %w", path, err)
		}
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, path, fmt.Errorf("creating config dir: %w", err)
		}
		generated, err := Generate(cfg.Server.Name)
		if err != nil {
			return nil, path, err
		}
		if err := writeNew(path, generated); err != nil {
			return nil, path, err
		}
		if err := Parse(generated, &cfg); err != nil {
			return nil, path, fmt.Errorf("generated config: %w", err)
		}
	default:
		return nil, path, fmt.Errorf("reading config: %w", err)
	}
	if cfg.Server.DataDir == "" || getenv(EnvDataDir) != "" {
		cfg.Server.DataDir = dataDir
	}
	if err := cfg.applyEnv(getenv); err != nil {
		return nil, path, err
	}
	cfg.fillPaths()
	if err := cfg.Validate(); err != nil {
		return nil, path, fmt.Errorf("config %s: %w%s", path, err, cfg.noticeHint())
	}
	return &cfg, path, nil
}

// noticeHint reminds the admin, when the file is rejected, which of its old
// keys were read under new names (the errors name the new ones).
func (c *Config) noticeHint() string {
	if len(c.Notices) == 0 {
		return ""
	}
	moved := make([]string, len(c.Notices))
	for i, n := range c.Notices {
		moved[i] = n.Key + " -> " + n.NewKey
	}
	return "\n(old keys in this file were read as: " + strings.Join(moved, ", ") + ")"
}

func (c *Config) fillPaths() {
	under := func(p *string, def string) {
		if *p == "" {
			*p = def
		}
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(c.Server.DataDir, *p)
		}
	}
	under(&c.Database.Path, "homeserver.db")
	under(&c.Media.Path, "media")
	under(&c.Server.SigningKeyPath, "signing.key")
	under(&c.Logging.Dir, "logs")
	under(&c.Federation.TLSCert, "")
	under(&c.Federation.TLSKey, "")
	under(&c.Federation.ExtraCAFile, "")
	for i, p := range c.AppServiceConfigFiles {
		// Blank entries and directories stay as written for Validate to name.
		if strings.TrimSpace(p) != "" && !strings.HasSuffix(p, "/") {
			under(&c.AppServiceConfigFiles[i], "")
		}
	}
}

// PreviewFilter is the address filter of URL previews.
func (c *Config) PreviewFilter() *safenet.Filter {
	return filter(c.Media.URLPreviewIPRangeBlacklist, c.Media.URLPreviewIPRangeWhitelist)
}

// OutboundFilter is the address filter of push gateway requests.
func (c *Config) OutboundFilter() *safenet.Filter {
	return filter(c.Push.IPRangeBlacklist, c.Push.IPRangeWhitelist)
}

// filter builds an address filter from validated range lists.
func filter(deny, allow []string) *safenet.Filter {
	d, _ := safenet.ParsePrefixes(deny)
	a, _ := safenet.ParsePrefixes(allow)
	return safenet.NewFilter(d, a)
}

// BaseURL is the public client-API URL: the configured one, else derived from
// the request's host and scheme.
func (c *Config) BaseURL(host string, https bool) string {
	if c.Server.PublicBaseURL != "" {
		return strings.TrimRight(c.Server.PublicBaseURL, "/") + "/"
	}
	scheme := "http"
	if https {
		scheme = "https"
	}
	return scheme + "://" + host + "/"
}

// RandomSecret returns n random bytes as unpadded URL-safe base64.
func RandomSecret(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// writeNew creates path with content, never replacing an existing file.
func writeNew(path string, content []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := f.Write(content); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	return f.Close()
}
