package admin

import (
	"encoding/json"
	"errors"
	"net/http"

	"matrixhs/clientapi/internal/users"
	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/internal/ids"
	"matrixhs/internal/matrixerr"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

// adminSendServerNotice serves POST /_synapse/admin/v1/send_server_notice
// and PUT .../send_server_notice/{txnId} (Synapse's admin API): an event
// from the server notices user into the user's notices room. A repeated
// transaction ID of the same admin device answers the first event.
func (a *API) adminSendServerNotice(r *http.Request, s *accounts.Session) (any, error) {
	var req struct {
		UserID   *string         `json:"user_id"`
		Content  json.RawMessage `json:"content"`
		Type     *string         `json:"type"`
		StateKey *string         `json:"state_key"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.UserID == nil || len(req.Content) == 0 {
		return nil, httputil.MissingParam("user_id and content are required")
	}
	var content map[string]json.RawMessage
	if json.Unmarshal(req.Content, &content) != nil || content == nil {
		return nil, httputil.BadJSON("content must be an object")
	}
	typ := "m.room.message"
	if req.Type != nil {
		typ = *req.Type
	}
	if typ == "" || len(typ) > 255 {
		return nil, httputil.BadJSON("type must be a non-empty event type")
	}
	if a.cfg.ServerNoticesUserID() == "" {
		return nil, &httputil.Error{Status: http.StatusBadRequest, Code: "M_UNKNOWN", Msg: roomserver.ErrNoticesDisabled.Error()}
	}
	if err := ids.UserID(*req.UserID); err != nil {
		return nil, httputil.InvalidParam("%v", err)
	}
	if a.accounts.UserID(users.Localpart(*req.UserID)) != *req.UserID {
		return nil, &httputil.Error{Status: http.StatusBadRequest, Code: "M_UNKNOWN", Msg: "Server notices can only be sent to local users"}
	}
	if _, err := a.db.Account(r.Context(), *req.UserID); errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("User not found")
	} else if err != nil {
		return nil, err
	}
	notice := roomserver.Notice{UserID: *req.UserID, Type: typ, StateKey: req.StateKey, Content: req.Content}
	if txn := httputil.PathVar(r, "txnId"); txn != "" {
		notice.TxnID, notice.TxnScope = txn, "server_notice|"+s.UserID+"|"+s.DeviceID
	}
	sent, err := a.rooms.SendServerNotice(r.Context(), notice)
	if errors.Is(err, roomserver.ErrNoticesDisabled) {
		return nil, &httputil.Error{Status: http.StatusBadRequest, Code: "M_UNKNOWN", Msg: err.Error()}
	}
	if err != nil {
		return nil, matrixerr.From(err)
	}
	return map[string]string{"event_id": sent.EventID}, nil
}
