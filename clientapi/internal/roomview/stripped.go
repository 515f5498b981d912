package roomview

import (
	"encoding/json"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

// Stripped is one event of invite_state / knock_state: type, state key,
// sender and content. The create event also has its event ID, room ID and
// timestamp (MSC4311, as Synapse does), so clients can check a v12 room ID
// against it and show when the room was made.
type Stripped struct {
	Type           string          `json:"type"`
	StateKey       string          `json:"state_key"`
	Sender         string          `json:"sender"`
	Content        json.RawMessage `json:"content"`
	EventID        string          `json:"event_id,omitzero"`
	RoomID         string          `json:"room_id,omitzero"`
	OriginServerTS int64           `json:"origin_server_ts,omitzero"`
}

// StrippedEvent is e as stripped state.
func StrippedEvent(e *storage.Event) Stripped {
	out := Stripped{Type: e.Type, StateKey: *e.StateKey, Sender: e.Sender, Content: Content(e.JSON)}
	if e.Type == spec.MRoomCreate && *e.StateKey == "" {
		out.EventID, out.RoomID, out.OriginServerTS = e.EventID, e.RoomID, e.OriginTS
	}
	return out
}
