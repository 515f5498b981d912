package e2e

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"matrixhs/tests/testserver"
)

// Simplified sliding sync (MSC4186), as Element X (matrix-rust-sdk) uses it:
// a room list with required_state and a short timeline, room
// subscriptions, and the to_device, e2ee, account_data, receipts and typing
// extensions on the same or a second connection.

const ssPath = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"

func ss(t *testing.T, s *testserver.Server, token, pos string, timeoutMS int, body any) *resp {
	t.Helper()
	q := url.Values{}
	if pos != "" {
		q.Set("pos", pos)
	}
	q.Set("timeout", fmt.Sprint(timeoutMS))
	return do(t, "POST", s.URL()+ssPath+"?"+q.Encode(), token, body)
}

func ssOK(t *testing.T, s *testserver.Server, token, pos string, timeoutMS int, body any) *resp {
	t.Helper()
	r := ss(t, s, token, pos, timeoutMS, body).want(t, 200, "")
	if p, _ := r.Body["pos"].(string); p == "" {
		t.Fatalf("response without pos: %s", r.Raw)
	}
	return r
}

func ssRooms(r *resp) map[string]any { m, _ := r.Body["rooms"].(map[string]any); return m }

func ssRoom(t *testing.T, r *resp, roomID id.RoomID) map[string]any {
	t.Helper()
	room, ok := ssRooms(r)[string(roomID)].(map[string]any)
	if !ok {
		t.Fatalf("room %s missing from response: %s", roomID, r.Raw)
	}
	return room
}

func ssCount(t *testing.T, r *resp, list string) int {
	t.Helper()
	l, _ := r.Body["lists"].(map[string]any)[list].(map[string]any)
	c, ok := l["count"].(float64)
	if !ok {
		t.Fatalf("list %s has no count: %s", list, r.Raw)
	}
	return int(c)
}

func ssTimelineBodies(room map[string]any) []string {
	var out []string
	tl, _ := room["timeline"].([]any)
	for _, e := range tl {
		ev := e.(map[string]any)
		if c, ok := ev["content"].(map[string]any); ok {
			if b, ok := c["body"].(string); ok {
				out = append(out, b)
			}
		}
	}
	return out
}

func ssStateKeys(room map[string]any) map[string]bool {
	out := map[string]bool{}
	st, _ := room["required_state"].([]any)
	for _, e := range st {
		ev := e.(map[string]any)
		out[ev["type"].(string)+"|"+ev["state_key"].(string)] = true
	}
	return out
}

func roomListRequest(rangeEnd, timeline int) map[string]any {
	return map[string]any{
		"conn_id": "room-list",
		"lists": map[string]any{
			"all": map[string]any{
				"ranges":         [][]int{{0, rangeEnd}},
				"timeline_limit": timeline,
				"required_state": [][]string{{"m.room.name", ""}, {"m.room.encryption", ""}, {"m.room.member", "$LAZY"},
					{"m.room.member", "$ME"}, {"m.room.create", ""}},
				"filters": map[string]any{"not_room_types": []string{"m.space"}},
			},
		},
		"extensions": map[string]any{"account_data": map[string]any{"enabled": true},
			"receipts": map[string]any{"enabled": true}, "typing": map[string]any{"enabled": true}},
	}
}

