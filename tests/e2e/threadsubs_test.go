package e2e

import (
	"net/http"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"matrixhs/tests/testserver"
)

// threadSubURL is the MSC4306 (unstable) subscription endpoint of a thread.
func threadSubURL(s *testserver.Server, room id.RoomID, root id.EventID) string {
	return cs(s, "unstable", "io.element.msc4306", "rooms", string(room), "thread", string(root), "subscription")
}

// threadReply sends a reply in a thread and returns its ID.
func threadReply(t *testing.T, cli *mautrix.Client, room id.RoomID, root id.EventID, body string) id.EventID {
	t.Helper()
	res, err := cli.SendMessageEvent(ctxT(t), room, event.EventMessage, map[string]any{
		"msgtype": "m.text", "body": body,
		"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root},
	})
	if err != nil {
		t.Fatalf("sending a thread reply: %v", err)
	}
	return res.EventID
}

// The subscription endpoints, as Complement's TestThreadSubscriptions
// drives them: manual and automatic subscriptions, manual winning, cause
// events that are not in the thread, idempotent unsubscription, unknown
// and inaccessible threads, and automatic subscriptions refused when the
// user unsubscribed after their cause event.
func TestThreadSubscriptionEndpoints(t *testing.T) {
	s := start(t, nil)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	root := id.EventID(text(t, alice, room, "thread root"))
	sub := threadSubURL(s, room, root)
	getSub := func() *resp { return do(t, "GET", sub, alice.AccessToken, nil) }
	automatic := func(cause id.EventID) *resp {
		return do(t, "PUT", sub, alice.AccessToken, map[string]any{"automatic": cause})
	}

	getSub().want(t, http.StatusNotFound, "M_NOT_FOUND")
	do(t, "PUT", sub, alice.AccessToken, map[string]any{}).want(t, 200, "")
	if r := getSub().want(t, 200, ""); r.Body["automatic"] != false {
		t.Fatalf("manual subscription reads %s", r.Raw)
	}
	do(t, "DELETE", sub, alice.AccessToken, nil).want(t, 200, "")
	getSub().want(t, http.StatusNotFound, "M_NOT_FOUND")
	do(t, "DELETE", sub, alice.AccessToken, nil).want(t, 200, "") // idempotent

	// The root and replies of other threads cause no automatic subscription.
	other := id.EventID(text(t, alice, room, "another root"))
	otherReply := threadReply(t, alice, room, other, "elsewhere")
	automatic(root).want(t, http.StatusBadRequest, "IO.ELEMENT.MSC4306.M_NOT_IN_THREAD")
	automatic(otherReply).want(t, http.StatusBadRequest, "IO.ELEMENT.MSC4306.M_NOT_IN_THREAD")
	automatic("$nope:hs.test").want(t, http.StatusBadRequest, "IO.ELEMENT.MSC4306.M_NOT_IN_THREAD")
	do(t, "PUT", sub, alice.AccessToken, map[string]any{"automatic": 5}).want(t, http.StatusBadRequest, "M_BAD_JSON")

	// Automatic subscriptions: refused for causes from before the last
	// unsubscription, accepted for later ones, never downgrading a manual one.
	r1 := threadReply(t, alice, room, root, "reply 1")
	r2 := threadReply(t, alice, room, root, "reply 2")
	do(t, "DELETE", sub, alice.AccessToken, nil).want(t, 200, "") // not subscribed: nothing recorded
	automatic(r1).want(t, 200, "")
	if r := getSub().want(t, 200, ""); r.Body["automatic"] != true {
		t.Fatalf("automatic subscription reads %s", r.Raw)
	}
	do(t, "DELETE", sub, alice.AccessToken, nil).want(t, 200, "")
	r3 := threadReply(t, alice, room, root, "reply 3")
	automatic(r1).want(t, http.StatusConflict, "IO.ELEMENT.MSC4306.M_CONFLICTING_UNSUBSCRIPTION")
	automatic(r2).want(t, http.StatusConflict, "IO.ELEMENT.MSC4306.M_CONFLICTING_UNSUBSCRIPTION")
	getSub().want(t, http.StatusNotFound, "M_NOT_FOUND")
	automatic(r3).want(t, 200, "")
	do(t, "PUT", sub, alice.AccessToken, map[string]any{}).want(t, 200, "")
	automatic(r3).want(t, 200, "")
	if r := getSub().want(t, 200, ""); r.Body["automatic"] != false {
		t.Fatalf("an automatic subscription downgraded a manual one: %s", r.Raw)
	}

	// Unknown threads, replies as roots and rooms the user cannot read: 404.
	for _, u := range []string{
		threadSubURL(s, room, "$notathread:example.org"),
		threadSubURL(s, room, r1),
		threadSubURL(s, "!nope:hs.test", root),
	} {
		for _, method := range []string{"GET", "PUT", "DELETE"} {
			do(t, method, u, alice.AccessToken, map[string]any{}).want(t, http.StatusNotFound, "M_NOT_FOUND")
		}
	}
	for _, method := range []string{"GET", "PUT", "DELETE"} {
		do(t, method, sub, bob.AccessToken, map[string]any{}).want(t, http.StatusNotFound, "M_NOT_FOUND")
		do(t, method, sub, "", map[string]any{}).want(t, http.StatusUnauthorized, "M_MISSING_TOKEN")
	}
}

