package clientapi

// Third-party identifiers (spec "Adding Account Administrative Contact
// Information"), which this server does not support: it sends no email or
// SMS and talks to no identity server, so every attempt to add or bind one
// is refused with the error the spec lists for the endpoint. Also the VoIP
// TURN credentials (spec "Voice over IP").

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"strconv"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
)

const noThreePIDs = "This server does not support third-party identifiers (email addresses, phone numbers)"

// requestThreePIDToken serves the /requestToken endpoints of registration,
// password reset and /account/3pid (email and msisdn): 403 M_THREEPID_DENIED,
// "the homeserver does not allow the third-party identifier".
func (a *API) requestThreePIDToken(r *http.Request) (any, error) {
	var body map[string]any
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	return nil, &httputil.Error{Status: http.StatusForbidden, Code: "M_THREEPID_DENIED", Msg: noThreePIDs}
}

// addThreePID serves POST /account/3pid (deprecated) and /account/3pid/add:
// no validation session can exist, so the credentials never verify
// (403 M_THREEPID_AUTH_FAILED, as the spec lists for POST /account/3pid).
func (a *API) addThreePID(r *http.Request, _ *accounts.Session) (any, error) {
	var body map[string]any
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	return nil, &httputil.Error{Status: http.StatusForbidden, Code: "M_THREEPID_AUTH_FAILED", Msg: noThreePIDs}
}

// bindThreePID serves POST /account/3pid/bind: this server trusts no
// identity server (400 M_SERVER_NOT_TRUSTED).
func (a *API) bindThreePID(r *http.Request, _ *accounts.Session) (any, error) {
	var body map[string]any
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	return nil, &httputil.Error{Status: http.StatusBadRequest, Code: "M_SERVER_NOT_TRUSTED",
		Msg: "This server does not bind third-party identifiers through identity servers"}
}

// removeThreePID serves POST /account/3pid/delete and /account/3pid/unbind:
// the account holds no third-party identifiers, so there is nothing to
// remove, and no identity server to unbind from ("no-support").
func (a *API) removeThreePID(r *http.Request, _ *accounts.Session) (any, error) {
	var body struct {
		Medium  *string `json:"medium"`
		Address *string `json:"address"`
	}
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.Medium == nil || body.Address == nil {
		return nil, httputil.MissingParam("medium and address are required")
	}
	if *body.Medium != "email" && *body.Medium != "msisdn" {
		return nil, httputil.InvalidParam("medium must be email or msisdn")
	}
	return map[string]string{"id_server_unbind_result": "no-support"}, nil
}

// turnServer serves GET /_matrix/client/v3/voip/turnServer: time-limited
// credentials for a TURN server sharing turn_shared_secret (coturn's
// use-auth-secret scheme: username "<expiry>:<user ID>", password the
// base64 HMAC-SHA1 of the username). Without TURN configured the answer is
// {}, as Synapse's.
func (a *API) turnServer(_ *http.Request, s *accounts.Session) (any, error) {
	uris, secret, lifetime := a.cfg.VoIP.TURNURIs, a.cfg.VoIP.TURNSharedSecret, a.cfg.VoIP.TURNUserLifetime
	if len(uris) == 0 || secret == "" {
		return httputil.Empty, nil
	}
	expiry := a.accounts.Now().Add(lifetime).Unix()
	username := strconv.FormatInt(expiry, 10) + ":" + s.UserID
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return map[string]any{
		"username": username,
		"password": base64.StdEncoding.EncodeToString(mac.Sum(nil)),
		"uris":     uris,
		"ttl":      int64(lifetime.Seconds()),
	}, nil
}
