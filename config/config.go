// Package config holds the homeserver's settings: a plain struct with
// defaults, a YAML file written on first start, environment overrides that win
// over the file, and validation.
package config

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"gopkg.in/yaml.v3"

	"matrixhs/internal/safenet"
)

// Registration modes.
const (
	RegistrationDisabled = "disabled"
	RegistrationToken    = "token"
	RegistrationOpen     = "open"
)

// Environment variables that override the file. Other tools (conformance
// suites, benchmarks) start the server through them: keep the names exact.
const (
	EnvConfig                   = "MATRIX_CONFIG"
	EnvDataDir                  = "MATRIX_DATA_DIR"
	EnvServerName               = "MATRIX_SERVER_NAME"
	EnvListen                   = "MATRIX_LISTEN"
	EnvPublicBaseURL            = "MATRIX_PUBLIC_BASEURL"
	EnvRegistration             = "MATRIX_REGISTRATION"
	EnvRegistrationSharedSecret = "MATRIX_REGISTRATION_SHARED_SECRET"
	EnvLogLevel                 = "MATRIX_LOG_LEVEL"
)

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

// Config is the whole configuration. Empty paths mean "the default under DataDir".
type Config struct {
	ServerName    string `yaml:"server_name"`
	DataDir       string `yaml:"data_dir,omitempty"`
	Listen        string `yaml:"listen"`
	PublicBaseURL string `yaml:"public_baseurl,omitempty"`
	// WellKnownServer, when set, is served as /.well-known/matrix/server
	// (federation delegation, e.g. "example.org:443").
	WellKnownServer string `yaml:"well_known_server,omitempty"`
	// Support is served as /.well-known/matrix/support (spec v1.10): who to
	// contact about this server. Unset: 404.
	Support *SupportInfo `yaml:"support,omitempty"`

	DatabasePath   string `yaml:"database_path,omitempty"`
	MediaPath      string `yaml:"media_path,omitempty"`
	SigningKeyPath string `yaml:"signing_key_path,omitempty"`
	LogDir         string `yaml:"log_dir,omitempty"`
	LogLevel       string `yaml:"log_level"`
	// LogMaxSizeMB and LogMaxFiles bound the rotated log files under LogDir.
	LogMaxSizeMB int `yaml:"log_max_size_mb"`
	LogMaxFiles  int `yaml:"log_max_files"`

	Registration             string `yaml:"registration"`
	RegistrationSharedSecret string `yaml:"registration_shared_secret"`

	DefaultRoomVersion string `yaml:"default_room_version"`

	// MaxRequestBodyBytes bounds every client-API JSON body.
	MaxRequestBodyBytes int64 `yaml:"max_request_body_bytes"`
	// BcryptCost is the work factor of password hashes.
	BcryptCost int `yaml:"bcrypt_cost"`
	// RefreshableAccessTokenLifetime is the lifetime of access tokens issued
	// together with a refresh token (clients that ask for refresh_token).
	RefreshableAccessTokenLifetime time.Duration `yaml:"refreshable_access_token_lifetime"`
	// ShutdownTimeout bounds how long in-flight requests may take on SIGTERM.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`

	// HTTP connections. A request's headers must arrive within
	// HTTPReadHeaderTimeout; its body within HTTPReadBodyTimeout plus one
	// second for every 32 KiB its size allows (a 50 MiB upload gets ~27
	// minutes more); an idle keep-alive connection is closed after
	// HTTPIdleTimeout. Long-polls are not limited: once its body is read a
	// request may take as long as it needs. At most HTTPMaxConnections are
	// served at once; more wait to be accepted.
	HTTPReadHeaderTimeout time.Duration `yaml:"http_read_header_timeout"`
	HTTPReadBodyTimeout   time.Duration `yaml:"http_read_body_timeout"`
	HTTPIdleTimeout       time.Duration `yaml:"http_idle_timeout"`
	HTTPMaxConnections    int           `yaml:"http_max_connections"`

	// MaxUploadBytes bounds one media upload.
	MaxUploadBytes int64 `yaml:"max_upload_bytes"`
	// ThumbnailMemoryBytes is the memory thumbnailing may use at once, the
	// decoded image and its reductions included; an image that alone needs
	// more (judged from its header: size, bit depth, components) is stored
	// without thumbnails. The default admits 4:2:0 JPEG photos up to 32
	// megapixels, progressive ones of about 13.
	ThumbnailMemoryBytes int64 `yaml:"thumbnail_memory_bytes"`
	// MediaQuotaBytesPerUser bounds the total size of a user's uploads (0: unlimited).
	MediaQuotaBytesPerUser int64 `yaml:"media_quota_bytes_per_user"`
	// URLPreviewEnabled turns on /preview_url, which makes the server fetch
	// URLs that users send it.
	URLPreviewEnabled bool `yaml:"url_preview_enabled"`
	// URLPreviewIPRangeBlacklist adds ranges (CIDR) that previews never
	// fetch from to the built-in list (loopback, private, link-local, ...);
	// URLPreviewIPRangeWhitelist exempts ranges from both (Synapse's names).
	URLPreviewIPRangeBlacklist []string `yaml:"url_preview_ip_range_blacklist,omitempty"`
	URLPreviewIPRangeWhitelist []string `yaml:"url_preview_ip_range_whitelist,omitempty"`
	// IPRangeBlacklist and IPRangeWhitelist do the same for the server's
	// other outbound requests to user-chosen hosts: push gateways. An
	// internal push gateway needs its range whitelisted.
	IPRangeBlacklist []string `yaml:"ip_range_blacklist,omitempty"`
	IPRangeWhitelist []string `yaml:"ip_range_whitelist,omitempty"`

	// TURN for VoIP calls (GET /voip/turnServer): the TURN server URIs and
	// the secret shared with it (coturn's static-auth-secret); credentials
	// are valid for TURNUserLifetime. Unset URIs or secret: no TURN.
	TURNURIs         []string      `yaml:"turn_uris,omitempty"`
	TURNSharedSecret string        `yaml:"turn_shared_secret,omitempty"`
	TURNUserLifetime time.Duration `yaml:"turn_user_lifetime"`

	// TrustedProxies are the peers (CIDRs or addresses) whose forwarding
	// headers are believed for the client's address (limits, last seen).
	TrustedProxies []string `yaml:"trusted_proxies"`
	// RCRegistration limits new registration sessions per client address.
	RCRegistration RateLimit `yaml:"rc_registration"`
	// ServerNotices configures messages from the server to its users
	// (Synapse's server_notices block and key names).
	ServerNotices ServerNotices `yaml:"server_notices"`
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
	return "@" + c.ServerNotices.SystemMXIDLocalpart + ":" + c.ServerName
}

