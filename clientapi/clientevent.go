package clientapi

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"time"

	"github.com/tidwall/gjson"

	"matrixhs/internal/accounts"
	"matrixhs/storage"
)

// federationOnly are the PDU keys clients never see.
var federationOnly = []string{"auth_events", "prev_events", "depth", "hashes", "signatures", "origin", "prev_state", "membership"}

// clientEvent renders a stored event in the client format: the PDU minus
// federation fields, plus room_id (absent from v12 create events) and the
// unsigned data the spec asks for (age, transaction_id for the sending
// device, prev_content, redacted_because, m.relations, and the reader's
// membership at the event where the reader checked its visibility).
func (a *API) clientEvent(ctx context.Context, e *storage.Event, deviceID string) json.RawMessage {
	return a.formatEvent(ctx, e, deviceID, a.bundleAggregations(ctx, []storage.Event{*e})[e.EventID])
}

// formatEvent renders one event with the given bundled aggregations (nil for none).
func (a *API) formatEvent(ctx context.Context, e *storage.Event, deviceID string, relations json.RawMessage) json.RawMessage {
	if !gjson.ValidBytes(e.JSON) {
		return e.JSON
	}
	// Copy the PDU's top-level fields except the federation-only ones,
	// without decoding values: a stored event is already canonical JSON.
	var buf bytes.Buffer
	buf.Grow(len(e.JSON) + len(e.UnsignedExtra) + 128)
	buf.WriteByte('{')
	var storedUnsigned gjson.Result
	gjson.ParseBytes(e.JSON).ForEach(func(key, value gjson.Result) bool {
		switch k := key.String(); {
		case k == "unsigned":
			storedUnsigned = value
		case k == "room_id" || k == "event_id" || slices.Contains(federationOnly, k):
		default:
			buf.WriteString(key.Raw)
			buf.WriteByte(':')
			buf.WriteString(value.Raw)
			buf.WriteByte(',')
		}
		return true
	})
	writeField(&buf, "room_id", e.RoomID)
	buf.WriteByte(',')
	writeField(&buf, "event_id", e.EventID)

	unsigned := map[string]json.RawMessage{}
	if storedUnsigned.IsObject() {
		json.Unmarshal([]byte(storedUnsigned.Raw), &unsigned)
	}
	if len(e.UnsignedExtra) > 0 {
		var extra map[string]json.RawMessage
		if json.Unmarshal(e.UnsignedExtra, &extra) == nil {
			for k, v := range extra {
				unsigned[k] = v
			}
		}
	}
	unsigned["age"] = strconv.AppendInt(nil, max(0, time.Now().UnixMilli()-e.OriginTS), 10)
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
	if e.ViewerMembership != "" {
		unsigned["membership"], _ = json.Marshal(e.ViewerMembership)
	}
	raw, err := json.Marshal(unsigned)
	if err != nil {
		return e.JSON
	}
	buf.WriteString(`,"unsigned":`)
	buf.Write(raw)
	buf.WriteByte('}')
	return buf.Bytes()
}

func writeField(buf *bytes.Buffer, key, value string) {
	k, _ := json.Marshal(key)
	v, _ := json.Marshal(value)
	buf.Write(k)
	buf.WriteByte(':')
	buf.Write(v)
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
