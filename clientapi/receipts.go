package clientapi

import (
	"context"
	"encoding/json"
	"net/http"

	"matrixhs/internal/accounts"
	"matrixhs/internal/ephemeral"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// setFullyRead moves the m.fully_read marker (room account data).
func (a *API) setFullyRead(ctx context.Context, s *accounts.Session, roomID, eventID string) error {
	acc, err := a.view.Access(ctx, s.UserID, roomID)
	if err != nil {
		return err
	}
	if _, err := a.view.VisibleEvent(ctx, acc, eventID); err != nil {
		return err
	}
	content, _ := json.Marshal(map[string]string{"event_id": eventID})
	return a.db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.PutAccountData(ctx, s.UserID, roomID, "m.fully_read", content)
		return err
	})
}

// postReceipt serves POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}.
func (a *API) postReceipt(r *http.Request, s *accounts.Session) (any, error) {
	var body struct {
		ThreadID string `json:"thread_id"`
	}
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	roomID, typ, eventID := pathVar(r, "roomId"), pathVar(r, "receiptType"), pathVar(r, "eventId")
	if typ != "m.fully_read" {
		// A receipt (the service checks its type).
		err := a.eph.PutReceipt(r.Context(), ephemeral.Receipt{UserID: s.UserID, RoomID: roomID, Type: typ,
			EventID: eventID, ThreadID: body.ThreadID})
		if err != nil {
			return nil, err
		}
		return httputil.Empty, nil
	}
	if body.ThreadID != "" {
		return nil, httputil.InvalidParam("m.fully_read cannot be threaded")
	}
	if err := a.setFullyRead(r.Context(), s, roomID, eventID); err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}

// postReadMarkers serves POST /_matrix/client/v3/rooms/{roomId}/read_markers.
func (a *API) postReadMarkers(r *http.Request, s *accounts.Session) (any, error) {
	var body struct {
		FullyRead   string `json:"m.fully_read"`
		Read        string `json:"m.read"`
		ReadPrivate string `json:"m.read.private"`
	}
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	roomID := pathVar(r, "roomId")
	if body.FullyRead != "" {
		if err := a.setFullyRead(r.Context(), s, roomID, body.FullyRead); err != nil {
			return nil, err
		}
	}
	for typ, ev := range map[string]string{"m.read": body.Read, "m.read.private": body.ReadPrivate} {
		if ev != "" {
			if err := a.eph.PutReceipt(r.Context(), ephemeral.Receipt{UserID: s.UserID, RoomID: roomID, Type: typ, EventID: ev}); err != nil {
				return nil, err
			}
		}
	}
	return httputil.Empty, nil
}