// Default returns the built-in defaults. DataDir is left for Resolve to fill.
func Default() Config {
	return Config{
		ServerName:                     "matrix.local",
		Listen:                         "0.0.0.0:8008",
		LogLevel:                       "info",
		LogMaxSizeMB:                   20,
		LogMaxFiles:                    5,
		Registration:                   RegistrationDisabled,
		DefaultRoomVersion:             string(gomatrixserverlib.RoomVersionV11),
		MaxRequestBodyBytes:            8 << 20,
		BcryptCost:                     10,
		RefreshableAccessTokenLifetime: 5 * time.Minute,
		ShutdownTimeout:                10 * time.Second,
		HTTPReadHeaderTimeout:          20 * time.Second,
		HTTPReadBodyTimeout:            60 * time.Second,
		HTTPIdleTimeout:                90 * time.Second,
		HTTPMaxConnections:             1000,
		MaxUploadBytes:                 50 << 20,
		ThumbnailMemoryBytes:           100 << 20,
		TURNUserLifetime:               time.Hour,
		TrustedProxies:                 DefaultTrustedProxies(),
		// Synapse's sustained rate; a burst of 50 rather than its 3, so a
		// group signing up behind one NAT and conformance suites (dozens of
		// users from one address) pass.
		RCRegistration: RateLimit{PerSecond: 0.17, BurstCount: 50},
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
// the config file that was read or written.
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
		generated, err := Generate(cfg.ServerName)
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
	if cfg.DataDir == "" || getenv(EnvDataDir) != "" {
		cfg.DataDir = dataDir
	}
	cfg.applyEnv(getenv)
	cfg.fillPaths()
	if err := cfg.Validate(); err != nil {
		return nil, path, fmt.Errorf("config %s: %w", path, err)
	}
	return &cfg, path, nil
}

// Parse reads YAML over cfg, refusing unknown keys so typos are caught.
func Parse(raw []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	// An empty file means "all defaults".
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

func (c *Config) applyEnv(getenv Getenv) {
	set := func(dst *string, name string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	set(&c.ServerName, EnvServerName)
	set(&c.Listen, EnvListen)
	set(&c.PublicBaseURL, EnvPublicBaseURL)
	set(&c.Registration, EnvRegistration)
	set(&c.RegistrationSharedSecret, EnvRegistrationSharedSecret)
	set(&c.LogLevel, EnvLogLevel)
}

func (c *Config) fillPaths() {
	def := func(p *string, name string) {
		if *p == "" {
			*p = filepath.Join(c.DataDir, name)
		} else if !filepath.IsAbs(*p) {
			*p = filepath.Join(c.DataDir, *p)
		}
	}
	def(&c.DatabasePath, "homeserver.db")
	def(&c.MediaPath, "media")
	def(&c.SigningKeyPath, "signing.key")
	def(&c.LogDir, "logs")
}

// Validate checks every field and reports all problems at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if _, _, ok := spec.ParseAndValidateServerName(spec.ServerName(c.ServerName)); !ok {
		bad("server_name %q is not a valid server name (host or host:port)", c.ServerName)
	}
	if c.Support != nil {
		if len(c.Support.Contacts) == 0 && c.Support.Page == "" {
			bad("support needs contacts or a support_page")
		}
		for _, ct := range c.Support.Contacts {
			if ct.Role == "" || (ct.MatrixID == "" && ct.Email == "") {
				bad("each support contact needs a role and a matrix_id or email_address")
			}
		}
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen %q must be host:port: %v", c.Listen, err)
	}
	if c.PublicBaseURL != "" {
		u, err := url.Parse(c.PublicBaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("public_baseurl %q must be an absolute http(s) URL", c.PublicBaseURL)
		}
	}
	switch c.Registration {
	case RegistrationDisabled, RegistrationToken, RegistrationOpen:
	default:
		bad("registration %q must be one of disabled, token, open", c.Registration)
	}
	switch c.LogLevel {
	case "trace", "debug", "info", "warn", "warning", "error":
	default:
		bad("log_level %q must be one of trace, debug, info, warn, error", c.LogLevel)
	}
	if !SupportedRoomVersion(c.DefaultRoomVersion) {
		bad("default_room_version %q is not a room version this server supports", c.DefaultRoomVersion)
	}
	if c.MaxRequestBodyBytes < 64<<10 {
		bad("max_request_body_bytes %d is below the 64 KiB a single event may need", c.MaxRequestBodyBytes)
	}
	if c.BcryptCost < 4 || c.BcryptCost > 31 {
		bad("bcrypt_cost %d must be between 4 and 31", c.BcryptCost)
	}
	if c.RefreshableAccessTokenLifetime < time.Second {
		bad("refreshable_access_token_lifetime %s must be at least 1s", c.RefreshableAccessTokenLifetime)
	}
	if c.LogMaxSizeMB < 1 || c.LogMaxFiles < 1 {
		bad("log_max_size_mb and log_max_files must be at least 1")
	}
	if c.ShutdownTimeout < 0 {
		bad("shutdown_timeout must not be negative")
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"http_read_header_timeout", c.HTTPReadHeaderTimeout}, {"http_read_body_timeout", c.HTTPReadBodyTimeout},
		{"http_idle_timeout", c.HTTPIdleTimeout},
	} {
		if d.v < 100*time.Millisecond {
			bad("%s %s must be at least 100ms", d.key, d.v)
		}
	}
	if c.HTTPMaxConnections < 1 {
		bad("http_max_connections %d must be at least 1", c.HTTPMaxConnections)
	}
	if c.MaxUploadBytes < 1 {
		bad("max_upload_bytes %d must be at least 1", c.MaxUploadBytes)
	}
	if c.ThumbnailMemoryBytes < 16<<20 {
		bad("thumbnail_memory_bytes %d must be at least 16 MiB (16777216)", c.ThumbnailMemoryBytes)
	}
	if c.MediaQuotaBytesPerUser < 0 {
		bad("media_quota_bytes_per_user %d must not be negative (0: unlimited)", c.MediaQuotaBytesPerUser)
	}
	for _, r := range []struct {
		key  string
		list []string
	}{
		{"url_preview_ip_range_blacklist", c.URLPreviewIPRangeBlacklist}, {"url_preview_ip_range_whitelist", c.URLPreviewIPRangeWhitelist},
		{"ip_range_blacklist", c.IPRangeBlacklist}, {"ip_range_whitelist", c.IPRangeWhitelist},
	} {
		if _, err := safenet.ParsePrefixes(r.list); err != nil {
			bad("%s: %v", r.key, err)
		}
	}
	for _, u := range c.TURNURIs {
		if !strings.HasPrefix(u, "turn:") && !strings.HasPrefix(u, "turns:") && !strings.HasPrefix(u, "stun:") {
			bad("turn_uris entry %q must be a turn:, turns: or stun: URI", u)
		}
	}
	if c.TURNUserLifetime < time.Second {
		bad("turn_user_lifetime %s must be at least 1s", c.TURNUserLifetime)
	}
	if _, err := ParsePrefixes(c.TrustedProxies); err != nil {
		bad("trusted_proxies: %v", err)
	}
	if err := c.RCRegistration.validate("rc_registration"); err != nil {
		bad("%v", err)
	}
	c.validateServerNotices(bad)
	return errors.Join(errs...)
}

