package clientapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"matrixhs/clientapi/internal/roomview"
	"matrixhs/internal/accounts"
	"matrixhs/internal/e2ee"
	"matrixhs/internal/httputil"
)

// The end-to-end encryption endpoints: each parses its request and calls
// the key service (internal/e2ee); its refusals map to Matrix errors in
// internal/matrixerr.

func device(s *accounts.Session) e2ee.Device {
	return e2ee.Device{UserID: s.UserID, DeviceID: s.DeviceID}
}

// uploadKeys serves POST /_matrix/client/v3/keys/upload.
func (a *API) uploadKeys(r *http.Request, s *accounts.Session) (any, error) {
	var req e2ee.UploadKeysRequest
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	counts, err := a.keys.UploadKeys(r.Context(), device(s), req)
	if err != nil {
		return nil, err
	}
	return map[string]any{"one_time_key_counts": counts}, nil
}

// queryKeys serves POST /_matrix/client/v3/keys/query.
func (a *API) queryKeys(r *http.Request, s *accounts.Session) (any, error) {
	var req struct {
		DeviceKeys map[string][]string `json:"device_keys"`
		Timeout    *int64              `json:"timeout"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.DeviceKeys == nil {
		return nil, httputil.MissingParam("device_keys is required")
	}
	timeout, err := remoteTimeout(r, req.Timeout)
	if err != nil {
		return nil, err
	}
	return a.keys.QueryKeys(r.Context(), s.UserID, req.DeviceKeys, timeout)
}

// claimKeys serves POST /_matrix/client/v3/keys/claim.
func (a *API) claimKeys(r *http.Request, _ *accounts.Session) (any, error) {
	var req struct {
		OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
		Timeout     *int64                       `json:"timeout"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.OneTimeKeys == nil {
		return nil, httputil.MissingParam("one_time_keys is required")
	}
	timeout, err := remoteTimeout(r, req.Timeout)
	if err != nil {
		return nil, err
	}
	return a.keys.ClaimKeys(r.Context(), req.OneTimeKeys, timeout)
}

// remoteTimeout is how long a query or claim waits for other servers: the
// body's timeout in milliseconds (the spec's place), else the query
// parameter's (Synapse's), else e2ee.DefaultRemoteTimeout; at most
// e2ee.MaxRemoteTimeout. A negative or malformed one is 400.
func remoteTimeout(r *http.Request, body *int64) (time.Duration, error) {
	ms := int64(-1)
	switch q := r.URL.Query().Get("timeout"); {
	case body != nil:
		ms = *body
	case q != "":
		n, err := strconv.ParseInt(q, 10, 64)
		if err != nil {
			return 0, httputil.InvalidParam("timeout must be an integer")
		}
		ms = n
	default:
		return e2ee.DefaultRemoteTimeout, nil
	}
	if ms < 0 {
		return 0, httputil.InvalidParam("timeout must not be negative")
	}
	return min(time.Duration(ms)*time.Millisecond, e2ee.MaxRemoteTimeout), nil
}

// keyChanges serves GET /_matrix/client/v3/keys/changes.
func (a *API) keyChanges(r *http.Request, s *accounts.Session) (any, error) {
	q := r.URL.Query()
	if q.Get("from") == "" {
		return nil, httputil.MissingParam("from is required")
	}
	from, err := roomview.ParseToken(q.Get("from"))
	if err != nil {
		return nil, err
	}
	to := a.db.StreamPosition()
	if t := q.Get("to"); t != "" {
		pos, err := roomview.ParseToken(t)
		if err != nil {
			return nil, err
		}
		to = min(pos, to)
	}
	changed, left, err := a.keys.DeviceListChanges(r.Context(), s.UserID, from, to)
	if err != nil {
		return nil, err
	}
	return map[string]any{"changed": changed, "left": left}, nil
}

// uploadCrossSigningKeys serves POST /_matrix/client/v3/keys/device_signing/upload.
// UIA is needed only to replace existing keys (MSC3967, spec v1.11): the
// service asks for it through the authorize callback.
func (a *API) uploadCrossSigningKeys(r *http.Request, s *accounts.Session) (any, error) {
	body, err := httputil.ReadBody(r)
	if err != nil {
		return nil, err
	}
	var req e2ee.CrossSigningUpload
	if err := httputil.Unmarshal(body, &req); err != nil {
		return nil, err
	}
	var auth *uiaAuth
	if !httputil.IsNull(req["auth"]) {
		auth = &uiaAuth{}
		if err := json.Unmarshal(req["auth"], auth); err != nil {
			return nil, httputil.BadJSON("auth must be an object")
		}
	}
	authorize := func() error { return a.passwordUIA(r, s, auth) }
	if err := a.keys.UploadCrossSigningKeys(r.Context(), s.UserID, req, authorize); err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}

// uploadSignatures serves POST /_matrix/client/v3/keys/signatures/upload.
func (a *API) uploadSignatures(r *http.Request, s *accounts.Session) (any, error) {
	var req map[string]map[string]json.RawMessage
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	failures, err := a.keys.UploadSignatures(r.Context(), s.UserID, req)
	if err != nil {
		return nil, err
	}
	return map[string]any{"failures": failures}, nil
}

// sendToDevice serves PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}.
func (a *API) sendToDevice(r *http.Request, s *accounts.Session) (any, error) {
	evType, txnID := pathVar(r, "eventType"), pathVar(r, "txnId")
	if evType == "" || len(evType) > 255 {
		return nil, httputil.InvalidParam("event type must be 1 to 255 bytes")
	}
	if txnID == "" || len(txnID) > 255 {
		return nil, httputil.InvalidParam("transaction ID must be 1 to 255 bytes")
	}
	var req struct {
		Messages map[string]map[string]json.RawMessage `json:"messages"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Messages == nil {
		return nil, httputil.MissingParam("messages is required")
	}
	if err := a.keys.SendToDevice(r.Context(), device(s), evType, txnID, req.Messages); err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}
