package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// TestRoomSendTxnIdempotency: PUT /send with the same txnId returns the same
// event (also after a restart) and stores one event; another device's
// identical txnId is a new event; transaction_id is echoed only to the sender.
func TestRoomSendTxnIdempotency(t *testing.T) {
	s := start(t, nil)
	createUser(t, s, "alice", testPassword)
	createUser(t, s, "bob", testPassword)
	alice := login(t, s, "alice", testPassword, "SAMEDEV", "")
	bob := login(t, s, "bob", testPassword, "SAMEDEV", "") // same device ID, other user
	roomID := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	join(t, bob, roomID)

	content := map[string]any{"msgtype": "m.text", "body": "once"}
	sendURL := func(srv string) string {
		return srv + "/_matrix/client/v3/rooms/" + url.PathEscape(string(roomID)) + "/send/m.room.message/txn1"
	}
	r1 := do(t, "PUT", sendURL(s.URL()), alice.AccessToken, content).want(t, 200, "")
	ev1, _ := r1.Body["event_id"].(string)
	if !strings.HasPrefix(ev1, "$") {
		t.Fatalf("send response = %s", r1.Raw)
	}
	r2 := do(t, "PUT", sendURL(s.URL()), alice.AccessToken, content).want(t, 200, "")
	if r2.Body["event_id"] != ev1 {
		t.Fatalf("retried txn returned %v, want %s", r2.Body["event_id"], ev1)
	}

	// The sending device sees its transaction ID; bob (same device ID) does not.
	e := eventOK(t, s, alice.AccessToken, roomID, ev1)
	if e.Type != "m.room.message" || e.Sender != string(alice.UserID) || e.RoomID != string(roomID) || e.body() != "once" || e.OriginServerTS <= 0 {
		t.Fatalf("event = %+v", e)
	}
	if e.Unsigned["transaction_id"] != "txn1" {
		t.Fatalf("sender's unsigned = %v, want transaction_id txn1", e.Unsigned)
	}
	if eb := eventOK(t, s, bob.AccessToken, roomID, ev1); eb.Unsigned["transaction_id"] != nil {
		t.Fatalf("another user (same device ID) sees transaction_id: %v", eb.Unsigned)
	}

	// Another device of the same user: a new event.
	alice2 := login(t, s, "alice", testPassword, "OTHERDEV", "")
	r3 := do(t, "PUT", sendURL(s.URL()), alice2.AccessToken, content).want(t, 200, "")
	ev3, _ := r3.Body["event_id"].(string)
	if ev3 == "" || ev3 == ev1 {
		t.Fatalf("other device's txn1 returned %q (first device's was %s)", ev3, ev1)
	}
	if e3 := eventOK(t, s, alice.AccessToken, roomID, ev3); e3.Unsigned["transaction_id"] != nil {
		t.Fatalf("device SAMEDEV sees OTHERDEV's transaction_id: %v", e3.Unsigned)
	}
	// Another user with the same txnId (and the same device ID): a new event.
	r4 := do(t, "PUT", sendURL(s.URL()), bob.AccessToken, content).want(t, 200, "")
	if ev4, _ := r4.Body["event_id"].(string); ev4 == "" || ev4 == ev1 || ev4 == ev3 {
		t.Fatalf("bob's txn1 returned %q", ev4)
	}

	// After a restart the transaction is still remembered.
	s2 := s.Restart()
	r5 := do(t, "PUT", sendURL(s2.URL()), alice.AccessToken, content).want(t, 200, "")
	if r5.Body["event_id"] != ev1 {
		t.Fatalf("txn1 after restart returned %v, want %s", r5.Body["event_id"], ev1)
	}
	if got := messageBodies(pageAll(t, s2, alice.AccessToken, roomID, "f", 50)); strings.Join(got, ",") != "once,once,once" {
		t.Fatalf("timeline bodies = %v, want three 'once' (alice SAMEDEV, alice OTHERDEV, bob)", got)
	}

	// r0 spot-check: send and read back.
	r := do(t, "PUT", cs(s2, "r0", "rooms", string(roomID), "send", "m.room.message", "r0txn"), alice.AccessToken,
		map[string]any{"msgtype": "m.text", "body": "via r0"}).want(t, 200, "")
	evR0, _ := r.Body["event_id"].(string)
	g := do(t, "GET", cs(s2, "r0", "rooms", string(roomID), "event", evR0), alice.AccessToken, nil).want(t, 200, "")
	if c, _ := g.Body["content"].(map[string]any); c["body"] != "via r0" {
		t.Fatalf("r0 event = %s", g.Raw)
	}
}