func TestSlidingSyncRoomList(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	tok := alice.AccessToken

	if v := do(t, "GET", s.URL()+"/_matrix/client/versions", "", nil).want(t, 200, ""); v.Body["unstable_features"].(map[string]any)["org.matrix.simplified_msc3575"] != true {
		t.Fatalf("versions does not advertise simplified sliding sync: %s", v.Raw)
	}

	older := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Older"})
	newer := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Newer"})
	space := mkRoom(t, alice, &mautrix.ReqCreateRoom{CreationContent: map[string]any{"type": "m.space"}})
	join(t, bob, older)
	join(t, bob, newer)
	text(t, bob, newer, "first in newer")
	text(t, bob, older, "bump older") // older is now the most recent room

	r := ssOK(t, s, tok, "", 0, roomListRequest(0, 1))
	if n := ssCount(t, r, "all"); n != 2 {
		t.Fatalf("count = %d, want 2 (the space filtered out): %s", n, r.Raw)
	}
	if len(ssRooms(r)) != 1 {
		t.Fatalf("range [0,0] sent %d rooms: %s", len(ssRooms(r)), r.Raw)
	}
	room := ssRoom(t, r, older)
	if room["initial"] != true || room["name"] != "Older" || ssTimelineBodies(room)[0] != "bump older" {
		t.Fatalf("older room = %v", room)
	}
	keys := ssStateKeys(room)
	for _, k := range []string{"m.room.name|", "m.room.create|", "m.room.member|" + string(alice.UserID), "m.room.member|" + string(bob.UserID)} {
		if !keys[k] {
			t.Fatalf("required_state lacks %s (lazy sender / $ME): %v", k, keys)
		}
	}
	if keys["m.room.join_rules|"] {
		t.Fatalf("required_state carries state nobody asked for: %v", keys)
	}
	if room["joined_count"] != float64(2) || room["notification_count"] != float64(1) {
		t.Fatalf("counts = joined %v, notifications %v", room["joined_count"], room["notification_count"])
	}
	if _, ok := r.Body["extensions"].(map[string]any)["account_data"].(map[string]any)["global"]; !ok {
		t.Fatalf("account_data extension missing: %s", r.Raw)
	}
	_ = space

	// Widening the range sends the next room, whole; the held one is not resent.
	pos := r.Body["pos"].(string)
	r = ssOK(t, s, tok, pos, 0, map[string]any{"conn_id": "room-list", "lists": map[string]any{"all": map[string]any{"ranges": [][]int{{0, 9}}}}})
	if len(ssRooms(r)) != 1 || ssRoom(t, r, newer)["initial"] != true {
		t.Fatalf("widened range: %s", r.Raw)
	}
	if ssCount(t, r, "all") != 2 {
		t.Fatalf("sticky list lost its filter: %s", r.Raw)
	}

	// A long-poll wakes with the new message only, counted as live.
	pos = r.Body["pos"].(string)
	got := make(chan *resp, 1)
	t0 := time.Now()
	go func() { got <- ss(t, s, tok, pos, 20000, map[string]any{"conn_id": "room-list"}) }()
	text(t, bob, newer, "live one")
	var live *resp
	select {
	case live = <-got:
	case <-time.After(15 * time.Second):
		t.Fatal("long-poll did not wake for a new message")
	}
	if took := time.Since(t0); took > 15*time.Second {
		t.Fatalf("long-poll ran into its timeout (%s)", took)
	}
	live.want(t, 200, "")
	room = ssRoom(t, live, newer)
	if b := ssTimelineBodies(room); len(b) != 1 || b[0] != "live one" || room["num_live"] != float64(1) || room["initial"] != nil {
		t.Fatalf("incremental room = %v", room)
	}
	if room["bump_stamp"].(float64) <= 0 || room["notification_count"] != float64(2) {
		t.Fatalf("bump_stamp / notification_count = %v / %v", room["bump_stamp"], room["notification_count"])
	}
	if _, ok := ssRooms(live)[string(older)]; ok {
		t.Fatalf("unchanged room resent: %s", live.Raw)
	}

	// A receipt moves the count to zero and the receipts extension carries it.
	pos = live.Body["pos"].(string)
	lastID := room["timeline"].([]any)[0].(map[string]any)["event_id"].(string)
	do(t, "POST", roomURL(s, newer, "receipt", "m.read", lastID), tok, map[string]any{}).want(t, 200, "")
	r = ssOK(t, s, tok, pos, 10000, map[string]any{"conn_id": "room-list"})
	if ssRoom(t, r, newer)["notification_count"] != float64(0) {
		t.Fatalf("count after receipt: %s", r.Raw)
	}
	if _, ok := r.Body["extensions"].(map[string]any)["receipts"].(map[string]any)["rooms"].(map[string]any)[string(newer)]; !ok {
		t.Fatalf("receipts extension lacks the room: %s", r.Raw)
	}

	// Opening a room: a subscription with a longer timeline sends it whole again.
	pos = r.Body["pos"].(string)
	r = ssOK(t, s, tok, pos, 0, map[string]any{"conn_id": "room-list",
		"room_subscriptions": map[string]any{string(newer): map[string]any{"timeline_limit": 10, "required_state": [][]string{{"*", "*"}}}}})
	room = ssRoom(t, r, newer)
	if b := ssTimelineBodies(room); room["initial"] != true || len(b) != 2 || !ssStateKeys(room)["m.room.join_rules|"] {
		t.Fatalf("subscribed room = %v", room)
	}

	// The previous pos still works once (a retried request); an unknown one does not.
	ssOK(t, s, tok, pos, 0, map[string]any{"conn_id": "room-list"})
	ss(t, s, tok, "999999", 0, map[string]any{"conn_id": "room-list"}).want(t, 400, "M_UNKNOWN_POS")
	ss(t, s, tok, pos, 0, map[string]any{"conn_id": "another"}).want(t, 400, "M_UNKNOWN_POS")
}

