package clientapi

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// setReceipt records a read receipt (m.read or m.read.private) after
// checking the event is in the room and visible to the user.
func (a *API) setReceipt(ctx context.Context, s *accounts.Session, roomID, typ, eventID, threadID string) error {
	acc, err := a.access(ctx, s.UserID, roomID)
	if err != nil {
		return err
	}
	if acc.viewer.Membership() != spec.Join {
		return httputil.Forbidden("You are not joined to this room")
	}
	e, err := a.visibleEvent(ctx, acc, eventID)
	if err != nil {
		return err
	}
	return a.db.Write(ctx, func(tx *storage.Tx) error {
		_, err := tx.PutReceipt(ctx, storage.Receipt{
			RoomNID: acc.info.NID, UserID: s.UserID, Type: typ, ThreadID: threadID,
			EventID: e.EventID, EventPos: e.StreamPos, TS: a.accounts.Now().UnixMilli(),
		})
		return err
	})
}

// setFullyRead moves the m.fully_read marker (room account data).
func (a *API) setFullyRead(ctx context.Context, s *accounts.Session, roomID, eventID string) error {
	acc, err := a.access(ctx, s.UserID, roomID)
	if err != nil {
		return err
	}
	if _, err := a.visibleEvent(ctx, acc, eventID); err != nil {
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
	switch typ {
	case "m.read", "m.read.private":
		if err := a.setReceipt(r.Context(), s, roomID, typ, eventID, body.ThreadID); err != nil {
			return nil, err
		}
	case "m.fully_read":
		if body.ThreadID != "" {
			return nil, httputil.InvalidParam("m.fully_read cannot be threaded")
		}
		if err := a.setFullyRead(r.Context(), s, roomID, eventID); err != nil {
			return nil, err
		}
	default:
		return nil, httputil.InvalidParam("unknown receipt type %q", typ)
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
			if err := a.setReceipt(r.Context(), s, roomID, typ, ev, ""); err != nil {
				return nil, err
			}
		}
	}
	return httputil.Empty, nil
}

// receiptEvent builds the m.receipt ephemeral event of a room for a user:
// others' private receipts are left out.
func receiptEvent(receipts []storage.Receipt, userID string) json.RawMessage {
	content := map[string]map[string]map[string]map[string]any{}
	n := 0
	for _, r := range receipts {
		if r.Type == "m.read.private" && r.UserID != userID {
			continue
		}
		if content[r.EventID] == nil {
			content[r.EventID] = map[string]map[string]map[string]any{}
		}
		if content[r.EventID][r.Type] == nil {
			content[r.EventID][r.Type] = map[string]map[string]any{}
		}
		entry := map[string]any{"ts": r.TS}
		if r.ThreadID != "" {
			entry["thread_id"] = r.ThreadID
		}
		content[r.EventID][r.Type][r.UserID] = entry
		n++
	}
	if n == 0 {
		return nil
	}
	out, _ := json.Marshal(map[string]any{"type": "m.receipt", "content": content})
	return out
}
