// Package federationapi serves the server-server API. So far: the server's
// signing keys (/_matrix/key/v2/server) and version, and OpenID userinfo,
// which lets a widget or Element Call's token service learn who holds an
// OpenID token (POST /_matrix/client/v3/user/{userId}/openid/request_token).
// Room federation (joins, transactions, backfill) is not served yet.
package federationapi

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/matrix-org/gomatrixserverlib"

	"matrixhs/config"
	"matrixhs/internal/accounts"
	"matrixhs/internal/auth"
	"matrixhs/internal/httputil"
)

// keyValidity is how long other servers may cache our key before asking again.
const keyValidity = 7 * 24 * time.Hour

// API is the federation API.
type API struct {
	accounts   *accounts.Service
	serverName string
	key        *config.SigningKey
	now        func() time.Time
}

// New builds the federation API.
func New(acc *accounts.Service, serverName string, key *config.SigningKey) *API {
	return &API{accounts: acc, serverName: serverName, key: key, now: time.Now}
}

// Register adds the federation endpoints to the server's route table.
func (f *API) Register(rt *httputil.Router) {
	get := http.MethodGet
	rt.Exact(get, "/_matrix/federation/v1/openid/userinfo", auth.Public(f.openIDUserInfo))
	rt.Exact(get, "/_matrix/federation/v1/version", auth.Public(f.version))
	rt.Exact(get, "/_matrix/key/v2/server", auth.Public(f.serverKeys))
	rt.Exact(get, "/_matrix/key/v2/server/{keyId}", auth.Public(f.serverKeys))
}

// version serves GET /_matrix/federation/v1/version.
func (f *API) version(*http.Request) (any, error) {
	return map[string]any{"server": map[string]string{"name": "matrixhs", "version": "0.1"}}, nil
}

// serverKeys serves GET /_matrix/key/v2/server: the server's verify key,
// signed with itself.
func (f *API) serverKeys(*http.Request) (any, error) {
	pub := f.key.PrivateKey.Public().(ed25519.PublicKey)
	body, err := json.Marshal(map[string]any{
		"server_name":     f.serverName,
		"valid_until_ts":  f.now().Add(keyValidity).UnixMilli(),
		"verify_keys":     map[string]any{f.key.ID: map[string]string{"key": base64.RawStdEncoding.EncodeToString(pub)}},
		"old_verify_keys": map[string]any{},
	})
	if err != nil {
		return nil, err
	}
	signed, err := gomatrixserverlib.SignJSON(f.serverName, gomatrixserverlib.KeyID(f.key.ID), f.key.PrivateKey, body)
	if err != nil {
		return nil, fmt.Errorf("signing server keys: %w", err)
	}
	return json.RawMessage(signed), nil
}

// openIDUserInfo serves GET /_matrix/federation/v1/openid/userinfo.
func (f *API) openIDUserInfo(r *http.Request) (any, error) {
	token := r.URL.Query().Get("access_token")
	if token == "" {
		return nil, httputil.MissingToken("Missing access_token")
	}
	userID, err := f.accounts.OpenIDUser(r.Context(), token)
	if err != nil {
		return nil, err
	}
	return map[string]any{"sub": userID}, nil
}
