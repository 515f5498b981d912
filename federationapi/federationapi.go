// Package federationapi serves the server-server API. For now that is the
// part third parties use without federation: OpenID userinfo, which lets a
// widget or Element Call's token service learn who holds an OpenID token
// (POST /_matrix/client/v3/user/{userId}/openid/request_token).
package federationapi

import (
	"net/http"

	"github.com/gorilla/mux"

	"matrixhs/clientapi/accounts"
	"matrixhs/clientapi/httputil"
)

// API is the federation API.
type API struct {
	accounts *accounts.Service
}

// New builds the federation API.
func New(acc *accounts.Service) *API { return &API{accounts: acc} }

// Routes registers the federation endpoints on r (the server's one router).
func (f *API) Routes(r *mux.Router) {
	r.Handle("/_matrix/federation/v1/openid/userinfo", httputil.Handler(f.openIDUserInfo)).Methods(http.MethodGet)
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
