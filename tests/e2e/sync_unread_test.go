package e2e

import (
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

func unreadOf(t *testing.T, resp *mautrix.RespSync, room id.RoomID) (int, int) {
	t.Helper()
	jr := resp.Rooms.Join[room]
	if jr == nil || jr.UnreadNotifications == nil {
		t.Fatalf("room %s has no unread_notifications", room)
	}
	return jr.UnreadNotifications.NotificationCount, jr.UnreadNotifications.HighlightCount
}

// TestSyncUnreadCounts: messages count as unread for the other member, a
// mention highlights, a read receipt resets the counts, and
// /notifications lists what notified.
func TestSyncUnreadCounts(t *testing.T) {
	s := start(t, nil)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	carol := newUser(t, s, "carol")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	join(t, bob, room)
	join(t, carol, room)
	since := syncOnce(t, bob, "", 0, "").NextBatch

	text(t, alice, room, "one")
	text(t, alice, room, "two")
	mention, err := alice.SendMessageEvent(ctxT(t), room, event.EventMessage, map[string]any{
		"msgtype": "m.text", "body": "hey bob", "m.mentions": map[string]any{"user_ids": []string{string(bob.UserID)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	notice, err := alice.SendMessageEvent(ctxT(t), room, event.EventMessage, map[string]any{"msgtype": "m.notice", "body": "bot says"})
	if err != nil {
		t.Fatal(err)
	}
	_ = notice
	resp := syncOnce(t, bob, since, 0, "")
	if n, h := unreadOf(t, resp, room); n != 3 || h != 1 {
		t.Fatalf("bob's unread = %d notifications, %d highlights; want 3 and 1 (the notice must not count)", n, h)
	}
	// The sender's own messages never count for them.
	if n, _ := unreadOf(t, syncOnce(t, alice, "", 0, ""), room); n != 0 {
		t.Fatalf("alice's own messages count as unread: %d", n)
	}

	r := do(t, "GET", v3(s, "notifications"), bob.AccessToken, nil).want(t, 200, "")
	list, _ := r.Body["notifications"].([]any)
	if len(list) != 3 {
		t.Fatalf("/notifications has %d entries, want 3: %s", len(list), r.Raw)
	}
	r = do(t, "GET", v3(s, "notifications")+"?only=highlight", bob.AccessToken, nil).want(t, 200, "")
	list, _ = r.Body["notifications"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["event"].(map[string]any)["event_id"] != string(mention.EventID) {
		t.Fatalf("highlight notifications = %s", r.Raw)
	}

	// Reading up to the mention clears the counts.
	if err := bob.SendReceipt(ctxT(t), room, mention.EventID, event.ReceiptTypeRead, nil); err != nil {
		t.Fatal(err)
	}
	resp = syncOnce(t, bob, resp.NextBatch, 0, "")
	if n, h := unreadOf(t, resp, room); n != 0 || h != 0 {
		t.Fatalf("after the receipt: %d/%d, want 0/0", n, h)
	}
	// Muting the room with a room rule stops new counts.
	do(t, "PUT", v3(s, "pushrules", "global", "room", string(room)), bob.AccessToken, map[string]any{"actions": []any{}}).want(t, 200, "")
	text(t, alice, room, "muted")
	resp = syncOnce(t, bob, resp.NextBatch, 0, "")
	if n, _ := unreadOf(t, resp, room); n != 0 {
		t.Fatalf("muted room counts %d", n)
	}
}

// TestIgnoredSenderDoesNotNotify: messages from an ignored user add no
// unread count; after unignoring, new ones count again.
func TestIgnoredSenderDoesNotNotify(t *testing.T) {
	s := start(t, nil)
	alice, bob, carol := newUser(t, s, "alice"), newUser(t, s, "bob"), newUser(t, s, "carol")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	join(t, bob, room)
	join(t, carol, room)
	if err := bob.SetAccountData(ctxT(t), "m.ignored_user_list", map[string]any{"ignored_users": map[string]any{string(alice.UserID): map[string]any{}}}); err != nil {
		t.Fatal(err)
	}
	text(t, alice, room, "ignored")
	text(t, carol, room, "counted")
	if n, _ := unreadOf(t, syncOnce(t, bob, "", 0, ""), room); n != 1 {
		t.Fatalf("unread = %d, want 1 (only carol's)", n)
	}
	if err := bob.SetAccountData(ctxT(t), "m.ignored_user_list", map[string]any{"ignored_users": map[string]any{}}); err != nil {
		t.Fatal(err)
	}
	text(t, alice, room, "heard again")
	if n, _ := unreadOf(t, syncOnce(t, bob, "", 0, ""), room); n != 2 {
		t.Fatalf("unread after unignoring = %d, want 2", n)
	}
}
