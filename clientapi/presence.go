package clientapi

import (
	"net/http"
	"slices"
	"time"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
)

// maxTypingTimeout bounds how long a typing notification lasts.
const maxTypingTimeout = 2 * time.Minute

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
	roomID := pathVar(r, "roomId")
	acc, err := a.access(r.Context(), s.UserID, roomID)
	if err != nil || acc.viewer.Membership() != "join" {
		return nil, httputil.Forbidden("You are not joined to this room")
	}
	timeout := 30 * time.Second
	if body.Timeout != nil {
		timeout = min(max(time.Duration(*body.Timeout)*time.Millisecond, time.Second), maxTypingTimeout)
	}
	a.eph.SetTyping(acc.info.NID, roomID, s.UserID, *body.Typing, timeout)
	return httputil.Empty, nil
}

// getPresence serves GET /_matrix/client/v3/presence/{userId}/status.
func (a *API) getPresence(r *http.Request, s *accounts.Session) (any, error) {
	target := pathVar(r, "userId")
	if target != s.UserID {
		mates, err := a.db.RoomMates(r.Context(), s.UserID)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(mates, target) {
			return nil, httputil.Forbidden("You do not share a room with %s", target)
		}
	}
	p, _ := a.eph.GetPresence(target)
	return p, nil
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
	switch body.Presence {
	case "online", "unavailable", "offline":
	default:
		return nil, httputil.InvalidParam("presence must be online, unavailable or offline")
	}
	a.eph.SetPresence(s.UserID, body.Presence, body.StatusMsg, body.Presence == "online")
	return httputil.Empty, nil
}
