package e2e

import (
	"encoding/json"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// ephemeralOf returns the raw ephemeral events of a joined room in a sync.
func ephemeralOf(resp *mautrix.RespSync, room id.RoomID) map[string]map[string]any {
	out := map[string]map[string]any{}
	jr := resp.Rooms.Join[room]
	if jr == nil {
		return out
	}
	for _, e := range jr.Ephemeral.Events {
		out[e.Type.Type] = e.Content.Raw
	}
	return out
}

// syncUntil syncs (long-polling) until cond holds for a response, or fails at the deadline.
func syncUntil(t *testing.T, cli *mautrix.Client, since string, cond func(*mautrix.RespSync) bool) (*mautrix.RespSync, string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp := syncOnce(t, cli, since, 2000, "")
		since = resp.NextBatch
		if cond(resp) {
			return resp, since
		}
	}
	t.Fatal("condition not reached before the deadline")
	return nil, ""
}

func TestSyncTyping(t *testing.T) {
	s := start(t, nil)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	join(t, bob, room)
	since := syncOnce(t, bob, "", 0, "").NextBatch

	if _, err := alice.UserTyping(ctxT(t), room, true, 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	resp, since := syncUntil(t, bob, since, func(r *mautrix.RespSync) bool { return ephemeralOf(r, room)["m.typing"] != nil })
	users, _ := ephemeralOf(resp, room)["m.typing"]["user_ids"].([]any)
	if len(users) != 1 || users[0] != string(alice.UserID) {
		t.Fatalf("typing users = %v", users)
	}
	// The notification expires by itself.
	resp, _ = syncUntil(t, bob, since, func(r *mautrix.RespSync) bool {
		typ := ephemeralOf(r, room)["m.typing"]
		ids, _ := typ["user_ids"].([]any)
		return typ != nil && len(ids) == 0
	})
	_ = resp
	// Only oneself, only in joined rooms.
	do(t, "PUT", roomURL(s, room, "typing", string(alice.UserID)), bob.AccessToken, map[string]any{"typing": true}).want(t, 403, "M_FORBIDDEN")
	outsider := newUser(t, s, "outsider")
	do(t, "PUT", roomURL(s, room, "typing", string(outsider.UserID)), outsider.AccessToken, map[string]any{"typing": true}).want(t, 403, "M_FORBIDDEN")
	do(t, "PUT", roomURL(s, room, "typing", string(bob.UserID)), bob.AccessToken, map[string]any{}).want(t, 400, "M_MISSING_PARAM")
}

func TestSyncReceiptsAndReadMarkers(t *testing.T) {
	s := start(t, nil)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	join(t, bob, room)
	ev1 := id.EventID(text(t, alice, room, "one"))
	ev2 := id.EventID(text(t, alice, room, "two"))
	since := syncOnce(t, alice, "", 0, "").NextBatch

	if err := bob.SendReceipt(ctxT(t), room, ev2, event.ReceiptTypeRead, nil); err != nil {
		t.Fatal(err)
	}
	if err := bob.SendReceipt(ctxT(t), room, ev1, event.ReceiptTypeReadPrivate, nil); err != nil {
		t.Fatal(err)
	}
	resp := syncOnce(t, alice, since, 0, "")
	rec := ephemeralOf(resp, room)["m.receipt"]
	raw, _ := json.Marshal(rec)
	var content map[string]map[string]map[string]map[string]any
	json.Unmarshal(raw, &content)
	if content[string(ev2)]["m.read"][string(bob.UserID)] == nil {
		t.Fatalf("alice does not see bob's read receipt: %s", raw)
	}
	if _, leaked := content[string(ev1)]["m.read.private"]; leaked {
		t.Fatalf("bob's private receipt leaked to alice: %s", raw)
	}
	// Bob sees his own private receipt.
	bobResp := syncOnce(t, bob, "", 0, "")
	raw, _ = json.Marshal(ephemeralOf(bobResp, room)["m.receipt"])
	json.Unmarshal(raw, &content)
	if content[string(ev1)]["m.read.private"][string(bob.UserID)] == nil {
		t.Fatalf("bob does not see his private receipt: %s", raw)
	}
	// Receipts never move backwards.
	if err := bob.SendReceipt(ctxT(t), room, ev1, event.ReceiptTypeRead, nil); err != nil {
		t.Fatal(err)
	}
	back := syncOnce(t, alice, resp.NextBatch, 0, "")
	if ephemeralOf(back, room)["m.receipt"] != nil {
		t.Fatal("an older receipt replaced a newer one")
	}
	// Read markers: m.fully_read lands in room account data.
	if err := bob.SetReadMarkers(ctxT(t), room, map[string]any{"m.fully_read": ev2, "m.read": ev2}); err != nil {
		t.Fatal(err)
	}
	r := do(t, "GET", v3(s, "user", string(bob.UserID), "rooms", string(room), "account_data", "m.fully_read"), bob.AccessToken, nil).want(t, 200, "")
	if r.Body["event_id"] != string(ev2) {
		t.Fatalf("m.fully_read = %v", r.Body)
	}
	// Errors: unknown event, unknown type, non-member.
	do(t, "POST", roomURL(s, room, "receipt", "m.read", "$nope"), bob.AccessToken, map[string]any{}).want(t, 404, "M_NOT_FOUND")
	do(t, "POST", roomURL(s, room, "receipt", "m.bogus", string(ev1)), bob.AccessToken, map[string]any{}).want(t, 400, "M_INVALID_PARAM")
	outsider := newUser(t, s, "outsider")
	do(t, "POST", roomURL(s, room, "receipt", "m.read", string(ev1)), outsider.AccessToken, map[string]any{}).want(t, 403, "M_FORBIDDEN")
}

func TestSyncPresence(t *testing.T) {
	s := start(t, nil)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	join(t, bob, room)
	since := syncOnce(t, bob, "", 0, "").NextBatch
	msg := "writing tests"
	if err := alice.SetPresence(ctxT(t), mautrix.ReqPresence{Presence: event.PresenceUnavailable, StatusMsg: msg}); err != nil {
		t.Fatal(err)
	}
	resp, _ := syncUntil(t, bob, since, func(r *mautrix.RespSync) bool {
		for _, e := range r.Presence.Events {
			if e.Sender == alice.UserID && e.Content.Raw["presence"] == "unavailable" {
				return true
			}
		}
		return false
	})
	_ = resp
	p, err := bob.GetPresence(ctxT(t), alice.UserID)
	if err != nil || p.Presence != event.PresenceUnavailable || p.StatusMsg != msg {
		t.Fatalf("presence = %+v, %v", p, err)
	}
	stranger := newUser(t, s, "stranger")
	do(t, "GET", v3(s, "presence", string(alice.UserID), "status"), stranger.AccessToken, nil).want(t, 403, "M_FORBIDDEN")
	do(t, "PUT", v3(s, "presence", string(alice.UserID), "status"), bob.AccessToken, map[string]any{"presence": "online"}).want(t, 403, "M_FORBIDDEN")
	do(t, "PUT", v3(s, "presence", string(bob.UserID), "status"), bob.AccessToken, map[string]any{"presence": "dancing"}).want(t, 400, "M_INVALID_PARAM")
}
