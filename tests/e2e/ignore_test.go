package e2e

import (
	"net/url"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

func ignoreUsers(t *testing.T, cli *mautrix.Client, users ...id.UserID) {
	t.Helper()
	ignored := map[string]any{}
	for _, u := range users {
		ignored[string(u)] = map[string]any{}
	}
	if err := cli.SetAccountData(ctxT(t), "m.ignored_user_list", map[string]any{"ignored_users": ignored}); err != nil {
		t.Fatalf("setting m.ignored_user_list: %v", err)
	}
}

// TestIgnoredUsers checks m.ignored_user_list: the ignored user's messages,
// typing, receipts and invites are kept from the ignoring user in /sync,
// /messages and /context, while their state events still arrive; after
// unignoring, new messages arrive again.
func TestIgnoredUsers(t *testing.T) {
	s := start(t, nil)
	alice, bob, carol := newUser(t, s, "alice"), newUser(t, s, "bob"), newUser(t, s, "carol")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	join(t, bob, room)
	join(t, carol, room)
	text(t, bob, room, "bob before")

	ignoreUsers(t, alice, bob.UserID, alice.UserID) // ignoring oneself has no effect
	since := syncOnce(t, alice, "", 0, "").NextBatch
	text(t, alice, room, "alice 1")
	text(t, bob, room, "bob 1")
	carolMsg := text(t, carol, room, "carol 1")
	if _, err := bob.SendStateEvent(ctxT(t), room, event.StateMember, string(bob.UserID), map[string]any{"membership": "join", "displayname": "Bobby"}); err != nil {
		t.Fatal(err)
	}
	text(t, bob, room, "bob 2")

	resp := syncOnce(t, alice, since, 0, "")
	jr := resp.Rooms.Join[room]
	if jr == nil {
		t.Fatalf("room missing from alice's sync")
	}
	if got := bodies(jr.Timeline.Events); !slices.Equal(got, []string{"alice 1", "carol 1"}) {
		t.Fatalf("alice's timeline = %v, want bob's messages left out", got)
	}
	if !hasState(jr.Timeline.Events, "m.room.member", string(bob.UserID)) {
		t.Fatal("the ignored user's state event is missing from the timeline")
	}
	since = resp.NextBatch
	// An initial sync leaves out earlier messages too; bob (not ignoring) sees everything.
	if got := bodies(syncOnce(t, alice, "", 0, "").Rooms.Join[room].Timeline.Events); slices.Contains(got, "bob before") || slices.Contains(got, "bob 1") {
		t.Fatalf("alice's initial sync timeline = %v", got)
	}
	if got := bodies(syncOnce(t, bob, "", 0, "").Rooms.Join[room].Timeline.Events); !slices.Contains(got, "bob 2") {
		t.Fatalf("bob's own timeline = %v", got)
	}

	// /messages and /context.
	msgs := messageBodies(pageAll(t, s, alice.AccessToken, room, "b", 3))
	if !slices.Equal(msgs, []string{"carol 1", "alice 1"}) {
		t.Fatalf("alice's /messages = %v", msgs)
	}
	page := messages(t, s, alice.AccessToken, room, url.Values{"dir": {"b"}, "limit": {"50"}})
	var sawState bool
	for _, e := range page.Chunk {
		sawState = sawState || (e.Type == "m.room.member" && e.Content["displayname"] == "Bobby")
	}
	if !sawState {
		t.Fatal("/messages lacks the ignored user's state event")
	}
	r := do(t, "GET", roomURL(s, room, "context", carolMsg)+"?limit=20", alice.AccessToken, nil).want(t, 200, "")
	var ctxResp struct {
		Before []rev `json:"events_before"`
		After  []rev `json:"events_after"`
	}
	decodeInto(t, r.Raw, &ctxResp)
	for _, e := range append(ctxResp.Before, ctxResp.After...) {
		if e.Sender == string(bob.UserID) && e.StateKey == nil {
			t.Fatalf("/context returned the ignored user's event %s (%s)", e.EventID, e.body())
		}
	}
	if len(ctxResp.Before) == 0 || len(ctxResp.After) == 0 {
		t.Fatalf("/context lost non-ignored events: %s", r.Raw)
	}

	// Typing and receipts of the ignored user are left out.
	if _, err := bob.UserTyping(ctxT(t), room, true, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := carol.UserTyping(ctxT(t), room, true, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := bob.SendReceipt(ctxT(t), room, id.EventID(carolMsg), event.ReceiptTypeRead, nil); err != nil {
		t.Fatal(err)
	}
	if err := carol.SendReceipt(ctxT(t), room, id.EventID(carolMsg), event.ReceiptTypeRead, nil); err != nil {
		t.Fatal(err)
	}
	resp, since = syncUntil(t, alice, since, func(r *mautrix.RespSync) bool {
		ids, _ := ephemeralOf(r, room)["m.typing"]["user_ids"].([]any)
		return slices.Contains(ids, any(string(carol.UserID)))
	})
	if ids := ephemeralOf(resp, room)["m.typing"]["user_ids"].([]any); slices.Contains(ids, any(string(bob.UserID))) {
		t.Fatalf("typing users = %v include the ignored user", ids)
	}
	receipts := ephemeralOf(syncOnce(t, alice, "", 0, ""), room)["m.receipt"]
	read, _ := receipts[carolMsg].(map[string]any)["m.read"].(map[string]any)
	if read[string(carol.UserID)] == nil || read[string(bob.UserID)] != nil {
		t.Fatalf("receipts on carol's message = %v, want carol's only", receipts[carolMsg])
	}

	// Invites from the ignored user are not sent; others' are.
	fromBob := mkRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{alice.UserID}})
	fromCarol := mkRoom(t, carol, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{alice.UserID}})
	resp, since = syncUntil(t, alice, since, func(r *mautrix.RespSync) bool { return r.Rooms.Invite[fromCarol] != nil })
	if resp.Rooms.Invite[fromBob] != nil {
		t.Fatal("incremental sync shows the ignored user's invite")
	}
	if syncOnce(t, alice, "", 0, "").Rooms.Invite[fromBob] != nil {
		t.Fatal("initial sync shows the ignored user's invite")
	}

	// Unignoring: new messages arrive again.
	ignoreUsers(t, alice)
	text(t, bob, room, "bob 3")
	resp, _ = syncUntil(t, alice, since, func(r *mautrix.RespSync) bool { return r.Rooms.Join[room] != nil })
	if got := bodies(resp.Rooms.Join[room].Timeline.Events); !slices.Contains(got, "bob 3") {
		t.Fatalf("after unignoring, alice's timeline = %v", got)
	}
	if msgs := messageBodies(pageAll(t, s, alice.AccessToken, room, "b", 10)); !slices.Contains(msgs, "bob 3") {
		t.Fatalf("after unignoring, /messages = %v", msgs)
	}
}
