// Package fedinbound tests inbound room federation (transactions, history)
// and backfill between real servers of a fedtest network: TLS, discovery
// and request signing as in production. Rooms are shared without the join
// API: the room is made on hs1 by its users, and a user of hs2 joins by an
// event signed with hs2's key that both servers take through
// roomserver.Input (each checks the other's signatures with its key ring).
package fedinbound

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/roomserver"
	"matrixhs/storage"
	"matrixhs/tests/fedtest"
)

// user is a registered user of a server, talking raw HTTP.
type user struct {
	s     *fedtest.Server
	id    string
	token string
}

func register(t testing.TB, s *fedtest.Server, localpart string) *user {
	t.Helper()
	u := &user{s: s}
	var out struct {
		UserID      string `json:"user_id"`
		AccessToken string `json:"access_token"`
	}
	u.mustDo(t, "POST", "/register", map[string]any{
		"username": localpart, "password": "pw", "auth": map[string]string{"type": "m.login.dummy"},
	}, &out)
	u.id, u.token = out.UserID, out.AccessToken
	return u
}

// do sends a client-API request (path under /_matrix/client/v3) and
// decodes a 2xx answer into out.
func (u *user) do(t testing.TB, method, path string, body, out any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, u.s.URL()+"/_matrix/client/v3"+path, rd)
	if u.token != "" {
		req.Header.Set("Authorization", "Bearer "+u.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: decoding %s: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, raw
}

func (u *user) mustDo(t testing.TB, method, path string, body, out any) {
	t.Helper()
	if status, raw := u.do(t, method, path, body, out); status != 200 {
		t.Fatalf("%s %s: %d %s", method, path, status, raw)
	}
}

func (u *user) createRoom(t testing.TB, body map[string]any) string {
	t.Helper()
	var out struct {
		RoomID string `json:"room_id"`
	}
	u.mustDo(t, "POST", "/createRoom", body, &out)
	return out.RoomID
}

var txnSeq int

// send sends a message and returns its event ID.
func (u *user) send(t testing.TB, roomID, body string) string {
	t.Helper()
	txnSeq++
	var out struct {
		EventID string `json:"event_id"`
	}
	u.mustDo(t, "PUT", fmt.Sprintf("/rooms/%s/send/m.room.message/m%d", url.PathEscape(roomID), txnSeq),
		map[string]any{"msgtype": "m.text", "body": body}, &out)
	return out.EventID
}

// state sets a state event and returns its event ID.
func (u *user) state(t testing.TB, roomID, typ, key string, content any) string {
	t.Helper()
	var out struct {
		EventID string `json:"event_id"`
	}
	u.mustDo(t, "PUT", fmt.Sprintf("/rooms/%s/state/%s/%s", url.PathEscape(roomID), typ, url.PathEscape(key)), content, &out)
	return out.EventID
}

// syncEvent is a timeline event as /sync gives it.
type syncEvent struct {
	EventID string          `json:"event_id"`
	Type    string          `json:"type"`
	Sender  string          `json:"sender"`
	Content json.RawMessage `json:"content"`
}

// since is the user's current sync token.
func (u *user) since(t testing.TB) string {
	t.Helper()
	var out struct {
		NextBatch string `json:"next_batch"`
	}
	u.mustDo(t, "GET", "/sync?timeout=0", nil, &out)
	return out.NextBatch
}

// syncUntil long-polls /sync from since until the room's timeline has
// delivered every event of want (or a deadline passes), and returns all
// the timeline events of the room it saw, in order.
func (u *user) syncUntil(t testing.TB, since, roomID string, want ...string) []syncEvent {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var seen []syncEvent
	missing := func() []string {
		var m []string
		for _, id := range want {
			if !slices.ContainsFunc(seen, func(e syncEvent) bool { return e.EventID == id }) {
				m = append(m, id)
			}
		}
		return m
	}
	filter := url.QueryEscape(`{"room":{"timeline":{"limit":100}}}`)
	for len(missing()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s's sync never delivered %v (saw %v)", u.id, missing(), ids(seen))
		}
		var out struct {
			NextBatch string `json:"next_batch"`
			Rooms     struct {
				Join map[string]struct {
					Timeline struct {
						Events []syncEvent `json:"events"`
					} `json:"timeline"`
				} `json:"join"`
			} `json:"rooms"`
		}
		path := "/sync?timeout=2000&filter=" + filter
		if since != "" {
			path += "&since=" + url.QueryEscape(since)
		}
		u.mustDo(t, "GET", path, nil, &out)
		seen = append(seen, out.Rooms.Join[roomID].Timeline.Events...)
		since = out.NextBatch
	}
	return seen
}

