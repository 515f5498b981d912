package clientapi

import (
	"context"
	"encoding/json"
	"time"

	"matrixhs/clientapi/accounts"
	"matrixhs/storage"
)

// federationOnly are the PDU keys clients never see.
var federationOnly = []string{"auth_events", "prev_events", "depth", "hashes", "signatures", "origin", "prev_state", "membership"}

// clientEvent renders a stored event in the client format: the PDU minus
// federation fields, plus room_id (absent from v12 create events) and the
// unsigned data the spec asks for (age, transaction_id for the sending
// device, prev_content, redacted_because, m.relations).
func (a *API) clientEvent(ctx context.Context, e *storage.Event, deviceID string) json.RawMessage {
	return a.formatEvent(ctx, e, deviceID, a.bundleAggregations(ctx, []storage.Event{*e})[e.EventID])
}

// formatEvent renders one event with the given bundled aggregations (nil for none).
func (a *API) formatEvent(ctx context.Context, e *storage.Event, deviceID string, relations json.RawMessage) json.RawMessage {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(e.JSON, &m); err != nil {
		return e.JSON
	}
	for _, k := range federationOnly {
		delete(m, k)
	}
	m["room_id"], _ = json.Marshal(e.RoomID)
	m["event_id"], _ = json.Marshal(e.EventID)
	unsigned := map[string]json.RawMessage{}
	if raw, ok := m["unsigned"]; ok {
		json.Unmarshal(raw, &unsigned)
	}
	if len(e.UnsignedExtra) > 0 {
		var extra map[string]json.RawMessage
		if json.Unmarshal(e.UnsignedExtra, &extra) == nil {
			for k, v := range extra {
				unsigned[k] = v
			}
		}
	}
	unsigned["age"], _ = json.Marshal(max(0, time.Now().UnixMilli()-e.OriginTS))
	// Only the sending device of the sending user sees its transaction ID
	// (device IDs are unique per user only).
	if sess, ok := ctx.Value(sessionKey{}).(*accounts.Session); ok && e.TxnID != "" && deviceID != "" &&
		e.SenderDevice == sess.DeviceID && e.Sender == sess.UserID {
		unsigned["transaction_id"], _ = json.Marshal(e.TxnID)
	}
	if e.RedactedBy != "" {
		if red, err := a.db.EventByID(ctx, e.RedactedBy); err == nil {
			unsigned["redacted_because"] = a.formatEvent(ctx, red, "", nil)
		}
	}
	if relations != nil {
		unsigned["m.relations"] = relations
	}
	m["unsigned"], _ = json.Marshal(unsigned)
	out, err := json.Marshal(m)
	if err != nil {
		return e.JSON
	}
	return out
}

// clientEvents renders a list of events, computing their aggregations together.
func (a *API) clientEvents(ctx context.Context, events []storage.Event, deviceID string) []json.RawMessage {
	relations := a.bundleAggregations(ctx, events)
	out := make([]json.RawMessage, 0, len(events))
	for i := range events {
		out = append(out, a.formatEvent(ctx, &events[i], deviceID, relations[events[i].EventID]))
	}
	return out
}
