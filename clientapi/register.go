package clientapi

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"matrixhs/clientapi/internal/users"
	"matrixhs/config"
	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

type registerRequest struct {
	Auth                     *uiaAuth `json:"auth"`
	Username                 string   `json:"username"`
	Password                 string   `json:"password"`
	DeviceID                 string   `json:"device_id"`
	InitialDeviceDisplayName string   `json:"initial_device_display_name"`
	InhibitLogin             bool     `json:"inhibit_login"`
	RefreshToken             bool     `json:"refresh_token"`
}

// registerFlows are the UIA flows of the configured registration mode.
func (a *API) registerFlows() [][]string {
	if a.cfg.Registration.Mode == config.RegistrationToken {
		return [][]string{{stageRegistrationToken}}
	}
	return [][]string{{stageDummy}}
}

// registerAccount serves POST /_matrix/client/v3/register.
func (a *API) registerAccount(r *http.Request) (any, error) {
	if httputil.AccessToken(r) != "" {
		// Only appservices register with a token (Synapse's rule).
		return a.registerAppServiceUser(r)
	}
	if kind := r.URL.Query().Get("kind"); kind == "guest" {
		return nil, httputil.Forbidden("Guest access is not enabled on this server")
	} else if kind != "" && kind != "user" {
		return nil, httputil.InvalidParam("kind must be user or guest")
	}
	if a.cfg.Registration.Mode == config.RegistrationDisabled {
		return nil, httputil.Forbidden("Registration is disabled on this server")
	}
	var req registerRequest
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Username == "" {
		req.Username = strings.ToLower(accounts.NewDeviceID())
	}
	// Like Synapse, capitals are folded so "Alice" registers @alice.
	req.Username = users.LowerASCII(req.Username)
	// Name problems are reported before authentication, so a client can
	// correct the name without redoing the stages.
	if err := a.accounts.Available(r.Context(), req.Username); err != nil {
		return nil, err
	}
	if err := a.checkNotExclusive(req.Username); err != nil {
		return nil, err
	}
	res, err := a.checkUIA(r, req.Auth, uiaRequest{flows: a.registerFlows(), checkRegToken: a.registrationTokenUsable,
		newSession: func() error { return a.allowSignUp(r) }})
	if err != nil {
		return nil, err
	}
	if req.Password == "" {
		return nil, httputil.MissingParam("password is required")
	}
	login, err := a.accounts.Register(r.Context(), accounts.Registration{
		Localpart:         req.Username,
		Password:          req.Password,
		RegistrationToken: res.regToken,
		InhibitLogin:      req.InhibitLogin,
		Device: accounts.NewDevice{
			DeviceID: req.DeviceID, DisplayName: req.InitialDeviceDisplayName,
			IP: clientIP(r), Refresh: req.RefreshToken,
		},
	})
	if err != nil {
		return nil, err
	}
	return login, nil
}

// maxRegistrationAddresses bounds the sign-up limiter's table (see
// internal/ratelimit: a penalty is never dropped early).
const maxRegistrationAddresses = 20_000

// allowSignUp spends one of the client address's sign-ups (rc_registration):
// every new registration session costs one, so accounts and sessions from
// one address are both limited.
func (a *API) allowSignUp(r *http.Request) error {
	if wait := a.registrations.Allow(addressKey(clientIP(r))); wait > 0 {
		return limitExceeded("Too many registrations from this address; try again later", wait)
	}
	return nil
}

func (a *API) registrationTokenUsable(ctx context.Context, token string) (bool, error) {
	if a.cfg.Registration.Mode != config.RegistrationToken || token == "" {
		return false, nil
	}
	t, err := a.db.RegistrationToken(ctx, token)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return t.Usable(a.accounts.Now().UnixMilli()), nil
}

// registerAvailable serves GET /_matrix/client/v3/register/available;
// like Synapse, only while registration is enabled.
func (a *API) registerAvailable(r *http.Request) (any, error) {
	if a.cfg.Registration.Mode == config.RegistrationDisabled {
		return nil, httputil.Forbidden("Registration is disabled on this server")
	}
	name := r.URL.Query().Get("username")
	if name == "" {
		return nil, httputil.MissingParam("username is required")
	}
	if err := a.accounts.Available(r.Context(), name); err != nil {
		return nil, err
	}
	if err := a.checkNotExclusive(name); err != nil {
		return nil, err
	}
	return map[string]bool{"available": true}, nil
}

// registrationTokenValidity serves GET /_matrix/client/v1/register/m.login.registration_token/validity.
func (a *API) registrationTokenValidity(r *http.Request) (any, error) {
	if a.cfg.Registration.Mode != config.RegistrationToken {
		return nil, httputil.Forbidden("Registration tokens are not enabled on this server")
	}
	token := r.URL.Query().Get("token")
	if token == "" {
		return nil, httputil.MissingParam("token is required")
	}
	ok, err := a.registrationTokenUsable(r.Context(), token)
	if err != nil {
		return nil, err
	}
	return map[string]bool{"valid": ok}, nil
}
