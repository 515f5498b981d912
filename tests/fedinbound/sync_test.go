package fedinbound

import (
	"encoding/json"
	"net/url"
	"slices"
	"testing"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/tests/fedtest"
)

// TestSyncKeepsLateForkStateInState: a state event of another server that
// forked the room at an older event (its room name, S2, built on E1)
// arrives after bob's own newer messages E3 and E4; bob's E5, merging the
// forks, is filtered out of his first sync, whose one-event timeline is
// then E4 (the DAG's newest, not S2, the last to arrive: topological order,
// as Synapse) and whose state holds S2 (Complement's
// TestSyncOmitsStateChangeOnFilteredEvents).
func TestSyncKeepsLateForkStateInState(t *testing.T) {
	s := newShared(t, nil)
	e1 := s.bob.Send(t, s.roomID, "E1")
	_, ans := fedtest.SendTxn(t, s.hs2, s.hs1.Name, "e1", []json.RawMessage{s.hs2.StoredJSON(t, e1)}, nil)
	ans.OK(t, e1)
	s2 := s.alice.SetState(t, s.roomID, spec.MRoomName, "", map[string]any{"name": "I am the room name, S2"})
	s.bob.Send(t, s.roomID, "E3")
	e4 := s.bob.Send(t, s.roomID, "E4")
	_, ans = fedtest.SendTxn(t, s.hs1, s.hs2.Name, "s2", s.fromHS1(t, s2), nil)
	ans.OK(t, s2)
	var e5 struct {
		EventID string `json:"event_id"`
	}
	s.bob.MustDo(t, "PUT", fedtest.RoomPath(s.roomID, "/send/please_filter_me/e5"), map[string]any{"body": "E5"}, &e5)

	var out struct {
		Rooms struct {
			Join map[string]fedtest.SyncRoom `json:"join"`
		} `json:"rooms"`
	}
	filter := url.QueryEscape(`{"room":{"timeline":{"not_types":["please_filter_me"],"limit":1}}}`)
	s.bob.MustDo(t, "GET", "/sync?timeout=0&filter="+filter, nil, &out)
	room := out.Rooms.Join[s.roomID]
	if got := fedtest.IDs(room.Timeline.Events); !slices.Equal(got, []string{e4}) {
		t.Fatalf("timeline %v, want [E4 %s] (S2 %s, E5 %s)", got, e4, s2, e5.EventID)
	}
	if got := fedtest.IDs(room.State.Events); !slices.Contains(got, s2) {
		t.Fatalf("state %v lacks S2 %s", got, s2)
	}
}