// The postcontent push rules, off by default (clients without thread
// subscriptions keep today's thread notifications); once on, replies in
// threads the user is not subscribed to do not notify (mentions still do), replies in subscribed
// threads do even in a room set to mentions only; the rules can be read,
// disabled and re-enabled but no custom postcontent rule can be created.
func TestThreadSubscriptionPushRules(t *testing.T) {
	s := start(t, nil)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	join(t, bob, room)
	root := id.EventID(text(t, alice, room, "thread root"))
	threadCount := func() float64 {
		t.Helper()
		r := do(t, "GET", v3(s, "sync")+`?filter={"room":{"timeline":{"unread_thread_notifications":true}}}`, bob.AccessToken, nil).want(t, 200, "")
		n, _ := jget(r.Body, "rooms", "join", string(room), "unread_thread_notifications", string(root), "notification_count").(float64)
		return n
	}
	rule := func(id string) string { return v3(s, "pushrules", "global", "postcontent", id) }
	for _, id := range []string{".io.element.msc4306.rule.unsubscribed_thread", ".io.element.msc4306.rule.subscribed_thread"} {
		if r := do(t, "GET", rule(id), bob.AccessToken, nil).want(t, 200, ""); r.Body["enabled"] != false {
			t.Fatalf("%s is on by default: %s", id, r.Raw)
		}
	}
	threadReply(t, alice, room, root, "with the rules off")
	if n := threadCount(); n != 1 {
		t.Fatalf("with the MSC4306 rules off a thread reply: count %v, want 1", n)
	}
	for _, id := range []string{".io.element.msc4306.rule.unsubscribed_thread", ".io.element.msc4306.rule.subscribed_thread"} {
		do(t, "PUT", rule(id)+"/enabled", bob.AccessToken, map[string]any{"enabled": true}).want(t, 200, "")
	}
	threadReply(t, alice, room, root, "nothing to see here")
	if n := threadCount(); n != 1 {
		t.Fatalf("a reply in an unsubscribed thread notified: %v", n)
	}
	threadReply(t, alice, room, root, "hey bob")
	if n := threadCount(); n != 2 {
		t.Fatalf("a mention in an unsubscribed thread: count %v, want 2", n)
	}
	// Subscribed, with the room set to mentions only: every reply notifies.
	do(t, "PUT", v3(s, "pushrules", "global", "room", string(room)), bob.AccessToken, map[string]any{"actions": []any{}}).want(t, 200, "")
	do(t, "PUT", threadSubURL(s, room, root), bob.AccessToken, map[string]any{}).want(t, 200, "")
	threadReply(t, alice, room, root, "subscribed now")
	if n := threadCount(); n != 3 {
		t.Fatalf("a reply in a subscribed thread: count %v, want 3", n)
	}

	// The rules as Complement disables them.
	const unsub = ".io.element.msc4306.rule.unsubscribed_thread"
	r := do(t, "GET", v3(s, "pushrules", "global", "postcontent", unsub), bob.AccessToken, nil).want(t, 200, "")
	if r.Body["rule_id"] != unsub || r.Body["default"] != true || r.Body["enabled"] != true {
		t.Fatalf("postcontent rule = %s", r.Raw)
	}
	do(t, "PUT", v3(s, "pushrules", "global", "postcontent", unsub, "enabled"), bob.AccessToken, map[string]any{"enabled": false}).want(t, 200, "")
	if r := do(t, "GET", v3(s, "pushrules", "global", "postcontent", unsub, "enabled"), bob.AccessToken, nil).want(t, 200, ""); r.Body["enabled"] != false {
		t.Fatalf("enabled = %s", r.Raw)
	}
	do(t, "PUT", v3(s, "pushrules", "global", "postcontent", "mine"), bob.AccessToken,
		map[string]any{"actions": []any{"notify"}, "conditions": []any{}}).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	do(t, "DELETE", v3(s, "pushrules", "global", "postcontent", unsub), bob.AccessToken, nil).want(t, http.StatusNotFound, "M_NOT_FOUND")
	do(t, "GET", v3(s, "pushrules", "global", "postcontent", "mine"), bob.AccessToken, nil).want(t, http.StatusNotFound, "M_NOT_FOUND")
}
