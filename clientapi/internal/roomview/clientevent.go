package roomview

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"matrixhs/internal/auth"
	"matrixhs/storage"
)

// federationOnly are the PDU keys clients never see.
var federationOnly = []string{"auth_events", "prev_events", "depth", "hashes", "signatures", "origin", "prev_state", "membership"}

// ClientEvent renders a stored event in the client format: the PDU minus
// federation fields, plus room_id (absent from v12 create events) and the
// unsigned data the spec asks for (age, transaction_id for the sending
// device, prev_content, redacted_because, m.relations, and the reader's
// membership at the event where the reader checked its visibility).
func (rv *Reader) ClientEvent(ctx context.Context, e *storage.Event, deviceID string) json.RawMessage {
	return rv.FormatEvent(ctx, e, deviceID, rv.BundleAggregations(ctx, []storage.Event{*e})[e.EventID])
}

// FormatEvent renders one event with the given bundled aggregations (nil for none).
func (rv *Reader) FormatEvent(ctx context.Context, e *storage.Event, deviceID string, relations json.RawMessage) json.RawMessage {
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

	// unsigned: the stored object, what was computed when storing, then
	// what depends on the reader; later entries replace earlier ones.
	var u unsignedFields
	if storedUnsigned.IsObject() {
		storedUnsigned.ForEach(func(key, value gjson.Result) bool {
			u.set(key.String(), key.Raw, []byte(value.Raw))
			return true
		})
	}
	if len(e.UnsignedExtra) > 0 && gjson.ValidBytes(e.UnsignedExtra) {
		if extra := gjson.ParseBytes(e.UnsignedExtra); extra.IsObject() {
			extra.ForEach(func(key, value gjson.Result) bool {
				u.set(key.String(), key.Raw, []byte(value.Raw))
				return true
			})
		}
	}
	u.set("age", `"age"`, strconv.AppendInt(nil, max(0, time.Now().UnixMilli()-e.OriginTS), 10))
	// Only the sending device of the sending user sees its transaction ID
	// (device IDs are unique per user only).
	if sess := auth.Session(ctx); sess != nil && e.TxnID != "" && deviceID != "" &&
		e.SenderDevice == sess.DeviceID && e.Sender == sess.UserID {
		txn, _ := json.Marshal(e.TxnID)
		u.set("transaction_id", `"transaction_id"`, txn)
	}
	if e.RedactedBy != "" {
		if red, err := rv.db.EventByID(ctx, e.RedactedBy); err == nil {
			u.set("redacted_because", `"redacted_because"`, rv.FormatEvent(ctx, red, "", nil))
		}
	}
	if relations != nil {
		u.set("m.relations", `"m.relations"`, relations)
	}
	if e.ViewerMembership != "" {
		u.set("membership", `"membership"`, membershipJSON(e.ViewerMembership))
	}
	buf.WriteString(`,"unsigned":`)
	u.write(&buf)
	buf.WriteByte('}')
	return buf.Bytes()
}

// unsignedFields assembles an unsigned object from raw JSON values (all
// valid: parts of stored events or encoded here) without decoding them.
type unsignedFields []unsignedField

type unsignedField struct {
	name, rawKey string // the key, and as it is written (quoted)
	value        []byte
}

func (u *unsignedFields) set(name, rawKey string, value []byte) {
	for i := range *u {
		if (*u)[i].name == name {
			(*u)[i].rawKey, (*u)[i].value = rawKey, value
			return
		}
	}
	*u = append(*u, unsignedField{name, rawKey, value})
}

// write emits the object with its keys sorted, as encoding a map would.
func (u unsignedFields) write(buf *bytes.Buffer) {
	slices.SortFunc(u, func(a, b unsignedField) int { return strings.Compare(a.name, b.name) })
	buf.WriteByte('{')
	for i, f := range u {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(f.rawKey)
		buf.WriteByte(':')
		buf.Write(f.value)
	}
	buf.WriteByte('}')
}

// membershipJSONs are the memberships as JSON strings, encoded once (read
// only).
var membershipJSONs = map[string][]byte{
	"join": []byte(`"join"`), "leave": []byte(`"leave"`), "invite": []byte(`"invite"`),
	"ban": []byte(`"ban"`), "knock": []byte(`"knock"`),
}

func membershipJSON(m string) []byte {
	if raw, ok := membershipJSONs[m]; ok {
		return raw
	}
	raw, _ := json.Marshal(m)
	return raw
}

func writeField(buf *bytes.Buffer, key, value string) {
	k, _ := json.Marshal(key)
	v, _ := json.Marshal(value)
	buf.Write(k)
	buf.WriteByte(':')
	buf.Write(v)
}

// ClientEvents renders a list of events, computing their aggregations together.
func (rv *Reader) ClientEvents(ctx context.Context, events []storage.Event, deviceID string) []json.RawMessage {
	relations := rv.BundleAggregations(ctx, events)
	out := make([]json.RawMessage, 0, len(events))
	for i := range events {
		out = append(out, rv.FormatEvent(ctx, &events[i], deviceID, relations[events[i].EventID]))
	}
	return out
}
