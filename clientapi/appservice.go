package clientapi

import (
	"errors"
	"net/http"

	"matrixhs/appservice"
	"matrixhs/clientapi/internal/users"
	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// The client API's side of application services (package appservice):
// their registrations and logins, ping, the directory of their networks,
// and the namespaces other users may not take.

const loginTypeAppService = "m.login.application_service"

// callerAppService is the appservice whose as_token the request carries
// (401 when it carries another token or none).
func (a *API) callerAppService(r *http.Request) (*appservice.Registration, error) {
	token := httputil.AccessToken(r)
	if token == "" {
		return nil, httputil.MissingToken("Missing access token")
	}
	reg := a.appsvc.ByToken(token)
	if reg == nil {
		return nil, httputil.UnknownToken(false, "Unknown application service token")
	}
	return reg, nil
}

// registerAppServiceUser serves POST /register with an access token: only
// an appservice may do that, with type m.login.application_service, for a
// user of its namespaces (Synapse's rules; no password, no UIA, allowed
// while registration is disabled).
func (a *API) registerAppServiceUser(r *http.Request) (any, error) {
	reg, err := a.callerAppService(r)
	if err != nil {
		return nil, err
	}
	var req struct {
		Type string `json:"type"`
		registerRequest
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Type != loginTypeAppService {
		return nil, httputil.Unknown("An access token should not be provided on requests to /register (except if type is %s)", loginTypeAppService)
	}
	if req.Username == "" {
		return nil, httputil.MissingParam("username is required")
	}
	localpart := users.LowerASCII(req.Username)
	if err := a.accounts.ValidateLocalpart(localpart); err != nil {
		return nil, err
	}
	userID := a.accounts.UserID(localpart)
	if !reg.IsUserInNamespace(userID) {
		return nil, httputil.Exclusive("Invalid user localpart for this application service.")
	}
	if other := a.appsvc.ExclusiveUser(userID); other != nil && other.ID != reg.ID {
		return nil, httputil.Exclusive("This user ID is reserved by an application service.")
	}
	login, err := a.accounts.Register(r.Context(), accounts.Registration{
		Localpart: localpart, NoPassword: true,
		// MSC4190 appservices create their users' devices themselves.
		InhibitLogin: req.InhibitLogin || reg.MSC4190,
		Device: accounts.NewDevice{
			DeviceID: req.DeviceID, DisplayName: req.InitialDeviceDisplayName, IP: clientIP(r), Refresh: req.RefreshToken,
		},
	})
	if err != nil {
		return nil, err
	}
	return login, nil
}

// checkNotExclusive refuses a user ID that an appservice claims exclusively
// (400 M_EXCLUSIVE) to everyone but that appservice.
func (a *API) checkNotExclusive(localpart string) error {
	if a.appsvc.ExclusiveUser(a.accounts.UserID(users.LowerASCII(localpart))) != nil {
		return httputil.Exclusive("This user ID is reserved by an application service.")
	}
	return nil
}

// loginAppService serves POST /login with type m.login.application_service.
func (a *API) loginAppService(r *http.Request, req loginRequest, user string) (*accounts.Login, error) {
	reg, err := a.callerAppService(r)
	if err != nil {
		return nil, err
	}
	if reg.MSC4190 {
		return nil, &httputil.Error{Status: http.StatusBadRequest, Code: "M_APPSERVICE_LOGIN_UNSUPPORTED",
			Msg: "This appservice has MSC4190 enabled, so appservice login cannot be used."}
	}
	localpart, err := a.accounts.ParseLocalUser(user)
	if err != nil {
		return nil, httputil.Forbidden("Invalid user for this application service")
	}
	userID := a.accounts.UserID(localpart)
	if !reg.IsUserInNamespace(userID) {
		return nil, httputil.Forbidden("Invalid access_token")
	}
	if _, err := a.db.Account(r.Context(), userID); errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.Forbidden("Invalid username or password")
	} else if err != nil {
		return nil, err
	}
	return a.accounts.LoginUser(r.Context(), userID, accounts.NewDevice{
		DeviceID: req.DeviceID, DisplayName: req.InitialDeviceDisplayName, IP: clientIP(r), Refresh: req.RefreshToken,
	})
}

// createAppServiceDevice creates a device of an appservice user through
// PUT /devices/{deviceId} (MSC4190); false when the session may not.
func (a *API) createAppServiceDevice(r *http.Request, s *accounts.Session, deviceID string, displayName *string) (bool, error) {
	reg := a.appsvc.Caller(s)
	if reg == nil || !reg.MSC4190 {
		return false, nil
	}
	name := ""
	if displayName != nil {
		name = *displayName
	}
	_, err := a.accounts.LoginUser(r.Context(), s.UserID, accounts.NewDevice{DeviceID: deviceID, DisplayName: name, IP: clientIP(r)})
	return true, err
}

// pingAppService serves POST /_matrix/client/v1/appservice/{appserviceId}/ping.
func (a *API) pingAppService(r *http.Request, s *accounts.Session) (any, error) {
	reg := a.appsvc.Caller(s)
	if reg == nil || reg.ID != pathVar(r, "appserviceId") {
		return nil, httputil.Forbidden("Only the application service itself may ping it")
	}
	var req struct {
		TransactionID *string `json:"transaction_id"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	took, err := a.appsvc.Ping(r.Context(), reg, req.TransactionID)
	if err != nil {
		return nil, err
	}
	return map[string]int64{"duration_ms": took.Milliseconds()}, nil
}

// putAppServiceRoomVisibility serves PUT
// /_matrix/client/v3/directory/list/appservice/{networkId}/{roomId}: an
// appservice publishes (or hides) a room of its network in the public
// room directory.
func (a *API) putAppServiceRoomVisibility(r *http.Request, s *accounts.Session) (any, error) {
	if a.appsvc.Caller(s) == nil {
		return nil, httputil.Forbidden("Only application services can use the /directory/list/appservice endpoint")
	}
	var body struct {
		Visibility *string `json:"visibility"`
	}
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.Visibility == nil {
		return nil, httputil.MissingParam("visibility is required")
	}
	var public bool
	switch *body.Visibility {
	case "public":
		public = true
	case "private":
	default:
		return nil, httputil.InvalidParam("visibility must be public or private")
	}
	info, err := a.db.Room(r.Context(), pathVar(r, "roomId"))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("Room not found")
	}
	if err != nil {
		return nil, err
	}
	if info.Published != public {
		err := a.db.Write(r.Context(), func(tx *storage.Tx) error { return tx.SetRoomPublished(r.Context(), info.NID, public) })
		if err != nil {
			return nil, err
		}
	}
	return httputil.Empty, nil
}

// thirdPartyProtocols serves GET /thirdparty/protocols from the appservices.
func (a *API) thirdPartyProtocols(r *http.Request, _ *accounts.Session) (any, error) {
	return a.appsvc.Protocols(r.Context(), ""), nil
}

// thirdPartyProtocol serves GET /thirdparty/protocol/{protocol}: 404 for a
// protocol no appservice describes (as Synapse).
func (a *API) thirdPartyProtocol(r *http.Request, _ *accounts.Session) (any, error) {
	p := pathVar(r, "protocol")
	if info, ok := a.appsvc.Protocols(r.Context(), p)[p]; ok {
		return info, nil
	}
	return nil, httputil.NotFound("Unknown protocol %q", p)
}

// thirdPartyLookup serves the location and user lookups, by protocol
// (/thirdparty/location/{protocol}, /thirdparty/user/{protocol}) and in
// reverse (by alias or user ID), answered by the appservices; with none
// that bridges the protocol it is 200 [] (as Synapse: Element probes
// protocols such as im.vector.protocol.sip_virtual and treats errors as
// failures).
func (a *API) thirdPartyLookup(kind string) authed {
	return func(r *http.Request, _ *accounts.Session) (any, error) {
		return a.appsvc.ThirdPartyLookup(r.Context(), kind, pathVar(r, "protocol"), r.URL.Query()), nil
	}
}

// adminAppServices serves GET /_synapse/admin/v1/appservices (this
// server's own): the registered appservices and how delivery to each
// stands, so that a bridge that is down shows at once.
func (a *API) adminAppServices(r *http.Request, _ *accounts.Session) (any, error) {
	list, err := a.appsvc.Statuses(r.Context())
	if err != nil {
		return nil, err
	}
	return map[string]any{"appservices": list, "total": len(list)}, nil
}
