package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"matrixhs/tests/testserver"
)

// Client-supplied limits are capped so one request cannot make the server
// read, hold and send a room's whole history: the client pages the rest.

// rawSyncRoom runs one /sync with an inline filter and returns the room's
// rooms.join entry.
func rawSyncRoom(t *testing.T, s *testserver.Server, token string, filter any, roomID id.RoomID) map[string]any {
	t.Helper()
	f, _ := json.Marshal(filter)
	r := do(t, "GET", v3(s, "sync")+"?filter="+url.QueryEscape(string(f)), token, nil).want(t, 200, "")
	room, ok := r.Body["rooms"].(map[string]any)["join"].(map[string]any)[string(roomID)].(map[string]any)
	if !ok {
		t.Fatalf("room %s missing from sync: %s", roomID, r.Raw)
	}
	return room
}

func TestSyncTimelineLimitCapped(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	for i := 0; i < 105; i++ {
		text(t, alice, room, fmt.Sprint("m", i))
	}
	huge := map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 1_000_000_000}}}
	// A stored filter may say so (it is only a request)...
	do(t, "POST", v3(s, "user", string(alice.UserID), "filter"), alice.AccessToken, huge).want(t, 200, "")
	// ...but a timeline holds at most 100 events, marked limited, and the
	// client pages back for the rest.
	tl := rawSyncRoom(t, s, alice.AccessToken, huge, room)["timeline"].(map[string]any)
	evs := tl["events"].([]any)
	if len(evs) != 100 || tl["limited"] != true {
		t.Fatalf("timeline of %d events, limited %v; want 100, limited", len(evs), tl["limited"])
	}
	if last := evs[99].(map[string]any)["content"].(map[string]any)["body"]; last != "m104" {
		t.Fatalf("newest event = %v, want m104", last)
	}
	older := messages(t, s, alice.AccessToken, room, url.Values{"dir": {"b"}, "from": {tl["prev_batch"].(string)}, "limit": {"10"}})
	if len(older.Chunk) != 10 || older.Chunk[0].body() != "m4" {
		t.Fatalf("paging back from prev_batch: %d events, first %q", len(older.Chunk), older.Chunk[0].body())
	}
}

// A page whose filter matches little reads a bounded stretch of history:
// it comes back short (even empty) with an end token to go on from, rather
// than scanning the room to its start in one request.
func TestMessagesScanIsBounded(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	if _, err := alice.SendMessageEvent(ctxT(t), room, event.Type{Type: "org.example.rare", Class: event.MessageEventType}, map[string]any{"n": 1}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 450; i++ {
		text(t, alice, room, fmt.Sprint("m", i))
	}
	q := url.Values{"dir": {"b"}, "limit": {"10"}, "filter": {`{"types":["org.example.rare"]}`}}
	first := messages(t, s, alice.AccessToken, room, q)
	if len(first.Chunk) != 0 || first.End == nil {
		t.Fatalf("first page: %d events, end %v; want none and an end token", len(first.Chunk), first.End)
	}
	var found []rev
	from := *first.End
	for i := 0; ; i++ {
		if i > 10 {
			t.Fatal("paging did not reach the room's start")
		}
		q.Set("from", from)
		p := messages(t, s, alice.AccessToken, room, q)
		found = append(found, p.Chunk...)
		if p.End == nil {
			break
		}
		from = *p.End
	}
	if len(found) != 1 || found[0].Type != "org.example.rare" {
		t.Fatalf("paging found %v", eventIDs(found))
	}
}

func TestSlidingSyncToDeviceLimit(t *testing.T) {
	s := start(t, nil)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	for i := 0; i < 3; i++ {
		msg := map[string]any{"messages": map[string]any{string(bob.UserID): map[string]any{string(bob.DeviceID): map[string]any{"n": i}}}}
		do(t, "PUT", v3(s, "sendToDevice", "m.test", fmt.Sprint("t", i)), alice.AccessToken, msg).want(t, 200, "")
	}
	toDevice := func(since string, limit int) (ns []float64, next string) {
		td := map[string]any{"enabled": true, "limit": limit}
		if since != "" {
			td["since"] = since
		}
		r := ssOK(t, s, bob.AccessToken, "", 0, map[string]any{"extensions": map[string]any{"to_device": td}})
		ext := r.Body["extensions"].(map[string]any)["to_device"].(map[string]any)
		for _, e := range ext["events"].([]any) {
			ns = append(ns, e.(map[string]any)["content"].(map[string]any)["n"].(float64))
		}
		return ns, ext["next_batch"].(string)
	}
	if got, _ := toDevice("", 0); len(got) != 0 {
		t.Fatalf("limit 0 returned %v", got)
	}
	got, next := toDevice("", 2)
	if fmt.Sprint(got) != "[0 1]" {
		t.Fatalf("first page = %v, want [0 1]", got)
	}
	if got, _ = toDevice(next, 2); fmt.Sprint(got) != "[2]" {
		t.Fatalf("second page = %v, want [2]", got)
	}
	ss(t, s, bob.AccessToken, "", 0, map[string]any{"extensions": map[string]any{"to_device": map[string]any{"enabled": true, "limit": -1}}}).
		want(t, 400, "M_INVALID_PARAM")
}
