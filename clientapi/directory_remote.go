package clientapi

// Other servers' public room lists (/publicRooms?server=), asked over
// federation.

import (
	"context"
	"net/http"
	"net/url"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/internal/roomdir"
)

// directoryServer reads /publicRooms' server parameter: remote is set when
// it names another server, whose list only authenticated users may ask
// for (as in Synapse).
func (a *API) directoryServer(r *http.Request, s *accounts.Session) (server spec.ServerName, remote bool, err error) {
	srv := r.URL.Query().Get("server")
	if srv == "" || srv == a.cfg.Server.Name {
		return "", false, nil
	}
	if _, _, ok := spec.ParseAndValidateServerName(spec.ServerName(srv)); !ok {
		return "", false, httputil.InvalidParam("%q is not a valid server name", srv)
	}
	if a.directory == nil {
		return "", false, httputil.NotFound("Cannot fetch the room directory of %s: this server does not federate", srv)
	}
	if s == nil {
		return "", false, httputil.MissingToken("Missing access token")
	}
	return spec.ServerName(srv), true, nil
}

// remoteGetBody is GET /publicRooms' query as the body of the federation
// request.
func remoteGetBody(q url.Values, pq roomdir.Query) roomdir.Body {
	b := roomdir.Body{Since: pq.Since, IncludeAllNetworks: q.Get("include_all_networks") == "true",
		ThirdPartyInstanceID: q.Get("third_party_instance_id")}
	if q.Get("limit") != "" {
		b.Limit = &pq.Limit
	}
	return b
}

// remotePublicRooms asks server for a page of its public room list.
func (a *API) remotePublicRooms(ctx context.Context, server spec.ServerName, body roomdir.Body) (any, error) {
	resp, err := a.directory.PublicRooms(ctx, server, body)
	if err != nil {
		return nil, err
	}
	return resp, nil
}
