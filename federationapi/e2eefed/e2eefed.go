// Package e2eefed carries end-to-end encryption across servers; the
// domain logic (what is believed, cached, published, delivered) is the key
// service's (internal/e2ee), this package is its transport:
//
//   - inbound, for other servers: POST /user/keys/query, POST
//     /user/keys/claim and GET /user/devices/{userId} about local users,
//     behind X-Matrix authentication; and the m.device_list_update,
//     m.signing_key_update and m.direct_to_device EDUs of /send, handed to
//     the key service (HandleEDU);
//   - outbound, the key service's e2ee.Remote: the same requests to other
//     servers through the federation client, and EDUs queued on the
//     federation sender as part of the key service's writes.
package e2eefed

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/federationapi"
	"matrixhs/federationapi/fedclient"
	"matrixhs/federationapi/sender"
	"matrixhs/internal/e2ee"
	"matrixhs/internal/httputil"
	"matrixhs/internal/ids"
	"matrixhs/internal/matrixerr"
	"matrixhs/storage"
)

// Service serves and makes the end-to-end encryption requests of
// federation.
type Service struct {
	api    *federationapi.API
	keys   *e2ee.Service
	sender *sender.Sender
}

var _ e2ee.Remote = (*Service)(nil)

// New builds the Service over the federation API, the key service and
// the sender, and registers its EDU handlers on the API (before it serves
// requests). The caller makes it the key service's Remote (SetRemote).
func New(api *federationapi.API, keys *e2ee.Service, snd *sender.Sender) *Service {
	s := &Service{api: api, keys: keys, sender: snd}
	api.HandleEDU(e2ee.EDUDeviceListUpdate, edu(keys.ReceiveDeviceListUpdate))
	api.HandleEDU(e2ee.EDUSigningKeyUpdate, edu(keys.ReceiveSigningKeyUpdate))
	// Synapse also sends the key update under its unstable name.
	api.HandleEDU("org.matrix.signing_key_update", edu(keys.ReceiveSigningKeyUpdate))
	api.HandleEDU(e2ee.EDUDirectToDevice, edu(keys.ReceiveToDevice))
	return s
}

// edu adapts a key service handler to an EDU handler.
func edu(h func(ctx context.Context, origin string, content json.RawMessage) error) federationapi.EDUHandler {
	return func(ctx context.Context, origin spec.ServerName, content json.RawMessage) error {
		return h(ctx, string(origin), content)
	}
}

const v1 = "/_matrix/federation/v1"

// Register adds the inbound endpoints to a route table (the server's one
// table, and the federation listener's).
func (s *Service) Register(rt *httputil.Router) {
	h := s.api.Auth.Handler
	rt.Exact(http.MethodPost, v1+"/user/keys/query", h(s.queryKeys))
	rt.Exact(http.MethodPost, v1+"/user/keys/claim", h(s.claimKeys))
	rt.Exact(http.MethodGet, v1+"/user/devices/{userId}", h(s.userDevices))
}

// checkUserIDs refuses malformed user IDs (400 M_INVALID_PARAM).
func checkUserIDs[V any](users map[string]V) error {
	for u := range users {
		if err := ids.UserID(u); err != nil {
			return httputil.InvalidParam("%v", err)
		}
	}
	return nil
}

// queryKeys serves POST /_matrix/federation/v1/user/keys/query.
func (s *Service) queryKeys(r *http.Request, _ spec.ServerName) (any, error) {
	var req struct {
		DeviceKeys map[string][]string `json:"device_keys"`
	}
	if err := httputil.DecodeJSONWithNUL(r, &req); err != nil {
		return nil, err
	}
	if err := checkUserIDs(req.DeviceKeys); err != nil {
		return nil, err
	}
	res, err := s.keys.QueryKeysForServer(r.Context(), req.DeviceKeys)
	if err != nil {
		return nil, matrixerr.From(err)
	}
	return res, nil
}

// claimKeys serves POST /_matrix/federation/v1/user/keys/claim.
func (s *Service) claimKeys(r *http.Request, _ spec.ServerName) (any, error) {
	var req struct {
		OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
	}
	if err := httputil.DecodeJSONWithNUL(r, &req); err != nil {
		return nil, err
	}
	if req.OneTimeKeys == nil {
		return nil, httputil.MissingParam("one_time_keys is required")
	}
	if err := checkUserIDs(req.OneTimeKeys); err != nil {
		return nil, err
	}
	keys, err := s.keys.ClaimKeysForServer(r.Context(), req.OneTimeKeys)
	if err != nil {
		return nil, matrixerr.From(err)
	}
	return map[string]any{"one_time_keys": keys}, nil
}

// userDevices serves GET /_matrix/federation/v1/user/devices/{userId}.
func (s *Service) userDevices(r *http.Request, _ spec.ServerName) (any, error) {
	userID := httputil.PathVar(r, "userId")
	if err := ids.UserID(userID); err != nil {
		return nil, httputil.InvalidParam("%v", err)
	}
	res, err := s.keys.UserDevices(r.Context(), userID)
	if err != nil {
		return nil, matrixerr.From(err)
	}
	return res, nil
}

// statusError is a remote server's error answer, with its status for the
// failures of a query or claim.
type statusError struct {
	status int
	err    error
}

func (e *statusError) Error() string   { return e.err.Error() }
func (e *statusError) Unwrap() error   { return e.err }
func (e *statusError) StatusCode() int { return e.status }

// do makes a federation request, keeping the status of an error answer.
func (s *Service) do(ctx context.Context, method, server, path string, body, out any) error {
	err := s.api.Client.Do(ctx, method, spec.ServerName(server), path, body, out)
	if status := fedclient.StatusCode(err); status != 0 {
		return &statusError{status: status, err: err}
	}
	return err
}

// QueryKeys asks server for its users' keys.
func (s *Service) QueryKeys(ctx context.Context, server string, deviceKeys map[string][]string) (*e2ee.RemoteKeys, error) {
	body := make(map[string][]string, len(deviceKeys))
	for u, d := range deviceKeys {
		if d == nil {
			d = []string{}
		}
		body[u] = d
	}
	var out e2ee.RemoteKeys
	if err := s.do(ctx, http.MethodPost, server, v1+"/user/keys/query", map[string]any{"device_keys": body}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ClaimKeys claims one-time keys of server's users.
func (s *Service) ClaimKeys(ctx context.Context, server string, claims map[string]map[string]string) (e2ee.OneTimeKeys, error) {
	var out struct {
		OneTimeKeys e2ee.OneTimeKeys `json:"one_time_keys"`
	}
	if err := s.do(ctx, http.MethodPost, server, v1+"/user/keys/claim", map[string]any{"one_time_keys": claims}, &out); err != nil {
		return nil, err
	}
	return out.OneTimeKeys, nil
}

// UserDevices asks server for one of its users' device list.
func (s *Service) UserDevices(ctx context.Context, server, userID string) (*e2ee.RemoteDeviceList, error) {
	var out e2ee.RemoteDeviceList
	if err := s.do(ctx, http.MethodGet, server, v1+"/user/devices/"+url.PathEscape(userID), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// QueueEDU queues an EDU for destinations as part of the write tx.
func (s *Service) QueueEDU(ctx context.Context, tx *storage.Tx, destinations []string, eduType string, content []byte) error {
	if s.sender == nil {
		return errors.New("federation is off")
	}
	return s.sender.QueueEDUTx(ctx, tx, destinations, gomatrixserverlib.EDU{Type: eduType, Content: spec.RawJSON(content)})
}
