package clientapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sort"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// sendToDevice serves PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}.
// Messages to local devices are queued under one stream position and
// delivered by /sync; a retried transaction ID is not queued again. There is
// no federation yet, so messages for remote users are dropped (and logged).
func (a *API) sendToDevice(r *http.Request, s *accounts.Session) (any, error) {
	evType, txnID := pathVar(r, "eventType"), pathVar(r, "txnId")
	if evType == "" || len(evType) > 255 {
		return nil, httputil.InvalidParam("event type must be 1 to 255 bytes")
	}
	if txnID == "" || len(txnID) > 255 {
		return nil, httputil.InvalidParam("transaction ID must be 1 to 255 bytes")
	}
	var req struct {
		Messages map[string]map[string]json.RawMessage `json:"messages"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Messages == nil {
		return nil, httputil.MissingParam("messages is required")
	}
	users := make([]string, 0, len(req.Messages))
	for u := range req.Messages {
		users = append(users, u)
	}
	sort.Strings(users)
	var msgs []storage.ToDeviceMessage
	remote := 0
	for _, userID := range users {
		devices := req.Messages[userID]
		if serverOf(userID) == "" {
			return nil, httputil.InvalidParam("%q is not a user ID", userID)
		}
		if !a.isLocalUser(userID) {
			remote += len(devices)
			continue
		}
		ids := make([]string, 0, len(devices))
		for d := range devices {
			ids = append(ids, d)
		}
		sort.Strings(ids)
		for _, deviceID := range ids {
			content := bytes.TrimSpace(devices[deviceID])
			if len(content) == 0 || content[0] != '{' {
				return nil, httputil.BadJSON("message content for %s %s must be an object", userID, deviceID)
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, content); err != nil {
				return nil, httputil.BadJSON("bad message content: %v", err)
			}
			msgs = append(msgs, storage.ToDeviceMessage{UserID: userID, DeviceID: deviceID, Content: compact.Bytes()})
		}
	}
	if remote > 0 {
		httputil.Logger(r.Context()).WithField("messages", remote).WithField("type", evType).
			Warn("dropping to-device messages for remote users: federation is not supported yet")
	}
	ctx := r.Context()
	now := a.accounts.Now().UnixMilli()
	err := a.db.Write(ctx, func(tx *storage.Tx) error {
		_, _, err := tx.QueueToDevice(ctx, s.UserID, s.DeviceID, txnID, evType, msgs, now)
		return err
	})
	if err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}
