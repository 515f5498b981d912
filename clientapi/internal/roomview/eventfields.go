package roomview

import (
	"context"
	"encoding/json"
	"strings"

	"matrixhs/clientapi/filter"
	"matrixhs/storage"
)

// FilteredEvents renders events as a filter's event_format and
// event_fields ask: the client format (default) or the federation PDU,
// keeping only the listed fields.
func (rv *Reader) FilteredEvents(ctx context.Context, events []storage.Event, deviceID string, f *filter.Filter) []json.RawMessage {
	var out []json.RawMessage
	if f != nil && f.EventFormat == "federation" {
		out = make([]json.RawMessage, 0, len(events))
		for i := range events {
			out = append(out, json.RawMessage(events[i].JSON))
		}
	} else {
		out = rv.ClientEvents(ctx, events, deviceID)
	}
	if f == nil || len(f.EventFields) == 0 {
		return out
	}
	for i, raw := range out {
		out[i] = keepFields(raw, f.EventFields)
	}
	return out
}

// splitFieldPath splits a dotted event_fields entry; "\." escapes a dot
// and "\\" a backslash.
func splitFieldPath(path string) []string {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(path); i++ {
		switch c := path[i]; {
		case c == '\\' && i+1 < len(path):
			i++
			cur.WriteByte(path[i])
		case c == '.':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(parts, cur.String())
}

// keepFields copies only the named paths of an event.
func keepFields(raw json.RawMessage, fields []string) json.RawMessage {
	var src map[string]any
	if json.Unmarshal(raw, &src) != nil {
		return raw
	}
	dst := map[string]any{}
	for _, f := range fields {
		parts := splitFieldPath(f)
		var from any = src
		ok := true
		for _, p := range parts {
			m, isMap := from.(map[string]any)
			if !isMap {
				ok = false
				break
			}
			if from, ok = m[p]; !ok {
				break
			}
		}
		if !ok {
			continue
		}
		to := dst
		for _, p := range parts[:len(parts)-1] {
			next, isMap := to[p].(map[string]any)
			if !isMap {
				next = map[string]any{}
				to[p] = next
			}
			to = next
		}
		to[parts[len(parts)-1]] = from
	}
	out, err := json.Marshal(dst)
	if err != nil {
		return raw
	}
	return out
}