func TestSlidingSyncInvitesAndLeaves(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Secret"})
	req := map[string]any{"conn_id": "c", "lists": map[string]any{
		"invites": map[string]any{"ranges": [][]int{{0, 9}}, "timeline_limit": 5, "filters": map[string]any{"is_invite": true}},
		"joined":  map[string]any{"ranges": [][]int{{0, 9}}, "timeline_limit": 5, "filters": map[string]any{"is_invite": false}},
	}}
	r := ssOK(t, s, bob.AccessToken, "", 0, req)
	if ssCount(t, r, "invites") != 0 || ssCount(t, r, "joined") != 0 {
		t.Fatalf("empty account lists: %s", r.Raw)
	}
	if _, err := alice.InviteUser(ctxT(t), room, &mautrix.ReqInviteUser{UserID: bob.UserID}); err != nil {
		t.Fatal(err)
	}
	r = ssOK(t, s, bob.AccessToken, r.Body["pos"].(string), 10000, map[string]any{"conn_id": "c"})
	if ssCount(t, r, "invites") != 1 {
		t.Fatalf("invite not listed: %s", r.Raw)
	}
	inv := ssRoom(t, r, room)
	st, _ := inv["invite_state"].([]any)
	if len(st) == 0 || inv["timeline"] != nil {
		t.Fatalf("invite room = %v", inv)
	}
	join(t, bob, room)
	r = ssOK(t, s, bob.AccessToken, r.Body["pos"].(string), 10000, map[string]any{"conn_id": "c"})
	joined := ssRoom(t, r, room)
	if ssCount(t, r, "joined") != 1 || joined["initial"] != true || len(joined["timeline"].([]any)) == 0 {
		t.Fatalf("after joining: %s", r.Raw)
	}
	if _, err := bob.LeaveRoom(ctxT(t), room); err != nil {
		t.Fatal(err)
	}
	r = ssOK(t, s, bob.AccessToken, r.Body["pos"].(string), 10000, map[string]any{"conn_id": "c"})
	left := ssRoom(t, r, room)
	tl := left["timeline"].([]any)
	last := tl[len(tl)-1].(map[string]any)
	if last["type"] != "m.room.member" || last["content"].(map[string]any)["membership"] != "leave" || ssCount(t, r, "joined") != 0 {
		t.Fatalf("leave not delivered: %s", r.Raw)
	}
}

