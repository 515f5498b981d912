package clientapi

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/accounts"
	"matrixhs/storage"
)

// Out-of-band memberships (storage/outofband.go) are a user's invites,
// knocks and leaves in rooms this server is not in: sync has no room state
// to show for them, only what the other server gave.

// outOfBandStripped is the invite or knock state of an out-of-band
// membership: the room summary the other server gave (its create event
// with event ID, room ID and timestamp, MSC4311) and the membership event
// itself, stripped.
func outOfBandStripped(oob *storage.OutOfBand) []map[string]any {
	var out []map[string]any
	json.Unmarshal(oob.StrippedState, &out)
	var ev struct {
		StateKey string          `json:"state_key"`
		Sender   string          `json:"sender"`
		Content  json.RawMessage `json:"content"`
	}
	if json.Unmarshal(oob.JSON, &ev) == nil {
		out = append(out, map[string]any{"type": spec.MRoomMember, "state_key": ev.StateKey, "sender": ev.Sender, "content": ev.Content})
	}
	if out == nil {
		out = []map[string]any{}
	}
	return out
}

// outOfBandLeftRoom is a left room the user knew only out of band (an
// invite rejected or rescinded, a knock withdrawn): as in Synapse its
// timeline is the leave itself and it has no state. ok is false for other
// rooms, and once the leave took its place in the room's timeline.
func (a *API) outOfBandLeftRoom(ctx context.Context, s *accounts.Session, p *syncParams, m storage.RoomMembership) (room map[string]any, ok bool, err error) {
	if _, err := a.db.OutOfBandByEvent(ctx, m.EventNID); errors.Is(err, storage.ErrNotFound) {
		return nil, false, nil
	} else if err != nil {
		return nil, false, err
	}
	events, err := a.db.EventsByNID(ctx, []int64{m.EventNID})
	if err != nil || len(events) != 1 || events[0].Status != storage.EventOutlier {
		return nil, false, err
	}
	events[0].StreamPos = m.StreamPos
	return map[string]any{
		"timeline": map[string]any{
			"events": a.filteredEvents(ctx, events, s.DeviceID, p.filter), "limited": false, "prev_batch": makeToken(m.StreamPos - 1),
		},
		"state":        map[string]any{"events": []any{}},
		"account_data": map[string]any{"events": []any{}},
	}, true, nil
}
