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

func (m *Media) adminRoutes(rt *httputil.Router) {
	rt.Exact(http.MethodGet, "/_synapse/admin/v1/users/{userId}/media", m.authn.AdminJSON(m.adminUserMedia))
	rt.Exact(http.MethodDelete, "/_synapse/admin/v1/media/{serverName}/{mediaId}", m.authn.AdminJSON(m.adminDeleteMedia))
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
