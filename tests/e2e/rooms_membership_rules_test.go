package e2e

import (
	"net/http"
	"testing"

	"maunium.net/go/mautrix"
)

// TestRoomIdentifierValidation: user, room and event IDs and aliases that
// break the spec's grammar are refused with 400 M_INVALID_PARAM before
// anything happens (power level keys, being content, with M_BAD_JSON).
func TestRoomIdentifierValidation(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	tok := alice.AccessToken
	roomID := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	msg := text(t, alice, roomID, "hello")

	for _, action := range []string{"invite", "kick", "ban", "unban"} {
		for _, bad := range []string{"@A B:x", "not-a-user", "@nodomain", "@bob:bad$server"} {
			do(t, "POST", roomURL(s, roomID, action), tok, map[string]any{"user_id": bad}).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
		}
	}
	do(t, "POST", v3(s, "createRoom"), tok, map[string]any{"invite": []string{"@A B:x"}}).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	do(t, "POST", v3(s, "createRoom"), tok, map[string]any{
		"room_version":                 "11",
		"power_level_content_override": map[string]any{"users": map[string]any{string(alice.UserID): 100, "@A B:x": 50}},
	}).want(t, http.StatusBadRequest, "M_BAD_JSON")
	do(t, "PUT", roomURL(s, roomID, "redact", "not-an-event", "t1"), tok, map[string]any{}).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	do(t, "PUT", roomURL(s, roomID, "redact", "$short", "t2"), tok, map[string]any{}).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	for _, bad := range []string{"!has space:hs.test", "#noserver", "!nohash"} {
		do(t, "POST", v3(s, "join", bad), tok, map[string]any{}).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
		do(t, "POST", v3(s, "knock", bad), tok, map[string]any{}).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	}
	do(t, "PUT", v3(s, "rooms", "not-a-room", "send", "m.room.message", "t3"), tok, map[string]any{"body": "x"}).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	do(t, "PUT", v3(s, "rooms", "not-a-room", "state", "m.room.name", ""), tok, map[string]any{"name": "x"}).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	do(t, "POST", v3(s, "rooms", "not-a-room", "leave"), tok, map[string]any{}).want(t, http.StatusBadRequest, "M_INVALID_PARAM")

	// Nothing of it reached the room; valid requests still work.
	if got := messageBodies(pageAll(t, s, tok, roomID, "f", 50)); len(got) != 1 {
		t.Fatalf("timeline messages = %v", got)
	}
	do(t, "PUT", roomURL(s, roomID, "redact", msg, "t4"), tok, map[string]any{}).want(t, 200, "")
}

// TestRoomInviteCarriesProfile: an invite's member event carries the local
// invitee's display name and avatar, by /invite and by createRoom.
func TestRoomInviteCarriesProfile(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	carol := newUser(t, s, "carol")
	ctx := ctxT(t)
	if err := bob.SetDisplayName(ctx, "Bob B"); err != nil {
		t.Fatal(err)
	}
	do(t, "PUT", v3(s, "profile", string(bob.UserID), "avatar_url"), bob.AccessToken, map[string]any{"avatar_url": "mxc://hs.test/bob"}).want(t, 200, "")
	if err := carol.SetDisplayName(ctx, "Carol C"); err != nil {
		t.Fatal(err)
	}

	roomID := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	do(t, "POST", roomURL(s, roomID, "invite"), alice.AccessToken, map[string]any{"user_id": string(bob.UserID)}).want(t, 200, "")
	c := stateContent(t, s, alice.AccessToken, roomID, "m.room.member", string(bob.UserID))
	if c["membership"] != "invite" || c["displayname"] != "Bob B" || c["avatar_url"] != "mxc://hs.test/bob" {
		t.Fatalf("bob's invite = %v, want his profile", c)
	}

	room2 := mkRoomRaw(t, s, alice.AccessToken, map[string]any{"invite": []string{string(carol.UserID)}, "is_direct": true})
	c = stateContent(t, s, alice.AccessToken, room2, "m.room.member", string(carol.UserID))
	if c["membership"] != "invite" || c["displayname"] != "Carol C" || c["avatar_url"] != nil || c["is_direct"] != true {
		t.Fatalf("carol's createRoom invite = %v, want her display name and is_direct", c)
	}
}

