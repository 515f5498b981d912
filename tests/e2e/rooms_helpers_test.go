package e2e

import (
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"matrixhs/tests/testserver"
)

// rev is a client-format room event as the tests inspect it.
type rev struct {
	EventID        string         `json:"event_id"`
	Type           string         `json:"type"`
	Sender         string         `json:"sender"`
	RoomID         string         `json:"room_id"`
	StateKey       *string        `json:"state_key"`
	Content        map[string]any `json:"content"`
	Unsigned       map[string]any `json:"unsigned"`
	OriginServerTS int64          `json:"origin_server_ts"`
	Redacts        string         `json:"redacts"`
}

// key is "type|state_key" ("type" alone for non-state events).
func (e rev) key() string {
	if e.StateKey == nil {
		return e.Type
	}
	return e.Type + "|" + *e.StateKey
}

func (e rev) body() string { s, _ := e.Content["body"].(string); return s }

// roomURL is /_matrix/client/v3/rooms/{roomID}/segments... A trailing empty
// segment (an empty state key) is dropped: the spec makes the trailing slash
// optional, and TestRoomSendState covers the slash form explicitly.
func roomURL(s *testserver.Server, roomID id.RoomID, segments ...string) string {
	if n := len(segments); n > 0 && segments[n-1] == "" {
		segments = segments[:n-1]
	}
	return v3(s, append([]string{"rooms", string(roomID)}, segments...)...)
}

// decodeInto unmarshals raw into v or fails.
func decodeInto(t *testing.T, raw []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("decoding %T: %v: %s", v, err, raw)
	}
}

// mkRoom creates a room through mautrix.
func mkRoom(t *testing.T, cli *mautrix.Client, req *mautrix.ReqCreateRoom) id.RoomID {
	t.Helper()
	res, err := cli.CreateRoom(ctxT(t), req)
	if err != nil {
		t.Fatalf("createRoom by %s: %v", cli.UserID, err)
	}
	if res.RoomID == "" || res.RoomID[0] != '!' {
		t.Fatalf("createRoom returned room_id %q", res.RoomID)
	}
	return res.RoomID
}

// mkRoomRaw creates a room from a raw JSON body and returns its ID.
func mkRoomRaw(t *testing.T, s *testserver.Server, token string, body map[string]any) id.RoomID {
	t.Helper()
	r := do(t, "POST", v3(s, "createRoom"), token, body).want(t, 200, "")
	rid, _ := r.Body["room_id"].(string)
	if rid == "" || rid[0] != '!' {
		t.Fatalf("createRoom room_id = %q: %s", rid, r.Raw)
	}
	return id.RoomID(rid)
}

// join joins a room (ID or alias) through mautrix and checks the returned ID.
func join(t *testing.T, cli *mautrix.Client, roomID id.RoomID) {
	t.Helper()
	res, err := cli.JoinRoomByID(ctxT(t), roomID)
	if err != nil {
		t.Fatalf("%s joining %s: %v", cli.UserID, roomID, err)
	}
	if res.RoomID != roomID {
		t.Fatalf("join returned room_id %q, want %q", res.RoomID, roomID)
	}
}

// text sends an m.text message and returns its event ID.
func text(t *testing.T, cli *mautrix.Client, roomID id.RoomID, body string) string {
	t.Helper()
	res, err := cli.SendText(ctxT(t), roomID, body)
	if err != nil {
		t.Fatalf("%s sending %q: %v", cli.UserID, body, err)
	}
	if len(res.EventID) < 2 || res.EventID[0] != '$' {
		t.Fatalf("send returned event_id %q", res.EventID)
	}
	return string(res.EventID)
}

// stateContent GETs /state/{type}/{key} and returns the content (wants 200).
func stateContent(t *testing.T, s *testserver.Server, token string, roomID id.RoomID, typ, key string) map[string]any {
	t.Helper()
	r := do(t, "GET", roomURL(s, roomID, "state", typ, key), token, nil).want(t, 200, "")
	if r.Body == nil {
		t.Fatalf("state %s/%s: not a JSON object: %s", typ, key, r.Raw)
	}
	return r.Body
}

// fullState GETs /rooms/{id}/state as events.
func fullState(t *testing.T, s *testserver.Server, token string, roomID id.RoomID) []rev {
	t.Helper()
	r := do(t, "GET", roomURL(s, roomID, "state"), token, nil)
	if r.Status != 200 {
		t.Fatalf("GET /state: %d %s", r.Status, r.Raw)
	}
	var evs []rev
	decodeInto(t, r.Raw, &evs)
	return evs
}

// stateEvent finds one state event in a /state list.
func stateEvent(t *testing.T, evs []rev, typ, key string) rev {
	t.Helper()
	for _, e := range evs {
		if e.Type == typ && e.StateKey != nil && *e.StateKey == key {
			return e
		}
	}
	t.Fatalf("state has no %s/%q", typ, key)
	return rev{}
}

// getEvent GETs /rooms/{id}/event/{eventId} as a raw response.
func getEvent(t *testing.T, s *testserver.Server, token string, roomID id.RoomID, eventID string) *resp {
	t.Helper()
	return do(t, "GET", roomURL(s, roomID, "event", eventID), token, nil)
}

// eventOK GETs an event that must be visible.
func eventOK(t *testing.T, s *testserver.Server, token string, roomID id.RoomID, eventID string) rev {
	t.Helper()
	r := getEvent(t, s, token, roomID, eventID).want(t, 200, "")
	var e rev
	decodeInto(t, r.Raw, &e)
	if e.EventID != eventID {
		t.Fatalf("GET event %s returned event_id %q", eventID, e.EventID)
	}
	return e
}

