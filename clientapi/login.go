package clientapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
)

type loginIdentifier struct {
	Type string `json:"type"`
	User string `json:"user"`
}

type loginRequest struct {
	Type                     string          `json:"type"`
	Identifier               json.RawMessage `json:"identifier"`
	User                     string          `json:"user"`
	Password                 string          `json:"password"`
	DeviceID                 string          `json:"device_id"`
	InitialDeviceDisplayName string          `json:"initial_device_display_name"`
	RefreshToken             bool            `json:"refresh_token"`
}

// loginFlows serves GET /_matrix/client/v3/login.
func (a *API) loginFlows(*http.Request) (any, error) {
	return map[string]any{"flows": []map[string]string{{"type": stagePassword}, {"type": loginTypeAppService}}}, nil
}

// login serves POST /_matrix/client/v3/login.
func (a *API) login(r *http.Request) (any, error) {
	var req loginRequest
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Type != stagePassword && req.Type != loginTypeAppService {
		return nil, httputil.Unknown("Unsupported login type %q", req.Type)
	}
	user := req.User
	if len(req.Identifier) > 0 && string(req.Identifier) != "null" {
		var ident loginIdentifier
		if err := json.Unmarshal(req.Identifier, &ident); err != nil {
			return nil, httputil.BadJSON("identifier must be an object with string fields")
		}
		if ident.Type != "m.id.user" {
			return nil, httputil.Unknown("Unsupported identifier type %q", ident.Type)
		}
		user = ident.User
	}
	if user == "" {
		return nil, httputil.MissingParam("No user identifier given")
	}
	login, err := a.loginWith(r, req, user)
	if err != nil {
		return nil, err
	}
	resp := map[string]any{
		"user_id":      login.UserID,
		"access_token": login.AccessToken,
		"device_id":    login.DeviceID,
		"home_server":  login.HomeServer,
	}
	if login.RefreshToken != "" {
		resp["refresh_token"] = login.RefreshToken
		resp["expires_in_ms"] = login.ExpiresInMS
	}
	if wk, err := a.wellKnownClient(r); err == nil {
		resp["well_known"] = wk
	}
	return resp, nil
}

// loginWith logs user in with a password or, for an appservice, its
// as_token (not limited: the token is the secret).
func (a *API) loginWith(r *http.Request, req loginRequest, user string) (*accounts.Login, error) {
	if req.Type == loginTypeAppService {
		return a.loginAppService(r, req, user)
	}
	keys := keysFor(r, user)
	if err := a.logins.check(keys); err != nil {
		return nil, err
	}
	login, err := a.accounts.LoginWithPassword(r.Context(), user, req.Password, accounts.NewDevice{
		DeviceID: req.DeviceID, DisplayName: req.InitialDeviceDisplayName,
		IP: clientIP(r), Refresh: req.RefreshToken,
	})
	if err != nil {
		if errors.Is(err, accounts.ErrBadLogin) || errors.Is(err, accounts.ErrNotLocal) {
			a.logins.failed(keys)
		}
		return nil, err
	}
	return login, nil
}

// refresh serves POST /_matrix/client/v3/refresh.
func (a *API) refresh(r *http.Request) (any, error) {
	var req struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.RefreshToken == "" {
		return nil, httputil.MissingParam("refresh_token is required")
	}
	login, err := a.accounts.Refresh(r.Context(), req.RefreshToken)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"access_token": login.AccessToken, "refresh_token": login.RefreshToken, "expires_in_ms": login.ExpiresInMS,
	}, nil
}

// logout serves POST /_matrix/client/v3/logout.
func (a *API) logout(r *http.Request, s *accounts.Session) (any, error) {
	if _, err := a.accounts.DeleteDevices(r.Context(), s.UserID, []string{s.DeviceID}, ""); err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}

// logoutAll serves POST /_matrix/client/v3/logout/all.
func (a *API) logoutAll(r *http.Request, s *accounts.Session) (any, error) {
	if _, err := a.accounts.DeleteDevices(r.Context(), s.UserID, nil, ""); err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}
