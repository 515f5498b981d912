package e2e

import (
	"encoding/json"
	"net/url"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestSyncKnock: a knock shows in the knocker's rooms.knock with stripped state.
func TestSyncKnock(t *testing.T) {
	s := start(t, nil)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", RoomVersion: "10", Name: "Knockable",
		InitialState: []*event.Event{{Type: event.StateJoinRules, Content: event.Content{Raw: map[string]any{"join_rule": "knock"}}}}})
	since := syncOnce(t, bob, "", 0, "").NextBatch
	do(t, "POST", v3(s, "knock", string(room)), bob.AccessToken, map[string]any{"reason": "let me in"}).want(t, 200, "")
	r := do(t, "GET", v3(s, "sync")+"?since="+url.QueryEscape(since), bob.AccessToken, nil).want(t, 200, "")
	var resp struct {
		Rooms struct {
			Knock map[string]struct {
				KnockState struct {
					Events []map[string]any `json:"events"`
				} `json:"knock_state"`
			} `json:"knock"`
		} `json:"rooms"`
	}
	decodeInto(t, r.Raw, &resp)
	k, ok := resp.Rooms.Knock[string(room)]
	if !ok {
		t.Fatalf("rooms.knock lacks the room: %s", r.Raw)
	}
	var sawName, sawKnock bool
	for _, e := range k.KnockState.Events {
		if e["type"] == "m.room.name" {
			sawName = true
		}
		if e["type"] == "m.room.member" && e["state_key"] == string(bob.UserID) {
			sawKnock = e["content"].(map[string]any)["membership"] == "knock"
		}
	}
	if !sawName || !sawKnock {
		t.Fatalf("knock_state lacks the name or the knock: %s", r.Raw)
	}
}

// TestSyncThreadNotifications: with unread_thread_notifications, thread
// replies count per thread and a threaded receipt clears only its thread.
func TestSyncThreadNotifications(t *testing.T) {
	s := start(t, nil)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	join(t, bob, room)
	root := id.EventID(text(t, alice, room, "thread root"))
	// Replies notify those subscribed to the thread (MSC4306).
	do(t, "PUT", threadSubURL(s, room, root), bob.AccessToken, map[string]any{}).want(t, 200, "")
	var last id.EventID
	for _, body := range []string{"reply 1", "reply 2"} {
		res, err := alice.SendMessageEvent(ctxT(t), room, event.EventMessage, map[string]any{
			"msgtype": "m.text", "body": body,
			"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root},
		})
		if err != nil {
			t.Fatal(err)
		}
		last = res.EventID
	}
	f, _ := json.Marshal(map[string]any{"room": map[string]any{"timeline": map[string]any{"unread_thread_notifications": true}}})
	get := func() (main map[string]any, threads map[string]any) {
		r := do(t, "GET", v3(s, "sync")+"?filter="+url.QueryEscape(string(f)), bob.AccessToken, nil).want(t, 200, "")
		jr := r.Body["rooms"].(map[string]any)["join"].(map[string]any)[string(room)].(map[string]any)
		// Per-thread counts are left out when there are none (Synapse).
		threads, _ = jr["unread_thread_notifications"].(map[string]any)
		return jr["unread_notifications"].(map[string]any), threads
	}
	main, threads := get()
	if main["notification_count"].(float64) != 1 {
		t.Fatalf("main timeline count = %v, want 1 (the root)", main)
	}
	if tc, ok := threads[string(root)].(map[string]any); !ok || tc["notification_count"].(float64) != 2 {
		t.Fatalf("thread counts = %v, want 2 for %s", threads, root)
	}
	do(t, "POST", roomURL(s, room, "receipt", "m.read", string(last)), bob.AccessToken, map[string]any{"thread_id": string(root)}).want(t, 200, "")
	main, threads = get()
	if _, ok := threads[string(root)]; ok || main["notification_count"].(float64) != 1 {
		t.Fatalf("after the thread receipt: main %v, threads %v", main, threads)
	}
}
