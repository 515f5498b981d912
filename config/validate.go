package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/safenet"
)

// Validate checks every setting and reports all problems at once, naming
// each by its key in the file.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	c.validateServer(bad)
	c.Database.validate(bad)
	c.validateRegistration(bad)
	if !SupportedRoomVersion(c.Rooms.DefaultRoomVersion) {
		bad("rooms.default_room_version %q is not a room version this server supports", c.Rooms.DefaultRoomVersion)
	}
	c.validateMedia(bad)
	validateRanges(bad, "push.ip_range_blacklist", c.Push.IPRangeBlacklist)
	validateRanges(bad, "push.ip_range_whitelist", c.Push.IPRangeWhitelist)
	for _, u := range c.VoIP.TURNURIs {
		if !strings.HasPrefix(u, "turn:") && !strings.HasPrefix(u, "turns:") && !strings.HasPrefix(u, "stun:") {
			bad("voip.turn_uris entry %q must be a turn:, turns: or stun: URI", u)
		}
	}
	if c.VoIP.TURNUserLifetime < time.Second {
		bad("voip.turn_user_lifetime %s must be at least 1s", c.VoIP.TURNUserLifetime)
	}
	c.Federation.validate(c.Server.Listen, bad)
	switch c.Logging.Level {
	case "trace", "debug", "info", "warn", "warning", "error":
	default:
		bad("logging.level %q must be one of trace, debug, info, warn, error", c.Logging.Level)
	}
	if c.Logging.MaxSizeMB < 1 || c.Logging.MaxFiles < 1 {
		bad("logging.max_size_mb and logging.max_files must be at least 1")
	}
	c.validateServerNotices(bad)
	c.validateSupport(bad)
	c.validateAppServices(bad)
	return errors.Join(errs...)
}

func (c *Config) validateServer(bad func(string, ...any)) {
	s := &c.Server
	if _, _, ok := spec.ParseAndValidateServerName(spec.ServerName(s.Name)); !ok {
		bad("server.server_name %q is not a valid server name (host or host:port)", s.Name)
	}
	if _, _, err := net.SplitHostPort(s.Listen); err != nil {
		bad("server.listen %q must be host:port: %v", s.Listen, err)
	}
	if s.PublicBaseURL != "" {
		u, err := url.Parse(s.PublicBaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("server.public_baseurl %q must be an absolute http(s) URL", s.PublicBaseURL)
		}
	}
	if s.MaxRequestBodyBytes < 64<<10 {
		bad("server.max_request_body_bytes %d is below the 64 KiB a single event may need", s.MaxRequestBodyBytes)
	}
	if s.ShutdownTimeout < 0 {
		bad("server.shutdown_timeout must not be negative")
	}
	if _, err := ParsePrefixes(s.TrustedProxies); err != nil {
		bad("server.trusted_proxies: %v", err)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"server.http.read_header_timeout", s.HTTP.ReadHeaderTimeout},
		{"server.http.read_body_timeout", s.HTTP.ReadBodyTimeout},
		{"server.http.idle_timeout", s.HTTP.IdleTimeout},
	} {
		if d.v < 100*time.Millisecond {
			bad("%s %s must be at least 100ms", d.key, d.v)
		}
	}
	if s.HTTP.MaxConnections < 1 {
		bad("server.http.max_connections %d must be at least 1", s.HTTP.MaxConnections)
	}
}

func (c *Config) validateRegistration(bad func(string, ...any)) {
	r := &c.Registration
	switch r.Mode {
	case RegistrationDisabled, RegistrationToken, RegistrationOpen:
	default:
		bad("registration.mode %q must be one of disabled, token, open", r.Mode)
	}
	if err := r.RCRegistration.validate("registration.rc_registration"); err != nil {
		bad("%v", err)
	}
	if r.BcryptCost < 4 || r.BcryptCost > 31 {
		bad("registration.bcrypt_cost %d must be between 4 and 31", r.BcryptCost)
	}
	if r.RefreshableAccessTokenLifetime < time.Second {
		bad("registration.refreshable_access_token_lifetime %s must be at least 1s", r.RefreshableAccessTokenLifetime)
	}
}

func (c *Config) validateMedia(bad func(string, ...any)) {
	m := &c.Media
	if m.MaxUploadBytes < 1 {
		bad("media.max_upload_bytes %d must be at least 1", m.MaxUploadBytes)
	}
	if m.ThumbnailMemoryBytes < 16<<20 {
		bad("media.thumbnail_memory_bytes %d must be at least 16 MiB (16777216)", m.ThumbnailMemoryBytes)
	}
	if m.QuotaBytesPerUser < 0 {
		bad("media.quota_bytes_per_user %d must not be negative (0: unlimited)", m.QuotaBytesPerUser)
	}
	validateRanges(bad, "media.url_preview_ip_range_blacklist", m.URLPreviewIPRangeBlacklist)
	validateRanges(bad, "media.url_preview_ip_range_whitelist", m.URLPreviewIPRangeWhitelist)
}

func validateRanges(bad func(string, ...any), key string, list []string) {
	if _, err := safenet.ParsePrefixes(list); err != nil {
		bad("%s: %v", key, err)
	}
}

func (c *Config) validateSupport(bad func(string, ...any)) {
	if c.Support == nil {
		return
	}
	if len(c.Support.Contacts) == 0 && c.Support.Page == "" {
		bad("support needs contacts or a support_page")
	}
	for _, ct := range c.Support.Contacts {
		if ct.Role == "" || (ct.MatrixID == "" && ct.Email == "") {
			bad("each support contact needs a role and a matrix_id or email_address")
		}
	}
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

// validateAppServices checks the app_service_config_files list: paths
// only; the server reads and checks the files themselves at start
// (package appservice).
func (c *Config) validateAppServices(bad func(string, ...any)) {
	seen := map[string]bool{}
	for _, p := range c.AppServiceConfigFiles {
		switch {
		case strings.TrimSpace(p) == "" || strings.ContainsRune(p, 0):
			bad("app_service_config_files entry %q is not a file path", p)
		case strings.HasSuffix(p, "/"):
			bad("app_service_config_files entry %q names a directory, not a file", p)
		case seen[p]:
			bad("app_service_config_files lists %q twice", p)
		}
		seen[p] = true
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
