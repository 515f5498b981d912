package clientapi

import (
	"errors"
	"net/http"
	"strings"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/internal/ids"
	"matrixhs/storage"
)

// lookupProfile returns a local user's account for profile reads.
func (a *API) lookupProfile(r *http.Request) (*storage.Account, error) {
	userID := pathVar(r, "userId")
	acc, err := a.db.Account(r.Context(), userID)
	if errors.Is(err, storage.ErrNotFound) && a.appsvc.QueryUser(r.Context(), userID) {
		// An appservice created the user it was asked about.
		acc, err = a.db.Account(r.Context(), userID)
	}
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("Profile not found")
	}
	return acc, err
}

// remoteProfile asks another server for its user's profile, when the user
// is of another server and federation is on; ok is false for local users.
func (a *API) remoteProfile(r *http.Request, field string) (profile map[string]string, ok bool, err error) {
	userID := pathVar(r, "userId")
	_, server, found := strings.Cut(userID, ":")
	if !found || server == a.cfg.Server.Name {
		return nil, false, nil
	}
	if err := ids.UserID(userID); err != nil {
		return nil, true, httputil.InvalidParam("%v", err)
	}
	if a.profiles == nil {
		return nil, true, httputil.NotFound("Profile not found")
	}
	profile, err = a.profiles.QueryProfile(r.Context(), userID, field)
	return profile, true, err
}

// getProfile serves GET /_matrix/client/v3/profile/{userId}.
func (a *API) getProfile(r *http.Request) (any, error) {
	if profile, remote, err := a.remoteProfile(r, ""); remote {
		return profile, err
	}
	acc, err := a.lookupProfile(r)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	if acc.DisplayName != "" {
		out["displayname"] = acc.DisplayName
	}
	if acc.AvatarURL != "" {
		out["avatar_url"] = acc.AvatarURL
	}
	return out, nil
}

// getProfileField serves GET /_matrix/client/v3/profile/{userId}/{displayname|avatar_url}.
func (a *API) getProfileField(r *http.Request) (any, error) {
	field := pathVar(r, "field")
	if profile, remote, err := a.remoteProfile(r, field); remote {
		if err != nil {
			return nil, err
		}
		if profile[field] == "" {
			return nil, httputil.NotFound("No %s set for this user", field)
		}
		return map[string]string{field: profile[field]}, nil
	}
	acc, err := a.lookupProfile(r)
	if err != nil {
		return nil, err
	}
	value := acc.DisplayName
	if field == "avatar_url" {
		value = acc.AvatarURL
	}
	if value == "" {
		return nil, httputil.NotFound("No %s set for this user", field)
	}
	return map[string]string{field: value}, nil
}

// setProfileField serves PUT /_matrix/client/v3/profile/{userId}/{displayname|avatar_url}.
func (a *API) setProfileField(r *http.Request, s *accounts.Session) (any, error) {
	if err := requireSelf(s, pathVar(r, "userId")); err != nil {
		return nil, err
	}
	field := pathVar(r, "field")
	var body map[string]any
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	value := ""
	switch v := body[field].(type) {
	case nil:
	case string:
		value = v
	default:
		return nil, httputil.BadJSON("%s must be a string", field)
	}
	if err := a.users.SetProfileField(r.Context(), s.UserID, s.DeviceID, field, value); err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}
