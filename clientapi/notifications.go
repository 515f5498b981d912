package clientapi

import (
	"encoding/json"
	"net/http"
	"strconv"

	"matrixhs/clientapi/internal/roomview"
	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
)

// getNotifications serves GET /_matrix/client/v3/notifications.
func (a *API) getNotifications(r *http.Request, s *accounts.Session) (any, error) {
	q := r.URL.Query()
	var before int64
	if from := q.Get("from"); from != "" {
		pos, err := roomview.ParseToken(from)
		if err != nil {
			return nil, err
		}
		before = pos
	}
	limit := 20
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			return nil, httputil.InvalidParam("limit must be a positive integer")
		}
		limit = min(n, 100)
	}
	only := q.Get("only")
	if only != "" && only != "highlight" {
		return nil, httputil.InvalidParam("only must be highlight")
	}
	list, err := a.db.Notifications(r.Context(), s.UserID, before, limit, only == "highlight")
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(list))
	for i := range list {
		n := &list[i]
		out = append(out, map[string]any{
			"actions": json.RawMessage(n.Actions),
			"event":   a.view.ClientEvent(r.Context(), &n.Event, s.DeviceID),
			"read":    n.Read,
			"room_id": n.Event.RoomID,
			"ts":      n.Event.OriginTS,
		})
	}
	resp := map[string]any{"notifications": out}
	if len(list) == limit {
		resp["next_token"] = roomview.MakeToken(list[len(list)-1].Event.StreamPos)
	}
	return resp, nil
}
