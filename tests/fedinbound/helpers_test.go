// Package fedinbound tests inbound room federation (transactions, history)
// and backfill between real servers of a fedtest network: TLS, discovery
// and request signing as in production. Rooms are shared without the join
// API: the room is made on hs1 by its users, and a user of hs2 joins by an
// event signed with hs2's key that both servers take through
// roomserver.Input (each checks the other's signatures with its key ring).
package fedinbound

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/roomserver"
	"matrixhs/storage"
	"matrixhs/tests/fedtest"
)

// timeline is the room's timeline on s in topological order.
func timeline(t testing.TB, s *fedtest.Server, roomID string) []storage.Event {
	t.Helper()
	events, err := s.DB.TopoTimeline(context.Background(), s.Room(t, roomID).NID, storage.TopoPos{}, storage.TopoEnd, false, 10000)
	if err != nil {
		t.Fatal(err)
	}
	return events
}

// input has s take events through its pipeline as new events from origin,
// and fails unless each is accepted.
func input(t testing.TB, s *fedtest.Server, origin spec.ServerName, pdus ...gomatrixserverlib.PDU) {
	t.Helper()
	in := make([]roomserver.InputEvent, len(pdus))
	for i, p := range pdus {
		in[i] = roomserver.InputEvent{Kind: roomserver.KindNew, Event: p, Origin: origin}
	}
	res, err := s.Rooms.Input(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil || r.Status != roomserver.StatusAccepted {
			t.Fatalf("%s taking %s: %+v", s.Name, r.EventID, r)
		}
	}
}

// joinFromHS2 has a user of hs2 join hs1's room: the join, signed by hs2,
// is taken by hs1; hs2 takes the room's whole history and the join.
func joinFromHS2(t testing.TB, hs1, hs2 *fedtest.Server, roomID string, u *fedtest.User) gomatrixserverlib.PDU {
	t.Helper()
	join := fedtest.Build(t, hs1, hs2.Signer(), roomID, fedtest.Proto{Sender: u.ID, Type: spec.MRoomMember, StateKey: fedtest.SK(u.ID),
		Content: map[string]any{"membership": "join"}})
	history := timeline(t, hs1, roomID)
	input(t, hs1, hs2.Name, join)
	pdus := make([]gomatrixserverlib.PDU, 0, len(history)+1)
	for i := range history {
		pdu, err := roomserver.ParseEvent(&history[i])
		if err != nil {
			t.Fatal(err)
		}
		pdus = append(pdus, pdu)
	}
	input(t, hs2, hs1.Name, append(pdus, join)...)
	return join
}

// joinLateFromHS2 is joinFromHS2 as a join over send_join leaves hs2: it
// holds the state before the join (as outliers, trusted) and the join,
// not the history before it.
func joinLateFromHS2(t testing.TB, hs1, hs2 *fedtest.Server, roomID string, u *fedtest.User) gomatrixserverlib.PDU {
	t.Helper()
	ctx := context.Background()
	join := fedtest.Build(t, hs1, hs2.Signer(), roomID, fedtest.Proto{Sender: u.ID, Type: spec.MRoomMember, StateKey: fedtest.SK(u.ID),
		Content: map[string]any{"membership": "join"}})
	input(t, hs1, hs2.Name, join)
	fr, err := hs1.Rooms.FederationRoom(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	state, chain, err := hs1.Rooms.StateBeforeEvent(ctx, fr, join.EventID())
	if err != nil {
		t.Fatal(err)
	}
	var outliers []gomatrixserverlib.PDU
	for _, id := range append(chain, state...) {
		if !slices.ContainsFunc(outliers, func(p gomatrixserverlib.PDU) bool { return p.EventID() == id }) {
			outliers = append(outliers, hs1.PDU(t, id))
		}
	}
	slices.SortStableFunc(outliers, func(a, b gomatrixserverlib.PDU) int { return int(a.Depth() - b.Depth()) })
	in := make([]roomserver.InputEvent, 0, len(outliers)+1)
	for _, p := range outliers {
		in = append(in, roomserver.InputEvent{Kind: roomserver.KindOutlier, Event: p, Origin: hs1.Name})
	}
	in = append(in, roomserver.InputEvent{Kind: roomserver.KindNew, Event: join, Origin: hs1.Name, StateBefore: state})
	res, err := hs2.Rooms.Input(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil || (r.Status != roomserver.StatusAccepted && r.Status != roomserver.StatusOutlier) {
			t.Fatalf("hs2 taking %s: %+v", r.EventID, r)
		}
	}
	return join
}

// fedGet sends a signed federation GET from one server to another.
func fedGet(t testing.TB, from *fedtest.Server, to spec.ServerName, path string, out any) (int, []byte) {
	t.Helper()
	return fedDo(t, from, "GET", to, path, nil, out)
}

func fedDo(t testing.TB, from *fedtest.Server, method string, to spec.ServerName, path string, body, out any) (int, []byte) {
	t.Helper()
	status, raw := from.Send(t, from.SignedRequest(t, method, to, path, body))
	if status == 200 && out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: decoding %s: %v", method, path, raw, err)
		}
	}
	return status, raw
}

func errcode(raw []byte) string {
	var e struct {
		Errcode string `json:"errcode"`
	}
	json.Unmarshal(raw, &e)
	return e.Errcode
}

// shared is a room made on hs1 by alice that bob of hs2 joined.
type shared struct {
	n          *fedtest.Network
	hs1, hs2   *fedtest.Server
	alice, bob *fedtest.User
	roomID     string
	bobJoin    gomatrixserverlib.PDU
}

// newShared starts hs1 and hs2 and shares a room between them; create is
// the createRoom body (room version 11, public by default).
func newShared(t testing.TB, create map[string]any) *shared {
	t.Helper()
	s := newPair(t)
	if create == nil {
		create = map[string]any{}
	}
	if _, ok := create["preset"]; !ok {
		create["preset"] = "public_chat"
	}
	create["room_version"] = "11"
	s.roomID = s.alice.CreateRoom(t, create)
	s.bobJoin = joinFromHS2(t, s.hs1, s.hs2, s.roomID, s.bob)
	return s
}

// newPair starts hs1 and hs2 with alice and bob, sharing nothing yet.
// Their outbound senders are stopped: the tests decide which PDUs reach
// which server, and when.
func newPair(t testing.TB) *shared {
	t.Helper()
	s := newPairSending(t)
	s.hs1.Sender.Stop()
	s.hs2.Sender.Stop()
	return s
}

// newPairSending is newPair with the servers sending their users' events
// to each other on their own.
func newPairSending(t testing.TB) *shared {
	t.Helper()
	n := fedtest.NewNetwork(t)
	servers := n.StartN(2)
	s := &shared{n: n, hs1: servers[0], hs2: servers[1]}
	s.alice, s.bob = s.hs1.Register(t, "alice"), s.hs2.Register(t, "bob")
	return s
}

// fromHS1 is the JSON of events hs1 holds, for sending on.
func (s *shared) fromHS1(t testing.TB, eventIDs ...string) []json.RawMessage {
	t.Helper()
	out := make([]json.RawMessage, len(eventIDs))
	for i, id := range eventIDs {
		out[i] = s.hs1.StoredJSON(t, id)
	}
	return out
}
