package clientapi

import (
	"net/http"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
)

// This server bridges to no third-party networks (that is the job of
// application services, which it does not host yet): the protocol list is
// empty, and so are the lookups.

// thirdPartyProtocols serves GET /_matrix/client/v3/thirdparty/protocols.
func (a *API) thirdPartyProtocols(*http.Request, *accounts.Session) (any, error) {
	return map[string]any{}, nil
}

// thirdPartyProtocol serves GET /_matrix/client/v3/thirdparty/protocol/{protocol}
// and the per-protocol location and user lookups.
func (a *API) thirdPartyProtocol(r *http.Request, _ *accounts.Session) (any, error) {
	return nil, httputil.NotFound("Unknown protocol %q", pathVar(r, "protocol"))
}

// thirdPartyReverseLookup serves GET /_matrix/client/v3/thirdparty/location
// and /thirdparty/user (by alias or user ID): nothing is bridged.
func (a *API) thirdPartyReverseLookup(*http.Request, *accounts.Session) (any, error) {
	return []any{}, nil
}
