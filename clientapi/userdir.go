package clientapi

import (
	"net/http"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
)

const (
	userDirDefaultLimit = 10
	userDirMaxLimit     = 100
)

// searchUserDirectory serves POST /_matrix/client/v3/user_directory/search:
// users the requester shares a room with and users in public rooms whose
// user ID or display name matches (local rooms' members; no remote query).
func (a *API) searchUserDirectory(r *http.Request, s *accounts.Session) (any, error) {
	var req struct {
		SearchTerm *string `json:"search_term"`
		Limit      *int    `json:"limit"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.SearchTerm == nil {
		return nil, httputil.MissingParam("search_term is required")
	}
	limit := userDirDefaultLimit
	if req.Limit != nil {
		if *req.Limit < 0 {
			return nil, httputil.InvalidParam("limit must not be negative")
		}
		limit = min(*req.Limit, userDirMaxLimit)
	}
	users, limited, err := a.db.SearchUserDirectory(r.Context(), s.UserID, *req.SearchTerm, limit)
	if err != nil {
		return nil, err
	}
	type result struct {
		UserID      string `json:"user_id"`
		DisplayName string `json:"display_name,omitempty"`
		AvatarURL   string `json:"avatar_url,omitempty"`
	}
	results := make([]result, 0, len(users))
	for _, u := range users {
		results = append(results, result{UserID: u.UserID, DisplayName: u.DisplayName, AvatarURL: u.AvatarURL})
	}
	return map[string]any{"limited": limited, "results": results}, nil
}