// TestRoomSendState: PUT/GET /state with and without a trailing slash for the
// empty state key, with a state key, and replacement semantics.
func TestRoomSendState(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	tok := alice.AccessToken
	roomID := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	noSlash := v3(s, "rooms", string(roomID), "state", "m.room.name")
	r := do(t, "PUT", noSlash, tok, map[string]any{"name": "N1"}).want(t, 200, "")
	if id1, _ := r.Body["event_id"].(string); !strings.HasPrefix(id1, "$") {
		t.Fatalf("state PUT response = %s", r.Raw)
	}
	if g := do(t, "GET", noSlash, tok, nil).want(t, 200, ""); g.Body["name"] != "N1" {
		t.Fatalf("GET name (no slash) = %s", g.Raw)
	}
	r = do(t, "PUT", noSlash+"/", tok, map[string]any{"name": "N2"}).want(t, 200, "")
	id2, _ := r.Body["event_id"].(string)
	if g := do(t, "GET", noSlash+"/", tok, nil).want(t, 200, ""); g.Body["name"] != "N2" {
		t.Fatalf("GET name (slash) = %s", g.Raw)
	}
	if g := do(t, "GET", noSlash, tok, nil).want(t, 200, ""); g.Body["name"] != "N2" {
		t.Fatalf("GET name (no slash) after second PUT = %s", g.Raw)
	}
	// mautrix reads the same state.
	var nameContent struct {
		Name string `json:"name"`
	}
	if err := alice.StateEvent(ctxT(t), roomID, stateType("m.room.name"), "", &nameContent); err != nil || nameContent.Name != "N2" {
		t.Fatalf("mautrix StateEvent name = %+v, %v", nameContent, err)
	}
	// Exactly one current m.room.name, the second one.
	n := 0
	for _, e := range fullState(t, s, tok, roomID) {
		if e.Type == "m.room.name" {
			n++
			if e.EventID != id2 || e.Content["name"] != "N2" {
				t.Fatalf("current m.room.name = %+v, want %s", e, id2)
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d m.room.name events in current state", n)
	}

	// A state key.
	res, err := alice.SendStateEvent(ctxT(t), roomID, stateType("org.example.thing"), "key1", map[string]any{"v": 1})
	if err != nil || !strings.HasPrefix(string(res.EventID), "$") {
		t.Fatalf("SendStateEvent: %+v, %v", res, err)
	}
	if c := stateContent(t, s, tok, roomID, "org.example.thing", "key1"); num(t, c["v"], "v") != 1 {
		t.Fatalf("state with key = %v", c)
	}
	do(t, "GET", roomURL(s, roomID, "state", "org.example.thing", "key2"), tok, nil).want(t, http.StatusNotFound, "M_NOT_FOUND")
	do(t, "GET", v3(s, "rooms", string(roomID), "state", "org.example.thing"), tok, nil).want(t, http.StatusNotFound, "M_NOT_FOUND")
	do(t, "GET", roomURL(s, roomID, "state", "m.room.topic", ""), tok, nil).want(t, http.StatusNotFound, "M_NOT_FOUND")
}

// TestRoomSendErrors: oversized events, non-members and members without the
// power level are refused, and nothing refused lands in the room.
func TestRoomSendErrors(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	carol := newUser(t, s, "carol")
	roomID := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Original"})
	join(t, bob, roomID)

	big := strings.Repeat("x", 70000)
	do(t, "PUT", roomURL(s, roomID, "send", "m.room.message", "big"), alice.AccessToken,
		map[string]any{"msgtype": "m.text", "body": big}).want(t, http.StatusRequestEntityTooLarge, "M_TOO_LARGE")
	do(t, "PUT", roomURL(s, roomID, "state", "org.example.big", ""), alice.AccessToken,
		map[string]any{"v": big}).want(t, http.StatusRequestEntityTooLarge, "M_TOO_LARGE")
	// Just under the limit is fine.
	do(t, "PUT", roomURL(s, roomID, "send", "m.room.message", "almost"), alice.AccessToken,
		map[string]any{"msgtype": "m.text", "body": strings.Repeat("y", 60000)}).want(t, 200, "")

	// Not a member.
	do(t, "PUT", roomURL(s, roomID, "send", "m.room.message", "c1"), carol.AccessToken,
		map[string]any{"msgtype": "m.text", "body": "intruder"}).want(t, http.StatusForbidden, "M_FORBIDDEN")
	do(t, "PUT", roomURL(s, roomID, "state", "m.room.name", ""), carol.AccessToken,
		map[string]any{"name": "intruder"}).want(t, http.StatusForbidden, "M_FORBIDDEN")

	// Bob is at PL 0; state_default and m.room.name need 50, power_levels 100.
	do(t, "PUT", roomURL(s, roomID, "state", "m.room.name", ""), bob.AccessToken,
		map[string]any{"name": "bob's"}).want(t, http.StatusForbidden, "M_FORBIDDEN")
	do(t, "PUT", roomURL(s, roomID, "state", "org.example.custom", ""), bob.AccessToken,
		map[string]any{"k": 1}).want(t, http.StatusForbidden, "M_FORBIDDEN")
	pl := stateContent(t, s, bob.AccessToken, roomID, "m.room.power_levels", "")
	users, _ := pl["users"].(map[string]any)
	if users == nil {
		users = map[string]any{}
		pl["users"] = users
	}
	users[string(bob.UserID)] = 100
	do(t, "PUT", roomURL(s, roomID, "state", "m.room.power_levels", ""), bob.AccessToken, pl).
		want(t, http.StatusForbidden, "M_FORBIDDEN")
	// Messages are allowed at PL 0.
	text(t, bob, roomID, "bob may talk")

	if n := stateContent(t, s, alice.AccessToken, roomID, "m.room.name", "")["name"]; n != "Original" {
		t.Fatalf("name = %v after refused changes", n)
	}
	pl2 := stateContent(t, s, alice.AccessToken, roomID, "m.room.power_levels", "")
	if u, _ := pl2["users"].(map[string]any); u[string(bob.UserID)] != nil {
		t.Fatalf("bob got into power levels: %v", pl2)
	}
	if got := messageBodies(pageAll(t, s, alice.AccessToken, roomID, "f", 100)); len(got) != 2 || len(got[0]) != 60000 || got[1] != "bob may talk" {
		t.Fatalf("timeline has %d messages, want exactly the 60000-byte one and bob's", len(got))
	}
}

// TestRoomRedaction: redacting one's own event, what a redacted event looks
// like, and redacting others' events with and without power.
func TestRoomRedaction(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	roomID := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	join(t, bob, roomID)

	m1 := text(t, alice, roomID, "secret")
	res, err := alice.RedactEvent(ctxT(t), roomID, id.EventID(m1), mautrix.ReqRedact{Reason: "oops", TxnID: "red1"})
	if err != nil {
		t.Fatalf("redact own event: %v", err)
	}
	red := string(res.EventID)
	if !strings.HasPrefix(red, "$") || red == m1 {
		t.Fatalf("redaction event_id = %q", red)
	}
	// Same txn again: same redaction.
	r := do(t, "PUT", roomURL(s, roomID, "redact", m1, "red1"), alice.AccessToken, map[string]any{"reason": "oops"}).want(t, 200, "")
	if r.Body["event_id"] != red {
		t.Fatalf("repeated redact txn = %s, want %s", r.Raw, red)
	}

	for _, who := range []string{alice.AccessToken, bob.AccessToken} {
		e := eventOK(t, s, who, roomID, m1)
		if e.Type != "m.room.message" || e.Sender != string(alice.UserID) || len(e.Content) != 0 {
			t.Fatalf("redacted event = %+v, want type/sender kept and content {}", e)
		}
		rb, _ := e.Unsigned["redacted_because"].(map[string]any)
		if rb["event_id"] != red || rb["type"] != "m.room.redaction" {
			t.Fatalf("unsigned.redacted_because = %v, want the redaction %s", e.Unsigned["redacted_because"], red)
		}
	}
	re := eventOK(t, s, alice.AccessToken, roomID, red)
	if re.Type != "m.room.redaction" || re.Content["reason"] != "oops" || (re.Content["redacts"] != m1 && re.Redacts != m1) {
		t.Fatalf("redaction event = %+v", re)
	}
	// /messages shows the redacted form too.
	for _, e := range pageAll(t, s, bob.AccessToken, roomID, "b", 50) {
		if e.EventID == m1 && len(e.Content) != 0 {
			t.Fatalf("/messages shows redacted event with content %v", e.Content)
		}
	}

	// Bob (PL 0, redact needs 50) cannot redact alice's message, but can redact his own.
	m2 := text(t, alice, roomID, "keep me")
	do(t, "PUT", roomURL(s, roomID, "redact", m2, "b1"), bob.AccessToken, map[string]any{}).want(t, http.StatusForbidden, "M_FORBIDDEN")
	if e := eventOK(t, s, alice.AccessToken, roomID, m2); e.body() != "keep me" || e.Unsigned["redacted_because"] != nil {
		t.Fatalf("m2 after refused redaction = %+v", e)
	}
	b1 := text(t, bob, roomID, "bob's own")
	do(t, "PUT", roomURL(s, roomID, "redact", b1, "b2"), bob.AccessToken, map[string]any{}).want(t, 200, "")
	if e := eventOK(t, s, bob.AccessToken, roomID, b1); len(e.Content) != 0 {
		t.Fatalf("bob's redacted event content = %v", e.Content)
	}
	// Alice (creator) can redact bob's messages.
	b2 := text(t, bob, roomID, "moderated")
	do(t, "PUT", roomURL(s, roomID, "redact", b2, "a2"), alice.AccessToken, map[string]any{}).want(t, 200, "")
	if e := eventOK(t, s, bob.AccessToken, roomID, b2); len(e.Content) != 0 {
		t.Fatalf("moderated event content = %v", e.Content)
	}
}

// TestRoomSendContentErrors: content under 64 KiB whose finished event
// (with the server's fields) is over 65,536 bytes is 413 M_TOO_LARGE, for
// messages and state; malformed power levels are 400 M_BAD_JSON, not 403.
func TestRoomSendContentErrors(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	tok := alice.AccessToken
	roomID := mkRoomRaw(t, s, tok, map[string]any{"preset": "private_chat", "room_version": "11"})

	body := strings.Repeat("z", 65400) // the request body fits, the event does not
	do(t, "PUT", roomURL(s, roomID, "send", "m.room.message", "edge"), tok,
		map[string]any{"msgtype": "m.text", "body": body}).want(t, http.StatusRequestEntityTooLarge, "M_TOO_LARGE")
	do(t, "PUT", roomURL(s, roomID, "state", "org.example.edge", ""), tok,
		map[string]any{"v": body}).want(t, http.StatusRequestEntityTooLarge, "M_TOO_LARGE")

	plURL := roomURL(s, roomID, "state", "m.room.power_levels", "")
	me := string(alice.UserID)
	for _, bad := range []map[string]any{
		{"users": map[string]any{me: 100}, "ban": "50"},
		{"users": map[string]any{me: 100}, "kick": 1.5},
		{"users": map[string]any{me: 100}, "events": []any{"m.room.name"}},
		{"users": map[string]any{me: 100, "@bob:localhost": "fifty"}},
		{"users": map[string]any{me: 100, "@A B:x": 50}},
		{"users": map[string]any{me: 100, "not-a-user": 50}},
		{"users": map[string]any{me: 100}, "notifications": map[string]any{"room": true}},
		{"users": map[string]any{me: 100}, "state_default": 1 << 54},
	} {
		do(t, "PUT", plURL, tok, bad).want(t, http.StatusBadRequest, "M_BAD_JSON")
	}
	// A well-formed change still works, and nothing malformed got in.
	do(t, "PUT", plURL, tok, map[string]any{"users": map[string]any{me: 100}, "ban": 60}).want(t, 200, "")
	if pl := stateContent(t, s, tok, roomID, "m.room.power_levels", ""); num(t, pl["ban"], "ban") != 60 || pl["kick"] != nil {
		t.Fatalf("power levels = %v", pl)
	}
	if got := messageBodies(pageAll(t, s, tok, roomID, "f", 50)); len(got) != 0 {
		t.Fatalf("oversized message landed: %d messages", len(got))
	}
}
