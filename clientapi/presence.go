package clientapi

import (
	"net/http"
	"time"

	"matrixhs/internal/accounts"
	"matrixhs/internal/ephemeral"
	"matrixhs/internal/httputil"
)

// putTyping serves PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}.
func (a *API) putTyping(r *http.Request, s *accounts.Session) (any, error) {
	if err := requireSelf(s, pathVar(r, "userId")); err != nil {
		return nil, err
	}
	var body struct {
		Typing  *bool  `json:"typing"`
		Timeout *int64 `json:"timeout"`
	}
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.Typing == nil {
		return nil, httputil.MissingParam("typing is required")
	}
	timeout := ephemeral.DefaultTypingTimeout
	if body.Timeout != nil {
		timeout = time.Duration(*body.Timeout) * time.Millisecond
	}
	if err := a.eph.SetTyping(r.Context(), s.UserID, pathVar(r, "roomId"), *body.Typing, timeout); err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}

// getPresence serves GET /_matrix/client/v3/presence/{userId}/status.
func (a *API) getPresence(r *http.Request, s *accounts.Session) (any, error) {
	return a.eph.PresenceOf(r.Context(), s.UserID, pathVar(r, "userId"))
}

// putPresence serves PUT /_matrix/client/v3/presence/{userId}/status.
func (a *API) putPresence(r *http.Request, s *accounts.Session) (any, error) {
	if err := requireSelf(s, pathVar(r, "userId")); err != nil {
		return nil, err
	}
	var body struct {
		Presence  string  `json:"presence"`
		StatusMsg *string `json:"status_msg"`
	}
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if err := a.eph.SetPresence(s.UserID, body.Presence, body.StatusMsg, body.Presence == "online"); err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}