func ids(events []syncEvent) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.EventID
	}
	return out
}

// roomOf is the stored room.
func roomOf(t testing.TB, s *fedtest.Server, roomID string) *storage.Room {
	t.Helper()
	info, err := s.DB.Room(context.Background(), roomID)
	if err != nil {
		t.Fatalf("room %s on %s: %v", roomID, s.Name, err)
	}
	return info
}

// timeline is the room's timeline on s in topological order.
func timeline(t testing.TB, s *fedtest.Server, roomID string) []storage.Event {
	t.Helper()
	events, err := s.DB.TopoTimeline(context.Background(), roomOf(t, s, roomID).NID, storage.TopoPos{}, storage.TopoEnd, false, 10000)
	if err != nil {
		t.Fatal(err)
	}
	return events
}

// pduOf reads a stored event.
func pduOf(t testing.TB, s *fedtest.Server, eventID string) gomatrixserverlib.PDU {
	t.Helper()
	e, err := s.DB.EventByID(context.Background(), eventID)
	if err != nil {
		t.Fatalf("event %s on %s: %v", eventID, s.Name, err)
	}
	pdu, err := roomserver.ParseEvent(e)
	if err != nil {
		t.Fatal(err)
	}
	return pdu
}

// statusOn is an event's stored status on s (-1 when not held).
func statusOn(t testing.TB, s *fedtest.Server, eventID string) int {
	t.Helper()
	e, err := s.DB.EventByID(context.Background(), eventID)
	if err != nil {
		return -1
	}
	return e.Status
}

// stateID is the ID of the current state event (typ, key) on s.
func stateID(t testing.TB, s *fedtest.Server, roomID, typ, key string) string {
	t.Helper()
	events, err := s.DB.CurrentStateEvents(context.Background(), roomOf(t, s, roomID).NID, typ)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if *e.StateKey == key {
			return e.EventID
		}
	}
	t.Fatalf("no %s/%s in the state on %s", typ, key, s.Name)
	return ""
}

