package clientapi

import (
	"errors"
	"net/http"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// lookupProfile returns a local user's account for profile reads.
func (a *API) lookupProfile(r *http.Request) (*storage.Account, error) {
	userID := pathVar(r, "userId")
	acc, err := a.db.Account(r.Context(), userID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("Profile not found")
	}
	return acc, err
}

// getProfile serves GET /_matrix/client/v3/profile/{userId}.
func (a *API) getProfile(r *http.Request) (any, error) {
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
	acc, err := a.lookupProfile(r)
	if err != nil {
		return nil, err
	}
	field := pathVar(r, "field")
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
