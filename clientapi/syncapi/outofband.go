package syncapi

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/clientapi/internal/roomview"
	"matrixhs/internal/accounts"
	"matrixhs/storage"
)

// Out-of-band memberships (storage/outofband.go) are a user's invites,
// knocks and leaves in rooms this server is not in: sync has no room state
// to show for them, only what the other server gave.

// outOfBandStripped is the invite or knock state of an out-of-band
// membership, nil when m is none: the room summary the other server gave
// (its create event with event ID, room ID and timestamp, MSC4311) and the
// membership event itself, stripped.
func (a *API) outOfBandStripped(ctx context.Context, m storage.RoomMembership) ([]roomview.Stripped, error) {
	oob, err := a.db.OutOfBandByEvent(ctx, m.EventNID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := []roomview.Stripped{}
	json.Unmarshal(oob.StrippedState, &out)
	var ev struct {
		StateKey string          `json:"state_key"`
		Sender   string          `json:"sender"`
		Content  json.RawMessage `json:"content"`
	}
	if json.Unmarshal(oob.JSON, &ev) == nil {
		out = append(out, roomview.Stripped{Type: spec.MRoomMember, StateKey: ev.StateKey, Sender: ev.Sender, Content: ev.Content})
	}
	return out, nil
}

// outOfBandLeftRoom is a left room the user knew only out of band (an
// invite rejected or rescinded, a knock withdrawn): as in Synapse its
// timeline is the leave itself and it has no state. It is nil for other
// rooms, and once the leave took its place in the room's timeline.
func (a *API) outOfBandLeftRoom(ctx context.Context, s *accounts.Session, p *syncParams, m storage.RoomMembership) (*LeftRoom, error) {
	if _, err := a.db.OutOfBandByEvent(ctx, m.EventNID); errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	events, err := a.db.EventsByNID(ctx, []int64{m.EventNID})
	if err != nil || len(events) != 1 || events[0].Status != storage.EventOutlier {
		return nil, err
	}
	events[0].StreamPos = m.StreamPos
	return &LeftRoom{
		Timeline: Timeline{
			Events: a.view.FilteredEvents(ctx, events, s.DeviceID, p.filter), PrevBatch: roomview.MakeToken(m.StreamPos - 1),
		},
		State:       Events{Events: []json.RawMessage{}},
		AccountData: AccountData{Events: []AccountDataEvent{}},
	}, nil
}
