package clientapi

import (
	"net/http"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
)

// whoami serves GET /_matrix/client/v3/account/whoami.
func (a *API) whoami(_ *http.Request, s *accounts.Session) (any, error) {
	return map[string]any{"user_id": s.UserID, "device_id": s.DeviceID, "is_guest": false}, nil
}

// passwordUIA demands the user's password again for sensitive operations.
// An appservice acting for its user is not asked (its users have no
// password; MSC4190 lets it manage their devices and cross-signing keys).
func (a *API) passwordUIA(r *http.Request, s *accounts.Session, auth *uiaAuth) error {
	if a.appsvc.Caller(s) != nil {
		return nil
	}
	_, err := a.checkUIA(r, auth, uiaRequest{flows: [][]string{{stagePassword}}, userID: s.UserID})
	return err
}

// changePassword serves POST /_matrix/client/v3/account/password.
func (a *API) changePassword(r *http.Request, s *accounts.Session) (any, error) {
	var req struct {
		Auth          *uiaAuth `json:"auth"`
		NewPassword   string   `json:"new_password"`
		LogoutDevices *bool    `json:"logout_devices"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if err := a.passwordUIA(r, s, req.Auth); err != nil {
		return nil, err
	}
	if req.NewPassword == "" {
		return nil, httputil.MissingParam("new_password is required")
	}
	logout := req.LogoutDevices == nil || *req.LogoutDevices
	if err := a.accounts.ChangePassword(r.Context(), s.UserID, req.NewPassword, logout, s.DeviceID); err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}

// deactivate serves POST /_matrix/client/v3/account/deactivate.
func (a *API) deactivate(r *http.Request, s *accounts.Session) (any, error) {
	var req struct {
		Auth  *uiaAuth `json:"auth"`
		Erase bool     `json:"erase"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if err := a.passwordUIA(r, s, req.Auth); err != nil {
		return nil, err
	}
	if err := a.users.Deactivate(r.Context(), s.UserID, req.Erase); err != nil {
		return nil, err
	}
	return map[string]string{"id_server_unbind_result": "no-support"}, nil
}

// threePIDs serves GET /_matrix/client/v3/account/3pid: this server binds no
// third-party identifiers.
func (a *API) threePIDs(*http.Request, *accounts.Session) (any, error) {
	return map[string]any{"threepids": []any{}}, nil
}

// requestOpenIDToken serves POST /_matrix/client/v3/user/{userId}/openid/request_token.
func (a *API) requestOpenIDToken(r *http.Request, s *accounts.Session) (any, error) {
	if pathVar(r, "userId") != s.UserID {
		return nil, httputil.Forbidden("Cannot request an OpenID token for another user")
	}
	var body map[string]any
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	token, err := a.accounts.IssueOpenIDToken(r.Context(), s.UserID)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"access_token":       token,
		"token_type":         "Bearer",
		"matrix_server_name": a.cfg.Server.Name,
		"expires_in":         int(accounts.OpenIDTokenLifetime.Seconds()),
	}, nil
}
