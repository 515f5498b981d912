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

// thirdPartyProtocol serves GET /_matrix/client/v3/thirdparty/protocol/{protocol}:
// no protocol is known (404, as Synapse).
func (a *API) thirdPartyProtocol(r *http.Request, _ *accounts.Session) (any, error) {
	return nil, httputil.NotFound("Unknown protocol %q", pathVar(r, "protocol"))
}

// thirdPartyLookup serves the location and user lookups, by protocol
// (/thirdparty/location/{protocol}, /thirdparty/user/{protocol}) and in
// reverse (by alias or user ID): nothing is bridged, so nothing is found,
// whatever the protocol. Like Synapse this is 200 [], not 404: Element probes
// protocols such as im.vector.protocol.sip_virtual and treats errors as
// failures.
func (a *API) thirdPartyLookup(*http.Request, *accounts.Session) (any, error) {
	return []any{}, nil
}
