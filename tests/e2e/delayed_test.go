package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"matrixhs/tests/testserver"
)

// Delayed events (MSC4140), as Element Call uses them: a "left the call"
// state event scheduled ahead, kept from firing by restarts, sent when the
// client goes away.

const delayedBase = "/_matrix/client/unstable/org.matrix.msc4140/delayed_events"

func delayedState(t *testing.T, s *testserver.Server, token string, room id.RoomID, typ, key string, content any, delayMS int) *resp {
	t.Helper()
	return do(t, "PUT", roomURL(s, room, "state", typ, key)+"?org.matrix.msc4140.delay="+strconv.Itoa(delayMS), token, content)
}

func scheduled(t *testing.T, s *testserver.Server, token string) []any {
	t.Helper()
	r := do(t, "GET", s.URL()+delayedBase, token, nil).want(t, 200, "")
	list, _ := r.Body["delayed_events"].([]any)
	return list
}

// waitUnscheduled waits (with a deadline) until the user has no scheduled events.
func waitUnscheduled(t *testing.T, s *testserver.Server, token string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(scheduled(t, s, token)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still scheduled: %v", scheduled(t, s, token))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitState waits (with a deadline) until the room's state key has content
// with field == want.
func waitState(t *testing.T, s *testserver.Server, token string, room id.RoomID, typ, key, field, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := do(t, "GET", roomURL(s, room, "state", typ, key), token, nil)
		if r.Status == 200 && r.Body[field] == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("state %s/%s never became %s=%q (last: %d %s)", typ, key, field, want, r.Status, r.Raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDelayedEvents(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	tok := alice.AccessToken
	if v := do(t, "GET", s.URL()+"/_matrix/client/versions", "", nil).want(t, 200, ""); v.Body["unstable_features"].(map[string]any)["org.matrix.msc4140"] != true {
		t.Fatalf("versions does not advertise delayed events: %s", v.Raw)
	}
	room := mkRoomRaw(t, s, tok, map[string]any{"preset": "public_chat",
		"power_level_content_override": map[string]any{"state_default": 0}})
	join(t, bob, room)
	const typ = "org.matrix.msc3401.call.member"
	key := "_" + string(alice.UserID) + "_DEVICE"

	// Scheduled, listed, then sent when the delay runs out.
	r := delayedState(t, s, tok, room, typ, key, map[string]any{"state": "left"}, 150).want(t, 200, "")
	first, _ := r.Body["delay_id"].(string)
	if first == "" || r.Body["event_id"] != nil {
		t.Fatalf("scheduling answered %s", r.Raw)
	}
	if list := scheduled(t, s, tok); len(list) != 1 || list[0].(map[string]any)["delay_id"] != first ||
		list[0].(map[string]any)["state_key"] != key || list[0].(map[string]any)["delay"] != float64(150) {
		t.Fatalf("scheduled = %v", list)
	}
	waitState(t, s, tok, room, typ, key, "state", "left")
	waitUnscheduled(t, s, tok) // forgotten right after it is sent

	// A long delay: restart keeps it pending, send fires it now.
	r = delayedState(t, s, tok, room, typ, key, map[string]any{"state": "gone"}, 60000).want(t, 200, "")
	long := r.Body["delay_id"].(string)
	do(t, "POST", s.URL()+delayedBase+"/"+long, tok, map[string]any{"action": "restart"}).want(t, 200, "")
	do(t, "POST", s.URL()+delayedBase+"/"+long, bob.AccessToken, map[string]any{"action": "send"}).want(t, 404, "M_NOT_FOUND")
	do(t, "POST", s.URL()+delayedBase+"/"+long, tok, map[string]any{"action": "send"}).want(t, 200, "")
	if c := stateContent(t, s, tok, room, typ, key); c["state"] != "gone" {
		t.Fatalf("sent early: state = %v", c)
	}
	do(t, "POST", s.URL()+delayedBase+"/"+long, tok, map[string]any{"action": "send"}).want(t, 404, "M_NOT_FOUND")

	// Cancelled: gone from the list.
	r = delayedState(t, s, tok, room, typ, key, map[string]any{"state": "never"}, 60000).want(t, 200, "")
	cancelled := r.Body["delay_id"].(string)
	do(t, "POST", s.URL()+delayedBase+"/"+cancelled, tok, map[string]any{"action": "cancel"}).want(t, 200, "")
	if list := scheduled(t, s, tok); len(list) != 0 {
		t.Fatalf("cancelled event still scheduled: %v", list)
	}

	// Someone else setting the state drops the scheduled event; one's own update does not.
	r = delayedState(t, s, tok, room, typ, key, map[string]any{"state": "stale"}, 60000).want(t, 200, "")
	do(t, "PUT", roomURL(s, room, "state", typ, key), tok, map[string]any{"state": "joined"}).want(t, 200, "")
	if list := scheduled(t, s, tok); len(list) != 1 {
		t.Fatalf("own update cancelled the delayed event: %v", list)
	}
	do(t, "PUT", roomURL(s, room, "state", typ, key), bob.AccessToken, map[string]any{"state": "bob was here"}).want(t, 200, "")
	if list := scheduled(t, s, tok); len(list) != 0 {
		t.Fatalf("another user's update left the delayed event: %v", list)
	}

	// A delayed message.
	r = do(t, "PUT", roomURL(s, room, "send", "m.room.message", "t1")+"?org.matrix.msc4140.delay=10", tok,
		map[string]any{"msgtype": "m.text", "body": "later"}).want(t, 200, "")
	if r.Body["delay_id"] == nil {
		t.Fatalf("delayed message answered %s", r.Raw)
	}
	waitUnscheduled(t, s, tok)
	if bodies := messageBodies(pageAll(t, s, tok, room, "b", 10)); len(bodies) == 0 || bodies[0] != "later" {
		t.Fatalf("latest messages = %v", bodies)
	}

	// Refusals.
	delayedState(t, s, tok, room, typ, key, map[string]any{}, 1000*60*60*25).want(t, 400, "M_MAX_DELAY_EXCEEDED")
	delayedState(t, s, tok, room, typ, key, map[string]any{}, -1).want(t, 400, "M_INVALID_PARAM")
	delayedState(t, s, tok, room, typ, key, map[string]any{"big": strings.Repeat("x", 65500)}, 1000).want(t, 413, "M_TOO_LARGE")
	do(t, "PUT", roomURL(s, room, "state", typ, key)+"?org.matrix.msc4140.delay=5&org.matrix.msc4140.parent_delay_id=x", tok, map[string]any{}).want(t, 400, "M_INVALID_PARAM")
	other := mkRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	delayedState(t, s, tok, other, typ, key, map[string]any{}, 1000).want(t, 403, "M_FORBIDDEN")
	do(t, "POST", s.URL()+delayedBase+"/nope", tok, map[string]any{"action": "cancel"}).want(t, 404, "M_NOT_FOUND")
	do(t, "POST", s.URL()+delayedBase+"/nope", tok, map[string]any{"action": "explode"}).want(t, 400, "M_INVALID_PARAM")
	do(t, "GET", s.URL()+delayedBase, "", nil).want(t, 401, "M_MISSING_TOKEN")
}

// Scheduled events are stored: a restart does not lose them.
func TestDelayedEventsSurviveRestart(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	delayedState(t, s, alice.AccessToken, room, "org.example.flag", "", map[string]any{"v": "fired"}, 1000).want(t, 200, "")
	s2 := s.Restart()
	waitState(t, s2, alice.AccessToken, room, "org.example.flag", "", "v", "fired")
}