// TestRoomMembershipRules: kicking someone not in the room is refused;
// /join/{roomIdOrAlias} keeps the body as member content; repeating a join,
// a leave or a state event answers the existing event without a new one.
func TestRoomMembershipRules(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	carol := newUser(t, s, "carol")
	roomID := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	tok := alice.AccessToken
	kick := func(who string) *resp {
		return do(t, "POST", roomURL(s, roomID, "kick"), tok, map[string]any{"user_id": who, "reason": "testing"})
	}

	// Never in the room, then left: a kick is 403 and leaves no event.
	kick(string(bob.UserID)).want(t, http.StatusForbidden, "M_FORBIDDEN")
	join(t, bob, roomID)
	do(t, "POST", roomURL(s, roomID, "leave"), bob.AccessToken, map[string]any{}).want(t, 200, "")
	before := len(pageAll(t, s, tok, roomID, "f", 100))
	kick(string(bob.UserID)).want(t, http.StatusForbidden, "M_FORBIDDEN")
	// Leaving again is answered with the existing leave.
	do(t, "POST", roomURL(s, roomID, "leave"), bob.AccessToken, map[string]any{}).want(t, 200, "")
	if n := len(pageAll(t, s, tok, roomID, "f", 100)); n != before {
		t.Fatalf("refused kick or repeated leave added %d events", n-before)
	}

	// Custom join content is kept by /join/{roomIdOrAlias}; /rooms/{id}/join
	// keeps only the reason (as Synapse).
	do(t, "POST", v3(s, "join", string(roomID)), carol.AccessToken, map[string]any{"foo": "bar", "membership": "leave"}).want(t, 200, "")
	c := stateContent(t, s, tok, roomID, "m.room.member", string(carol.UserID))
	if c["membership"] != "join" || c["foo"] != "bar" {
		t.Fatalf("carol's join content = %v, want membership join and foo bar", c)
	}
	do(t, "POST", roomURL(s, roomID, "join"), bob.AccessToken, map[string]any{"foo": "bar", "reason": "back"}).want(t, 200, "")
	if c := stateContent(t, s, tok, roomID, "m.room.member", string(bob.UserID)); c["foo"] != nil || c["reason"] != "back" {
		t.Fatalf("bob's join content = %v, want only the reason kept", c)
	}

	// Joining twice answers the first join.
	first := stateEvent(t, fullState(t, s, tok, roomID), "m.room.member", string(carol.UserID)).EventID
	before = len(pageAll(t, s, tok, roomID, "f", 100))
	r := do(t, "POST", v3(s, "join", string(roomID)), carol.AccessToken, map[string]any{"foo": "bar"}).want(t, 200, "")
	if r.Body["room_id"] != string(roomID) {
		t.Fatalf("second join = %s", r.Raw)
	}
	if again := stateEvent(t, fullState(t, s, tok, roomID), "m.room.member", string(carol.UserID)).EventID; again != first {
		t.Fatalf("second join made event %s, want the first %s kept", again, first)
	}

	// The same state twice from the same sender: the same event; from
	// another sender (or with other content): a new one.
	stateURL := roomURL(s, roomID, "state", "org.example.thing", "")
	id1 := do(t, "PUT", stateURL, tok, map[string]any{"a_key": "a_value", "n": 1}).want(t, 200, "").Body["event_id"]
	id2 := do(t, "PUT", stateURL, tok, map[string]any{"n": 1, "a_key": "a_value"}).want(t, 200, "").Body["event_id"]
	if id1 != id2 {
		t.Fatalf("identical state answered %v then %v", id1, id2)
	}
	if n := len(pageAll(t, s, tok, roomID, "f", 100)); n != before+1 {
		t.Fatalf("repeated join and state added %d events, want 1", n-before)
	}
	id3 := do(t, "PUT", stateURL, tok, map[string]any{"a_key": "other"}).want(t, 200, "").Body["event_id"]
	if id3 == id1 {
		t.Fatal("changed state answered the old event")
	}
}