// PreviewFilter is the address filter of URL previews.
func (c *Config) PreviewFilter() *safenet.Filter {
	return filter(c.URLPreviewIPRangeBlacklist, c.URLPreviewIPRangeWhitelist)
}

// OutboundFilter is the address filter of push gateway requests.
func (c *Config) OutboundFilter() *safenet.Filter {
	return filter(c.IPRangeBlacklist, c.IPRangeWhitelist)
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
	if c.PublicBaseURL != "" {
		return strings.TrimRight(c.PublicBaseURL, "/") + "/"
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

// validateServerNotices checks the server_notices block.
func (c *Config) validateServerNotices(bad func(string, ...any)) {
	n := c.ServerNotices
	if n.SystemMXIDLocalpart != "" && !validLocalpart(n.SystemMXIDLocalpart) {
		bad("server_notices.system_mxid_localpart %q may only contain a-z, 0-9 and ._=-/+", n.SystemMXIDLocalpart)
	}
	for key, u := range map[string]string{"system_mxid_avatar_url": n.SystemMXIDAvatarURL, "room_avatar_url": n.RoomAvatarURL} {
		if u != "" && !strings.HasPrefix(u, "mxc://") {
			bad("server_notices.%s %q must be an mxc:// URL", key, u)
		}
	}
}

// validLocalpart checks a user ID localpart against the spec's grammar.
func validLocalpart(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.ContainsRune("._=-/+", c)) {
			return false
		}
	}
	return s != ""
}
