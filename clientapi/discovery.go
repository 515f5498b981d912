package clientapi

import (
	"net/http"

	"matrixhs/config"
	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
)

// supportedVersions are the spec versions whose endpoints this server
// implements. The old entries stay: matrix-js-sdk refuses a server that lists
// none of v1.1 to v1.9. v1.11 is listed because the authenticated media
// endpoints (/_matrix/client/v1/media, mediaapi) exist: clients then stop
// using the deprecated /_matrix/media/v3 downloads.
var supportedVersions = []string{
	"r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1",
	"v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11",
}

// unstableFeatures are the flags clients read to switch features on; each
// names something this server really does (README lists them). Several are
// implied by the versions above but are read by older clients, or by
// clients that look for the flag alone.
var unstableFeatures = map[string]bool{
	// Element Web sets up cross-signing only with this flag (or v1.1).
	"org.matrix.e2e_cross_signing": true,
	// Simplified Sliding Sync (MSC4186): Element X refuses servers without it.
	"org.matrix.simplified_msc3575": true,
	// Delayed events (Element Call's call-leave events).
	"org.matrix.msc4140": true,
	// Private read receipts (m.read.private).
	"org.matrix.msc2285.stable": true,
	// Threads, threaded read receipts and per-thread unread counts.
	"org.matrix.msc3440.stable": true,
	"org.matrix.msc3771":        true,
	"org.matrix.msc3773":        true,
	// room_types filter of POST /publicRooms (spaces in the room directory).
	"org.matrix.msc3827.stable": true,
	// Authenticated media (/_matrix/client/v1/media).
	"org.matrix.msc3916.stable": true,
	// Room summaries (/_matrix/client/v1/room_summary and im.nheko.summary).
	"org.matrix.msc3266": true,
}

// versions serves GET /_matrix/client/versions.
func (a *API) versions(*http.Request) (any, error) {
	return map[string]any{"versions": supportedVersions, "unstable_features": unstableFeatures}, nil
}

// wellKnownClient serves GET /.well-known/matrix/client. Without
// public_baseurl the URL follows the request, and a trusted proxy's
// X-Forwarded-Proto and -Host.
func (a *API) wellKnownClient(r *http.Request) (any, error) {
	https := r.TLS != nil
	host := r.Host
	if httputil.ViaTrustedProxy(r) {
		https = https || r.Header.Get("X-Forwarded-Proto") == "https"
		if fh := r.Header.Get("X-Forwarded-Host"); fh != "" {
			host = fh
		}
	}
	return map[string]any{
		"m.homeserver": map[string]string{"base_url": a.cfg.BaseURL(host, https)},
	}, nil
}

// wellKnownServer serves GET /.well-known/matrix/server when delegation is configured.
func (a *API) wellKnownServer(*http.Request) (any, error) {
	if a.cfg.Server.WellKnownServer == "" {
		return nil, httputil.NotFound("No server delegation is configured")
	}
	return map[string]string{"m.server": a.cfg.Server.WellKnownServer}, nil
}

// wellKnownSupport serves GET /.well-known/matrix/support when configured.
func (a *API) wellKnownSupport(*http.Request) (any, error) {
	if a.cfg.Support == nil {
		return nil, httputil.NotFound("No support information is configured")
	}
	return a.cfg.Support, nil
}

// capabilities serves GET /_matrix/client/v3/capabilities.
func (a *API) capabilities(*http.Request, *accounts.Session) (any, error) {
	available := map[string]string{}
	for _, v := range config.RoomVersions() {
		available[v] = "stable"
	}
	return map[string]any{
		"capabilities": map[string]any{
			"m.room_versions": map[string]any{
				"default":   a.cfg.Rooms.DefaultRoomVersion,
				"available": available,
			},
			"m.change_password": map[string]bool{"enabled": true},
			"m.set_displayname": map[string]bool{"enabled": true},
			"m.set_avatar_url":  map[string]bool{"enabled": true},
			"m.3pid_changes":    map[string]bool{"enabled": false},
			"m.get_login_token": map[string]bool{"enabled": false},
		},
	}, nil
}
