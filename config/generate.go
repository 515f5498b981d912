package config

import (
	"bytes"
	"fmt"
	"text/template"
)

var fileTemplate = template.Must(template.New("config").Parse(`# Homeserver configuration, written on first start and never overwritten.
# Environment variables win over this file: MATRIX_DATA_DIR, MATRIX_SERVER_NAME,
# MATRIX_LISTEN, MATRIX_PUBLIC_BASEURL, MATRIX_REGISTRATION,
# MATRIX_REGISTRATION_SHARED_SECRET, MATRIX_LOG_LEVEL (MATRIX_CONFIG names this file).

# The domain in user IDs (@alice:server_name). Changing it later orphans existing accounts.
server_name: {{.ServerName}}

# Client API address.
listen: {{.Listen}}

# Public URL clients use, served in /.well-known/matrix/client. When empty it is
# derived from each request's Host header.
# public_baseurl: https://matrix.example.org/

# Served as /.well-known/matrix/server when set (federation delegation).
# well_known_server: matrix.example.org:443

# Who to contact about this server, served as /.well-known/matrix/support.
# support:
#   contacts:
#   - role: m.role.admin
#     matrix_id: "@admin:matrix.example.org"
#     email_address: admin@example.org
#   support_page: https://example.org/help

# Paths default to files under the data dir.
# data_dir: /data
# database_path: homeserver.db
# media_path: media
# signing_key_path: signing.key
# log_dir: logs

log_level: {{.LogLevel}}
log_max_size_mb: {{.LogMaxSizeMB}}
log_max_files: {{.LogMaxFiles}}

# disabled | token (needs a registration token, see 'homeserver registration-token') | open
registration: {{.Registration}}

# Secret for /_synapse/admin/v1/register (shared-secret registration by scripts).
registration_shared_secret: {{.RegistrationSharedSecret}}

# Room version for rooms created without one. 11 for now (MSC4304): older
# clients show the creators of v12 rooms as powerless. Clients may still ask
# for "12" per room.
default_room_version: "{{.DefaultRoomVersion}}"

max_request_body_bytes: {{.MaxRequestBodyBytes}}
bcrypt_cost: {{.BcryptCost}}
refreshable_access_token_lifetime: {{.RefreshableAccessTokenLifetime}}
shutdown_timeout: {{.ShutdownTimeout}}

# HTTP connections: headers must arrive within http_read_header_timeout, a body
# within http_read_body_timeout plus 1s per 32 KiB of its size (uploads on slow
# links), idle keep-alive connections close after http_idle_timeout. Long-polls
# (/sync, sliding sync) are not cut. At most http_max_connections are served at
# once (each costs ~20 KB); more wait to be accepted.
http_read_header_timeout: {{.HTTPReadHeaderTimeout}}
http_read_body_timeout: {{.HTTPReadBodyTimeout}}
http_idle_timeout: {{.HTTPIdleTimeout}}
http_max_connections: {{.HTTPMaxConnections}}

# Media: the largest upload in bytes, and each user's total (0: unlimited).
max_upload_bytes: {{.MaxUploadBytes}}
media_quota_bytes_per_user: {{.MediaQuotaBytesPerUser}}
# Memory thumbnailing may use at once (bytes). Images that alone need more, as
# their header tells (size, bit depth, components), are stored without
# thumbnails. 100 MiB admits 32-megapixel JPEG photos (progressive: ~13 MP).
thumbnail_memory_bytes: {{.ThumbnailMemoryBytes}}
# URL previews make the server fetch the links users ask about (never private
# or loopback addresses). Off by default.
url_preview_enabled: {{.URLPreviewEnabled}}
# Previews never reach loopback, private, link-local, CGNAT, multicast and
# similar ranges (IPv4-mapped and NAT64 forms included). The blacklist adds
# ranges to that list; the whitelist exempts ranges from both, e.g. to preview
# an intranet site. Ranges are CIDR (10.0.0.0/8, fd00::/8) or single addresses.
# url_preview_ip_range_blacklist: []
# url_preview_ip_range_whitelist: ["192.168.10.0/24"]

# The same for push gateways (pusher URLs are chosen by users): nothing is sent
# to internal addresses unless whitelisted here, e.g. for a gateway (Sygnal)
# running beside the homeserver. Redirects from gateways are never followed.
# ip_range_blacklist: []
# ip_range_whitelist: ["10.0.0.5/32"]

# TURN for voice and video calls: the TURN server's URIs and the secret it
# shares with this server (coturn: use-auth-secret, static-auth-secret). Clients
# get credentials valid for turn_user_lifetime. Without both, no TURN is offered.
# turn_uris: ["turn:turn.example.org:3478?transport=udp", "turn:turn.example.org:3478?transport=tcp"]
# turn_shared_secret: ""
turn_user_lifetime: {{.TURNUserLifetime}}

# Reverse proxies and tunnels (CIDRs or addresses) whose X-Forwarded-For,
# Forwarded or X-Real-IP headers are believed about the client's address; the
# limits on failed logins and sign-ups count per address. The client is the
# right-most address in the chain that is not listed here. Default: loopback
# and private networks (a proxy on this host or Docker network, such as the
# Ratio1 tunnel). List a public address only if it is your own proxy; []
# trusts no one.
trusted_proxies:
{{- range .TrustedProxies}}
  - "{{.}}"
{{- end}}

# Sign-ups per client address: burst_count new registration sessions at once,
# then per_second on average (Synapse's rate; Synapse's burst is 3, this one
# lets a group behind one NAT, or a test suite, register dozens of users).
# Shared-secret registration is not counted.
rc_registration:
  per_second: {{.RCRegistration.PerSecond}}
  burst_count: {{.RCRegistration.BurstCount}}

# Server notices: messages from the server to one user (admin API
# POST /_synapse/admin/v1/send_server_notice), in a room per user that the user
# cannot write in. Synapse's keys; system_mxid_localpart: "" turns them off.
server_notices:
  system_mxid_localpart: {{printf "%q" .ServerNotices.SystemMXIDLocalpart}}
  system_mxid_display_name: {{printf "%q" .ServerNotices.SystemMXIDDisplayName}}
  # system_mxid_avatar_url: mxc://example.org/abc
  room_name: {{printf "%q" .ServerNotices.RoomName}}
  # room_avatar_url: mxc://example.org/abc
  # room_topic: ""
  # Join users to the room instead of inviting them.
  auto_join: {{.ServerNotices.AutoJoin}}
`))

// Generate renders a commented config file with the defaults, the given
// server name and a fresh random registration shared secret.
func Generate(serverName string) ([]byte, error) {
	cfg := Default()
	cfg.ServerName = serverName
	secret, err := RandomSecret(32)
	if err != nil {
		return nil, err
	}
	cfg.RegistrationSharedSecret = secret
	var buf bytes.Buffer
	if err := fileTemplate.Execute(&buf, cfg); err != nil {
		return nil, fmt.Errorf("rendering config: %w", err)
	}
	return buf.Bytes(), nil
}
