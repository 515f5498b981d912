package mediaapi

import (
	"errors"
	"net/http"

	"github.com/gorilla/mux"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// The media part of the Synapse-compatible admin API: list a user's uploads,
// delete one. Server admins only.

func (m *Media) adminRoutes(r *mux.Router) {
	r.Handle("/_synapse/admin/v1/users/{userId}/media", m.admin(m.adminUserMedia)).Methods(http.MethodGet)
	r.Handle("/_synapse/admin/v1/media/{serverName}/{mediaId}", m.admin(m.adminDeleteMedia)).Methods(http.MethodDelete)
}

// admin is auth for server admins, answering JSON.
func (m *Media) admin(h func(r *http.Request, s *accounts.Session) (any, error)) http.Handler {
	return m.auth(func(w http.ResponseWriter, r *http.Request, s *accounts.Session) error {
		acc, err := m.db.Account(r.Context(), s.UserID)
		if err != nil {
			return err
		}
		if !acc.IsAdmin {
			return httputil.Forbidden("You are not a server admin")
		}
		body, err := h(r, s)
		if err != nil {
			return err
		}
		httputil.WriteJSON(w, http.StatusOK, body)
		return nil
	})
}

func (m *Media) adminUserMedia(r *http.Request, _ *accounts.Session) (any, error) {
	userID := mux.Vars(r)["userId"]
	if _, err := m.db.Account(r.Context(), userID); errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("User not found")
	} else if err != nil {
		return nil, err
	}
	from, limit, err := httputil.OffsetLimit(r.URL.Query(), 100)
	if err != nil {
		return nil, err
	}
	all, err := m.db.UserMedia(r.Context(), userID)
	if err != nil {
		return nil, err
	}
	page := []map[string]any{}
	for i := from; i < len(all) && i < from+limit; i++ {
		md := all[i]
		page = append(page, map[string]any{"media_id": md.MediaID, "media_type": md.ContentType, "media_length": md.Size,
			"upload_name": md.UploadName, "created_ts": md.CreatedTS, "last_access_ts": nil, "quarantined_by": nil,
			"safe_from_quarantine": false})
	}
	out := map[string]any{"media": page, "total": len(all)}
	if from+limit < len(all) {
		out["next_token"] = from + limit
	}
	return out, nil
}

func (m *Media) adminDeleteMedia(r *http.Request, _ *accounts.Session) (any, error) {
	vars := mux.Vars(r)
	if vars["serverName"] != m.serverName {
		return nil, httputil.InvalidParam("Only local media can be deleted")
	}
	if _, err := deleteMediaRow(r.Context(), m.db, m.store, vars["serverName"], vars["mediaId"]); errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("No such media")
	} else if err != nil {
		return nil, err
	}
	return map[string]any{"deleted_media": []string{vars["mediaId"]}, "total": 1}, nil
}