// withContent is an event's JSON with other content (and the same hashes
// and signatures, which then no longer match).
func withContent(t testing.TB, eventJSON []byte, content any) json.RawMessage {
	t.Helper()
	var ev map[string]any
	if err := json.Unmarshal(eventJSON, &ev); err != nil {
		t.Fatal(err)
	}
	ev["content"] = content
	out, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// signer signs events as a server.
type signer struct {
	name  spec.ServerName
	keyID gomatrixserverlib.KeyID
	key   ed25519.PrivateKey
}

func signerOf(s *fedtest.Server) signer {
	return signer{name: s.Name, keyID: s.Federation.Own.KeyID, key: s.Federation.Own.PrivateKey}
}

// forgedSigner signs as s with a key that is not s's.
func forgedSigner(s *fedtest.Server) signer {
	_, key, _ := ed25519.GenerateKey(nil)
	return signer{name: s.Name, keyID: s.Federation.Own.KeyID, key: key}
}

// proto is an event to build.
type proto struct {
	sender   string
	typ      string
	stateKey *string
	content  any
	// prevs default to the room's forward extremities on the server built
	// on; auth to what the auth rules need from its current state.
	prevs []string
	auth  []string
}

func sk(s string) *string { return &s }

// build builds and signs an event of the room on top of what server on
// holds (prev events, depth, auth events from its current state).
func build(t testing.TB, on *fedtest.Server, by signer, roomID string, p proto) gomatrixserverlib.PDU {
	t.Helper()
	ctx := context.Background()
	info := roomOf(t, on, roomID)
	ver := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersion(info.Version))
	content, err := json.Marshal(p.content)
	if err != nil {
		t.Fatal(err)
	}
	prevs := p.prevs
	depth := info.MaxDepth + 1
	if prevs == nil {
		prevs = info.Extremities
	} else {
		depth = 0
		for _, id := range prevs {
			depth = max(depth, pduOf(t, on, id).Depth()+1)
		}
	}
	pe := gomatrixserverlib.ProtoEvent{SenderID: p.sender, RoomID: roomID, Type: p.typ, StateKey: p.stateKey,
		Content: content, PrevEvents: prevs, Depth: depth}
	if p.auth != nil {
		pe.AuthEvents = p.auth
	} else {
		needed, err := gomatrixserverlib.StateNeededForProtoEvent(&pe)
		if err != nil {
			t.Fatal(err)
		}
		current, err := on.DB.CurrentStateEvents(ctx, info.NID, "")
		if err != nil {
			t.Fatal(err)
		}
		auth := []string{}
		for _, tuple := range needed.Tuples() {
			for _, e := range current {
				if e.Type == tuple.EventType && *e.StateKey == tuple.StateKey {
					auth = append(auth, e.EventID)
				}
			}
		}
		pe.AuthEvents = auth
	}
	pdu, err := ver.NewEventBuilderFromProtoEvent(&pe).Build(time.Now(), by.name, by.keyID, by.key)
	if err != nil {
		t.Fatalf("building %s: %v", p.typ, err)
	}
	return pdu
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
func joinFromHS2(t testing.TB, hs1, hs2 *fedtest.Server, roomID string, u *user) gomatrixserverlib.PDU {
	t.Helper()
	join := build(t, hs1, signerOf(hs2), roomID, proto{sender: u.id, typ: spec.MRoomMember, stateKey: sk(u.id),
		content: map[string]any{"membership": "join"}})
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
func joinLateFromHS2(t testing.TB, hs1, hs2 *fedtest.Server, roomID string, u *user) gomatrixserverlib.PDU {
	t.Helper()
	ctx := context.Background()
	join := build(t, hs1, signerOf(hs2), roomID, proto{sender: u.id, typ: spec.MRoomMember, stateKey: sk(u.id),
		content: map[string]any{"membership": "join"}})
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
			outliers = append(outliers, pduOf(t, hs1, id))
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

// sendTxn sends a transaction from one server to another, signed by the
// sender, and returns the status and the answer.
func sendTxn(t testing.TB, from *fedtest.Server, to spec.ServerName, txnID string, pdus []json.RawMessage, edus []any) (int, txnAnswer) {
	t.Helper()
	body := map[string]any{"origin": from.Name, "origin_server_ts": time.Now().UnixMilli(), "pdus": nonNil(pdus)}
	if edus != nil {
		body["edus"] = edus
	}
	status, raw := from.Send(t, from.SignedRequest(t, "PUT", to, "/_matrix/federation/v1/send/"+url.PathEscape(txnID), body))
	var ans txnAnswer
	ans.raw = raw
	if status == 200 {
		if err := json.Unmarshal(raw, &ans); err != nil {
			t.Fatalf("transaction answer %s: %v", raw, err)
		}
	}
	return status, ans
}

type txnAnswer struct {
	PDUs map[string]struct {
		Error string `json:"error"`
	} `json:"pdus"`
	raw []byte
}

// ok fails unless every PDU was taken without error.
func (a txnAnswer) ok(t testing.TB, ids ...string) {
	t.Helper()
	for _, id := range ids {
		res, found := a.PDUs[id]
		if !found || res.Error != "" {
			t.Fatalf("PDU %s: %s", id, a.raw)
		}
	}
}

// refused fails unless the PDU has an error containing want.
func (a txnAnswer) refused(t testing.TB, id, want string) {
	t.Helper()
	if res := a.PDUs[id]; !strings.Contains(res.Error, want) || res.Error == "" {
		t.Fatalf("PDU %s: want an error with %q: %s", id, want, a.raw)
	}
}

func nonNil(pdus []json.RawMessage) []json.RawMessage {
	if pdus == nil {
		return []json.RawMessage{}
	}
	return pdus
}

func jsons(pdus ...gomatrixserverlib.PDU) []json.RawMessage {
	out := make([]json.RawMessage, len(pdus))
	for i, p := range pdus {
		out[i] = p.JSON()
	}
	return out
}

// storedJSON is an event's JSON as s stores it.
func storedJSON(t testing.TB, s *fedtest.Server, eventID string) json.RawMessage {
	t.Helper()
	e, err := s.DB.EventByID(context.Background(), eventID)
	if err != nil {
		t.Fatalf("event %s on %s: %v", eventID, s.Name, err)
	}
	return e.JSON
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
	alice, bob *user
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
	s.roomID = s.alice.createRoom(t, create)
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
	s.alice, s.bob = register(t, s.hs1, "alice"), register(t, s.hs2, "bob")
	return s
}

// fromHS1 is the JSON of events hs1 holds, for sending on.
func (s *shared) fromHS1(t testing.TB, eventIDs ...string) []json.RawMessage {
	t.Helper()
	out := make([]json.RawMessage, len(eventIDs))
	for i, id := range eventIDs {
		out[i] = storedJSON(t, s.hs1, id)
	}
	return out
}