func TestSlidingSyncEncryptionExtensions(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	req := map[string]any{"conn_id": "encryption", "extensions": map[string]any{
		"to_device": map[string]any{"enabled": true}, "e2ee": map[string]any{"enabled": true}}}
	r := ssOK(t, s, bob.AccessToken, "", 0, req)
	ext := r.Body["extensions"].(map[string]any)
	if ext["e2ee"].(map[string]any)["device_one_time_keys_count"].(map[string]any)["signed_curve25519"] != float64(0) {
		t.Fatalf("e2ee extension: %s", r.Raw)
	}
	since := ext["to_device"].(map[string]any)["next_batch"].(string)

	msg := map[string]any{"messages": map[string]any{string(bob.UserID): map[string]any{string(bob.DeviceID): map[string]any{"hello": "bob"}}}}
	do(t, "PUT", v3(s, "sendToDevice", "m.test", "txn1"), alice.AccessToken, msg).want(t, 200, "")
	r = ssOK(t, s, bob.AccessToken, r.Body["pos"].(string), 10000, map[string]any{"conn_id": "encryption",
		"extensions": map[string]any{"to_device": map[string]any{"since": since}}})
	td := r.Body["extensions"].(map[string]any)["to_device"].(map[string]any)
	evs := td["events"].([]any)
	if len(evs) != 1 || evs[0].(map[string]any)["sender"] != string(alice.UserID) {
		t.Fatalf("to_device = %v", td)
	}
	// Acknowledged with its next_batch, the message is not sent again, even
	// to a new connection.
	next := td["next_batch"].(string)
	ssOK(t, s, bob.AccessToken, "", 0, map[string]any{"conn_id": "encryption",
		"extensions": map[string]any{"to_device": map[string]any{"enabled": true, "since": next}}})
	r = ssOK(t, s, bob.AccessToken, "", 0, map[string]any{"conn_id": "encryption",
		"extensions": map[string]any{"to_device": map[string]any{"enabled": true}}})
	if evs := r.Body["extensions"].(map[string]any)["to_device"].(map[string]any)["events"].([]any); len(evs) != 0 {
		t.Fatalf("acknowledged to-device message sent again: %s", r.Raw)
	}
}

func TestSlidingSyncBadRequests(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	tok := alice.AccessToken
	ss(t, s, "", "", 0, map[string]any{}).want(t, 401, "M_MISSING_TOKEN")
	ss(t, s, tok, "", 0, "{not json").want(t, 400, "M_NOT_JSON")
	ss(t, s, tok, "", 0, map[string]any{"lists": map[string]any{"l": map[string]any{"ranges": [][]int{{5, 1}}}}}).want(t, 400, "M_INVALID_PARAM")
	ss(t, s, tok, "", 0, map[string]any{"lists": map[string]any{"l": map[string]any{"ranges": [][]int{{0}}}}}).want(t, 400, "M_INVALID_PARAM")
	ss(t, s, tok, "", 0, map[string]any{"lists": map[string]any{"l": map[string]any{"ranges": [][]int{{0, 1}}, "timeline_limit": -1}}}).want(t, 400, "M_INVALID_PARAM")
	ss(t, s, tok, "", 0, map[string]any{"lists": map[string]any{"l": map[string]any{"ranges": [][]int{{0, 1}}, "required_state": [][]string{{"a"}}}}}).want(t, 400, "M_INVALID_PARAM")
	ss(t, s, tok, "", 0, map[string]any{"lists": "nope"}).want(t, 400, "M_BAD_JSON")
	ss(t, s, tok, "abc", 0, map[string]any{}).want(t, 400, "M_UNKNOWN_POS")
	ss(t, s, tok, "", 0, map[string]any{"extensions": map[string]any{"to_device": map[string]any{"enabled": true, "since": "x"}}}).want(t, 400, "M_INVALID_PARAM")
	ss(t, s, tok, "", -5, map[string]any{}).want(t, 400, "M_INVALID_PARAM")
	ss(t, s, tok, "", 0, map[string]any{"conn_id": strings.Repeat("c", 65)}).want(t, 400, "M_INVALID_PARAM")
	ss(t, s, tok, "", 0, map[string]any{"room_subscriptions": map[string]any{"not-a-room": map[string]any{}}}).want(t, 400, "M_INVALID_PARAM")
	many := map[string]any{}
	for i := 0; i < 51; i++ {
		many[fmt.Sprint("l", i)] = map[string]any{"ranges": [][]int{{0, 1}}}
	}
	ss(t, s, tok, "", 0, map[string]any{"lists": many}).want(t, 400, "M_INVALID_PARAM")
	state := make([][]string, 101)
	for i := range state {
		state[i] = []string{"t", fmt.Sprint(i)}
	}
	ss(t, s, tok, "", 0, map[string]any{"room_subscriptions": map[string]any{"!a:hs.test": map[string]any{"required_state": state}}}).want(t, 400, "M_INVALID_PARAM")
}

