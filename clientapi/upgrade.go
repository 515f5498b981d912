package clientapi

import (
	"net/http"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/internal/matrixerr"
	"matrixhs/roomserver"
)

// upgradeRoom serves POST /_matrix/client/v3/rooms/{roomId}/upgrade.
func (a *API) upgradeRoom(r *http.Request, s *accounts.Session) (any, error) {
	roomID, err := roomIDVar(r)
	if err != nil {
		return nil, err
	}
	var req struct {
		NewVersion         string   `json:"new_version"`
		AdditionalCreators []string `json:"additional_creators"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.NewVersion == "" {
		return nil, httputil.MissingParam("new_version is required")
	}
	acc, err := a.db.Account(r.Context(), s.UserID)
	if err != nil {
		return nil, err
	}
	newRoom, err := a.rooms.UpgradeRoom(r.Context(), roomserver.UpgradeRequest{
		RoomID: roomID, UserID: s.UserID, DeviceID: s.DeviceID, NewVersion: req.NewVersion,
		AdditionalCreators: req.AdditionalCreators, DisplayName: acc.DisplayName, AvatarURL: acc.AvatarURL,
	})
	if err != nil {
		return nil, matrixerr.From(err)
	}
	return map[string]string{"replacement_room": newRoom}, nil
}
