package config

import (
	"bytes"
	"fmt"
	"strings"
	"text/template"
	"time"
)

var fileTemplate = template.Must(template.New("config").Funcs(template.FuncMap{"dur": shortDuration}).Parse(`# Homeserver configuration, written on first start and never overwritten.
# Environment variables win over this file: MATRIX_DATA_DIR, MATRIX_SERVER_NAME,
# MATRIX_LISTEN, MATRIX_PUBLIC_BASEURL, MATRIX_REGISTRATION,
# MATRIX_REGISTRATION_SHARED_SECRET, MATRIX_LOG_LEVEL, MATRIX_FEDERATION,
# MATRIX_FEDERATION_LISTEN, MATRIX_TLS_CERT, MATRIX_TLS_KEY, MATRIX_FEDERATION_CA,
# MATRIX_FEDERATION_ALLOW_PRIVATE, MATRIX_DATABASE_URL (a postgres:// URL selects
# PostgreSQL) (MATRIX_CONFIG names this file).
# Yes/no settings take true/false, yes/no, 1/0 or enabled/disabled.

server:
  # The domain in user IDs (@alice:server_name). Changing it later orphans existing accounts.
  server_name: {{.Server.Name}}

  # Client API address.
  listen: {{.Server.Listen}}

  # Public URL clients use, served in /.well-known/matrix/client. When empty it is
  # derived from each request's Host header.
  # public_baseurl: https://matrix.example.org/

  # Served as /.well-known/matrix/server when set (federation delegation).
  # well_known_server: matrix.example.org:443

  # Paths default to files under the data dir (database, media and log paths
  # are in their sections).
  # data_dir: /data
  # signing_key_path: signing.key

  max_request_body_bytes: {{.Server.MaxRequestBodyBytes}}
  shutdown_timeout: {{dur .Server.ShutdownTimeout}}

  # Reverse proxies and tunnels (CIDRs or addresses) whose X-Forwarded-For,
  # Forwarded or X-Real-IP headers are believed about the client's address; the
  # limits on failed logins and sign-ups count per address. The client is the
  # right-most address in the chain that is not listed here. Default: loopback
  # and private networks (a proxy on this host or Docker network, such as the
  # Ratio1 tunnel). List a public address only if it is your own proxy; []
  # trusts no one.
  trusted_proxies:
{{- range .Server.TrustedProxies}}
    - "{{.}}"
{{- end}}

  # HTTP connections: headers must arrive within read_header_timeout, a body
  # within read_body_timeout plus 1s per 32 KiB of its size (uploads on slow
  # links), idle keep-alive connections close after idle_timeout. Long-polls
  # (/sync, sliding sync) are not cut. At most max_connections are served at
  # once (each costs ~20 KB); more wait to be accepted.
  http:
    read_header_timeout: {{dur .Server.HTTP.ReadHeaderTimeout}}
    read_body_timeout: {{dur .Server.HTTP.ReadBodyTimeout}}
    idle_timeout: {{dur .Server.HTTP.IdleTimeout}}
    max_connections: {{.Server.HTTP.MaxConnections}}

database:
  # sqlite (one file, the default) or postgres (a PostgreSQL server; see README.md
  # for when to choose it, and 'homeserver migrate-db' to move an existing server).
  engine: {{.Database.Engine}}

  # The SQLite database file (relative paths are under the data dir).
  # path: homeserver.db

  # PostgreSQL: the database's URL (it must exist; the server creates its tables)
  # and the most connections the server opens to it.
  # url: postgres://matrix:password@localhost:5432/matrix?sslmode=disable
  max_connections: {{.Database.MaxConnections}}

registration:
  # disabled | token (needs a registration token, see 'homeserver registration-token') | open
  mode: {{.Registration.Mode}}

  # Secret for /_synapse/admin/v1/register (shared-secret registration by scripts).
  shared_secret: {{.Registration.SharedSecret}}

  # Sign-ups per client address: burst_count new registration sessions at once,
  # then per_second on average (Synapse's rate; Synapse's burst is 3, this one
  # lets a group behind one NAT, or a test suite, register dozens of users).
  # Shared-secret registration is not counted.
  rc_registration:
    per_second: {{.Registration.RCRegistration.PerSecond}}
    burst_count: {{.Registration.RCRegistration.BurstCount}}

  # Work factor of password hashes, and the lifetime of access tokens issued
  # with a refresh token.
  bcrypt_cost: {{.Registration.BcryptCost}}
  refreshable_access_token_lifetime: {{dur .Registration.RefreshableAccessTokenLifetime}}

rooms:
  # Room version for rooms created without one. 11 for now (MSC4304): older
  # clients show the creators of v12 rooms as powerless. Clients may still ask
  # for "12" per room.
  default_room_version: "{{.Rooms.DefaultRoomVersion}}"

media:
  # Where uploads and thumbnails are stored (relative paths are under the data dir).
  # path: media

  # The largest upload in bytes, and each user's total (0: unlimited).
  max_upload_bytes: {{.Media.MaxUploadBytes}}
  quota_bytes_per_user: {{.Media.QuotaBytesPerUser}}

  # Memory thumbnailing may use at once (bytes). Images that alone need more, as
  # their header tells (size, bit depth, components), are stored without
  # thumbnails. 100 MiB admits 32-megapixel JPEG photos (progressive: ~13 MP).
  thumbnail_memory_bytes: {{.Media.ThumbnailMemoryBytes}}

  # URL previews make the server fetch the links users ask about (never private
  # or loopback addresses). Off by default.
  url_preview_enabled: {{.Media.URLPreviewEnabled}}
  # Previews never reach loopback, private, link-local, CGNAT, multicast and
  # similar ranges (IPv4-mapped and NAT64 forms included). The blacklist adds
  # ranges to that list; the whitelist exempts ranges from both, e.g. to preview
  # an intranet site. Ranges are CIDR (10.0.0.0/8, fd00::/8) or single addresses.
  # url_preview_ip_range_blacklist: []
  # url_preview_ip_range_whitelist: ["192.168.10.0/24"]

push:
  # The same for push gateways (pusher URLs are chosen by users): nothing is sent
  # to internal addresses unless whitelisted here, e.g. for a gateway (Sygnal)
  # running beside the homeserver. Redirects from gateways are never followed.
  # ip_range_blacklist: []
  # ip_range_whitelist: ["10.0.0.5/32"]

voip:
  # TURN for voice and video calls: the TURN server's URIs and the secret it
  # shares with this server (coturn: use-auth-secret, static-auth-secret). Clients
  # get credentials valid for turn_user_lifetime. Without both, no TURN is offered.
  # turn_uris: ["turn:turn.example.org:3478?transport=udp", "turn:turn.example.org:3478?transport=tcp"]
  # turn_shared_secret: ""
  turn_user_lifetime: {{dur .VoIP.TURNUserLifetime}}

# Federation with other Matrix servers (rooms, typing, receipts, presence).
federation:
  # MATRIX_FEDERATION=disabled turns federation off.
  enabled: {{.Federation.Enabled}}
  # A separate TLS port for federation. Empty: federation shares the client port
  # (behind a TLS-terminating proxy).
  # listen: 0.0.0.0:8448
  # Its certificate chain (leaf first) and private key (PKCS#8, PKCS#1 or SEC1
  # EC), PEM files; both are needed when listen is set.
  # tls_cert: tls/fullchain.pem
  # tls_key: tls/privkey.pem
  # CAs trusted for outbound federation besides the system's (PEM file).
  # extra_ca_file: tls/extra-ca.pem
  # Outbound federation never connects to loopback or private addresses unless
  # this is on (servers on one private network, test setups).
  allow_private_addresses: {{.Federation.AllowPrivateAddresses}}
  # Servers trusted to vouch for other servers' signing keys (Synapse's
  # trusted_key_servers, e.g. ["matrix.org"]). Empty: ask each server itself.
  key_notaries: []
  # How long the signing key this server publishes stays valid.
  key_validity_period: {{dur .Federation.KeyValidityPeriod}}
  # Requests each other server may make: burst_count at once, then per_second
  # on average; past it they are answered 429 M_LIMIT_EXCEEDED. Generous: only
  # a flood meets it.
  inbound_rate_limit:
    per_second: {{.Federation.InboundRateLimit.PerSecond}}
    burst_count: {{.Federation.InboundRateLimit.BurstCount}}

# Presence (online, unavailable, offline), Synapse's key. Off: updates are
# ignored, everyone shows offline, and none goes to or comes from other servers.
presence:
  enabled: {{.Presence.Enabled}}

logging:
  # trace | debug | info | warn | error. Logs go to stdout and to rotated files
  # under dir (default: logs under the data dir).
  level: {{.Logging.Level}}
  # dir: logs
  max_size_mb: {{.Logging.MaxSizeMB}}
  max_files: {{.Logging.MaxFiles}}

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

# Who to contact about this server, served as /.well-known/matrix/support.
# support:
#   contacts:
#   - role: m.role.admin
#     matrix_id: "@admin:matrix.example.org"
#     email_address: admin@example.org
#   support_page: https://example.org/help

# Application services (bridges, bots): their registration files in
# Synapse's format (Synapse's key), relative to the data dir. A bad file
# stops the server with a message naming it. Appservices may run on
# loopback and private addresses.
# app_service_config_files:
#   - whatsapp-registration.yaml
`))

// shortDuration writes a duration the way people do: 5m, 168h, 1m30s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Generate renders a commented config file with the defaults, the given
// server name and a fresh random registration shared secret.
func Generate(serverName string) ([]byte, error) {
	cfg := Default()
	cfg.Server.Name = serverName
	secret, err := RandomSecret(32)
	if err != nil {
		return nil, err
	}
	cfg.Registration.SharedSecret = secret
	var buf bytes.Buffer
	if err := fileTemplate.Execute(&buf, cfg); err != nil {
		return nil, fmt.Errorf("rendering config: %w", err)
	}
	return buf.Bytes(), nil
}