// A refused request leaves the connection's sticky parameters as they were.
func TestSlidingSyncRefusedRequestChangesNothing(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	r := ssOK(t, s, alice.AccessToken, "", 0, map[string]any{"conn_id": "c",
		"lists": map[string]any{"a": map[string]any{"ranges": [][]int{{0, 0}}, "timeline_limit": 1}}})
	if len(ssRooms(r)) != 1 {
		t.Fatalf("first response: %s", r.Raw)
	}
	pos := r.Body["pos"].(string)
	// The lists are valid; the subscription (read after them) is not.
	ss(t, s, alice.AccessToken, pos, 0, map[string]any{"conn_id": "c",
		"lists":              map[string]any{"a": map[string]any{"ranges": [][]int{{0, 9}}}, "b": map[string]any{"ranges": [][]int{{0, 1}}}},
		"room_subscriptions": map[string]any{"!x:hs.test": map[string]any{"required_state": [][]string{{"only-a-type"}}}},
	}).want(t, 400, "M_INVALID_PARAM")
	r = ssOK(t, s, alice.AccessToken, pos, 0, map[string]any{"conn_id": "c"})
	if len(ssRooms(r)) != 0 {
		t.Fatalf("the refused request widened the list: %s", r.Raw)
	}
	if _, ok := r.Body["lists"].(map[string]any)["b"]; ok {
		t.Fatalf("the refused request added a list: %s", r.Raw)
	}
}

// The is_dm (m.direct) and is_encrypted list filters.
func TestSlidingSyncDMAndEncryptedFilters(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	tok := alice.AccessToken
	dm := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "trusted_private_chat"})
	secret := mkRoomRaw(t, s, tok, map[string]any{"preset": "private_chat",
		"initial_state": []any{map[string]any{"type": "m.room.encryption", "state_key": "", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}}})
	mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	do(t, "PUT", v3(s, "user", string(alice.UserID), "account_data", "m.direct"), tok,
		map[string]any{"@bob:hs.test": []string{string(dm)}}).want(t, 200, "")
	list := func(filters map[string]any) map[string]any {
		return map[string]any{"ranges": [][]int{{0, 9}}, "timeline_limit": 0, "filters": filters}
	}
	r := ssOK(t, s, tok, "", 0, map[string]any{"lists": map[string]any{
		"dms":       list(map[string]any{"is_dm": true}),
		"groups":    list(map[string]any{"is_dm": false}),
		"encrypted": list(map[string]any{"is_encrypted": true}),
	}})
	if ssCount(t, r, "dms") != 1 || ssCount(t, r, "groups") != 2 || ssCount(t, r, "encrypted") != 1 {
		t.Fatalf("filtered counts: %s", r.Raw)
	}
	ssRoom(t, r, dm)
	ssRoom(t, r, secret)
}

