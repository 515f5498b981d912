package roomview

import (
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

// StrippedEvent is one event of invite_state / knock_state: type, state
// key, sender and content. The create event also has its event ID, room ID
// and timestamp (MSC4311, as Synapse does), so clients can check a v12 room
// ID against it and show when the room was made.
func StrippedEvent(e *storage.Event) map[string]any {
	out := map[string]any{"type": e.Type, "state_key": *e.StateKey, "sender": e.Sender, "content": Content(e.JSON)}
	if e.Type == spec.MRoomCreate && *e.StateKey == "" {
		out["event_id"], out["room_id"], out["origin_server_ts"] = e.EventID, e.RoomID, e.OriginTS
	}
	return out
}
