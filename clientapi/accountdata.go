package clientapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/gorilla/mux"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// accountDataTarget checks the path of an account-data request and returns
// the room ("" for global) and type.
func accountDataTarget(r *http.Request, s *accounts.Session) (roomID, typ string, err error) {
	if err := requireSelf(s, pathVar(r, "userId")); err != nil {
		return "", "", err
	}
	typ = pathVar(r, "type")
	if typ == "" || len(typ) > 255 {
		return "", "", httputil.InvalidParam("account data type must be 1 to 255 bytes")
	}
	if _, ok := mux.Vars(r)["roomId"]; ok {
		roomID = pathVar(r, "roomId")
		if !strings.HasPrefix(roomID, "!") || len(roomID) > 255 {
			return "", "", httputil.InvalidParam("%q is not a room ID", roomID)
		}
	}
	return roomID, typ, nil
}

// getAccountData serves GET /_matrix/client/v3/user/{userId}[/rooms/{roomId}]/account_data/{type}.
func (a *API) getAccountData(r *http.Request, s *accounts.Session) (any, error) {
	roomID, typ, err := accountDataTarget(r, s)
	if err != nil {
		return nil, err
	}
	content, err := a.db.AccountData(r.Context(), s.UserID, roomID, typ)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("Account data not found")
	}
	if err != nil {
		return nil, err
	}
	return json.RawMessage(content), nil
}

// putAccountData serves PUT /_matrix/client/v3/user/{userId}[/rooms/{roomId}]/account_data/{type}.
func (a *API) putAccountData(r *http.Request, s *accounts.Session) (any, error) {
	roomID, typ, err := accountDataTarget(r, s)
	if err != nil {
		return nil, err
	}
	// These types have their own endpoints, which keep them consistent.
	if typ == "m.push_rules" || (roomID != "" && typ == "m.fully_read") {
		return nil, &httputil.Error{Status: http.StatusMethodNotAllowed, Code: "M_BAD_JSON",
			Msg: "Cannot set " + typ + " through this API"}
	}
	body, err := httputil.ReadBody(r)
	if err != nil {
		return nil, err
	}
	var obj map[string]json.RawMessage
	if err := httputil.Unmarshal(body, &obj); err != nil {
		return nil, err
	}
	var compacted bytes.Buffer
	if err := json.Compact(&compacted, bytes.TrimSpace(body)); err != nil {
		return nil, httputil.NotJSON("request body is not valid JSON")
	}
	err = a.db.Write(r.Context(), func(tx *storage.Tx) error {
		if _, err := tx.PutAccountData(r.Context(), s.UserID, roomID, typ, compacted.Bytes()); err != nil {
			return err
		}
		if roomID == "" && typ == "m.ignored_user_list" {
			// The ignore list decides whose events notify.
			tx.OnCommit(func() { a.rooms.InvalidatePushRules(s.UserID) })
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}