// A room that enters the range later brings its room account data along.
func TestSlidingSyncRoomAccountDataForNewRooms(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	tok := alice.AccessToken
	older := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	newer := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	do(t, "PUT", v3(s, "user", string(alice.UserID), "rooms", string(older), "tags", "u.work"), tok, map[string]any{}).want(t, 200, "")
	do(t, "PUT", v3(s, "user", string(alice.UserID), "rooms", string(newer), "account_data", "org.example.note"), tok, map[string]any{"n": 1}).want(t, 200, "")
	ext := map[string]any{"account_data": map[string]any{"enabled": true}}
	r := ssOK(t, s, tok, "", 0, map[string]any{"conn_id": "c", "extensions": ext,
		"lists": map[string]any{"all": map[string]any{"ranges": [][]int{{0, 0}}, "timeline_limit": 1}}})
	ssRoom(t, r, newer)
	r = ssOK(t, s, tok, r.Body["pos"].(string), 0, map[string]any{"conn_id": "c",
		"lists": map[string]any{"all": map[string]any{"ranges": [][]int{{0, 1}}}}})
	ssRoom(t, r, older)
	rooms := r.Body["extensions"].(map[string]any)["account_data"].(map[string]any)["rooms"].(map[string]any)
	tags, _ := rooms[string(older)].([]any)
	if len(tags) != 1 || tags[0].(map[string]any)["type"] != "m.tag" {
		t.Fatalf("account data for the room entering the range = %v", rooms)
	}
	if _, again := rooms[string(newer)]; again {
		t.Fatalf("the held room's account data was sent again: %v", rooms)
	}
}

// One user opening connections in a loop (a client bug, or an attack)
// drops only their own oldest connections: other users' positions stay
// valid, and the user's most recent connection survives.
func TestSlidingSyncConnectionFloodDropsOnlyOwnConnections(t *testing.T) {
	s := start(t, nil)
	alice, mallory := newUser(t, s, "alice"), newUser(t, s, "mallory")
	alicePos := ssOK(t, s, alice.AccessToken, "", 0, map[string]any{"conn_id": "main"}).Body["pos"].(string)
	firstPos := ssOK(t, s, mallory.AccessToken, "", 0, map[string]any{"conn_id": "c0"}).Body["pos"].(string)
	var lastPos string
	const n = 1050
	for i := 1; i <= n; i++ {
		lastPos = ssOK(t, s, mallory.AccessToken, "", 0, map[string]any{"conn_id": fmt.Sprint("c", i)}).Body["pos"].(string)
	}
	ssOK(t, s, alice.AccessToken, alicePos, 0, map[string]any{"conn_id": "main"})
	ssOK(t, s, mallory.AccessToken, lastPos, 0, map[string]any{"conn_id": fmt.Sprint("c", n)})
	ss(t, s, mallory.AccessToken, firstPos, 0, map[string]any{"conn_id": "c0"}).want(t, 400, "M_UNKNOWN_POS")
}

// A room in the ranges of several lists, and subscribed to, gets the union
// of their required_state and the longest timeline; overlapping ranges of
// one list count once.
func TestSlidingSyncOverlappingListsWiden(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Both", Topic: "topic"})
	for i := 0; i < 3; i++ {
		text(t, alice, room, fmt.Sprint("m", i))
	}
	r := ssOK(t, s, alice.AccessToken, "", 0, map[string]any{
		"lists": map[string]any{
			"a": map[string]any{"ranges": [][]int{{0, 5}, {0, 1_000_000_000}, {0, 0}}, "timeline_limit": 1,
				"required_state": [][]string{{"m.room.name", ""}}},
			"b": map[string]any{"ranges": [][]int{{0, 0}}, "timeline_limit": 2, "required_state": [][]string{{"m.room.topic", ""}}},
		},
		"room_subscriptions": map[string]any{string(room): map[string]any{"required_state": [][]string{{"m.room.create", ""}}}},
	})
	got := ssRoom(t, r, room)
	keys := ssStateKeys(got)
	if len(keys) != 3 || !keys["m.room.name|"] || !keys["m.room.topic|"] || !keys["m.room.create|"] {
		t.Fatalf("required_state = %v, want name, topic and create", keys)
	}
	if b := ssTimelineBodies(got); fmt.Sprint(b) != "[m1 m2]" {
		t.Fatalf("timeline = %v, want the longest asked for", b)
	}
}