// msgPage is one /messages response.
type msgPage struct {
	Start  string `json:"start"`
	End    *string
	Chunk  []rev `json:"chunk"`
	State  []rev `json:"state"`
	hasEnd bool
}

// messages GETs one page of /messages.
func messages(t *testing.T, s *testserver.Server, token string, roomID id.RoomID, q url.Values) msgPage {
	t.Helper()
	r := do(t, "GET", roomURL(s, roomID, "messages")+"?"+q.Encode(), token, nil)
	if r.Status != 200 {
		t.Fatalf("GET /messages?%s: %d %s", q.Encode(), r.Status, r.Raw)
	}
	var p struct {
		Start *string `json:"start"`
		End   *string `json:"end"`
		Chunk []rev   `json:"chunk"`
		State []rev   `json:"state"`
	}
	decodeInto(t, r.Raw, &p)
	if p.Start == nil {
		t.Fatalf("/messages response without start: %s", r.Raw)
	}
	if p.Chunk == nil {
		t.Fatalf("/messages response without chunk array: %s", r.Raw)
	}
	return msgPage{Start: *p.Start, End: p.End, Chunk: p.Chunk, State: p.State, hasEnd: p.End != nil}
}

// pageAll pages /messages in dir from the start/end of the timeline with
// limit per page, following `end` until it is absent (spec: clients page
// until no end is returned). It fails on oversized pages and runaway loops.
func pageAll(t *testing.T, s *testserver.Server, token string, roomID id.RoomID, dir string, limit int) []rev {
	t.Helper()
	var all []rev
	from := ""
	empty := 0
	for i := 0; ; i++ {
		if i > 100000 {
			t.Fatalf("/messages paging did not terminate")
		}
		q := url.Values{"dir": {dir}, "limit": {strconv.Itoa(limit)}}
		if from != "" {
			q.Set("from", from)
		}
		p := messages(t, s, token, roomID, q)
		if len(p.Chunk) > limit {
			t.Fatalf("/messages returned %d events with limit %d", len(p.Chunk), limit)
		}
		all = append(all, p.Chunk...)
		if !p.hasEnd {
			return all
		}
		if len(p.Chunk) == 0 {
			empty++
			if empty > 20 {
				t.Fatalf("/messages keeps returning empty chunks with end %q (from %q)", *p.End, from)
			}
		} else {
			empty = 0
		}
		if *p.End == from {
			t.Fatalf("/messages end token %q equals from: pagination does not advance", from)
		}
		from = *p.End
	}
}

// eventIDs lists the IDs of events.
func eventIDs(evs []rev) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.EventID
	}
	return out
}

// messageBodies lists the bodies of the m.room.message events in evs.
func messageBodies(evs []rev) []string {
	out := []string{}
	for _, e := range evs {
		if e.Type == "m.room.message" {
			out = append(out, e.body())
		}
	}
	return out
}

// reversed returns a reversed copy.
func reversed[T any](in []T) []T {
	out := slices.Clone(in)
	slices.Reverse(out)
	return out
}

// wantNoDuplicates fails when an event ID appears twice.
func wantNoDuplicates(t *testing.T, evs []rev) {
	t.Helper()
	seen := map[string]bool{}
	for _, e := range evs {
		if seen[e.EventID] {
			t.Fatalf("event %s (%s) returned twice", e.EventID, e.Type)
		}
		seen[e.EventID] = true
	}
}

// membersOf GETs /members with query q and returns state_key -> membership.
func membersOf(t *testing.T, s *testserver.Server, token string, roomID id.RoomID, q url.Values) map[string]string {
	t.Helper()
	u := roomURL(s, roomID, "members")
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	r := do(t, "GET", u, token, nil).want(t, 200, "")
	var body struct {
		Chunk []rev `json:"chunk"`
	}
	decodeInto(t, r.Raw, &body)
	out := map[string]string{}
	for _, e := range body.Chunk {
		if e.Type != "m.room.member" || e.StateKey == nil {
			t.Fatalf("/members chunk holds a non-member event: %+v", e)
		}
		if _, dup := out[*e.StateKey]; dup {
			t.Fatalf("/members lists %s twice", *e.StateKey)
		}
		m, _ := e.Content["membership"].(string)
		out[*e.StateKey] = m
	}
	return out
}

// membership returns the content.membership of userID's member event as seen by token.
func membership(t *testing.T, s *testserver.Server, token string, roomID id.RoomID, userID string) string {
	t.Helper()
	c := stateContent(t, s, token, roomID, "m.room.member", userID)
	m, _ := c["membership"].(string)
	return m
}

// joinedRooms returns the joined room IDs of a client.
func joinedRooms(t *testing.T, cli *mautrix.Client) []id.RoomID {
	t.Helper()
	res, err := cli.JoinedRooms(ctxT(t))
	if err != nil {
		t.Fatalf("joined_rooms: %v", err)
	}
	return res.JoinedRooms
}

// num converts a JSON number to int64 (fails on anything else).
func num(t *testing.T, v any, what string) int64 {
	t.Helper()
	f, ok := v.(float64)
	if !ok {
		t.Fatalf("%s = %#v, want a number", what, v)
	}
	return int64(f)
}

// stateType is a state event type for mautrix calls.
func stateType(typ string) event.Type { return event.Type{Type: typ, Class: event.StateEventType} }
