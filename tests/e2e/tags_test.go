package e2e

import (
	"net/http"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
)

// roomTagsInSync returns the tags of the room's m.tag account data in a
// sync response (nil when the response has none).
func roomTagsInSync(resp *mautrix.RespSync, room string) map[string]any {
	for rid, jr := range resp.Rooms.Join {
		if string(rid) != room {
			continue
		}
		for _, e := range jr.AccountData.Events {
			if e.Type.Type == "m.tag" {
				tags, _ := e.Content.Raw["tags"].(map[string]any)
				if tags == nil {
					tags = map[string]any{}
				}
				return tags
			}
		}
	}
	return nil
}

// TestRoomTags adds, lists and removes tags; they reach /sync as the
// room's m.tag account data, and only their owner may touch them.
func TestRoomTags(t *testing.T) {
	s := start(t, nil)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	since := syncOnce(t, alice, "", 0, "").NextBatch

	tags, err := alice.GetTags(ctxT(t), room)
	if err != nil || len(tags.Tags) != 0 {
		t.Fatalf("tags of an untagged room = %+v, %v", tags, err)
	}
	if err := alice.AddTag(ctxT(t), room, event.RoomTagFavourite, 0.25); err != nil {
		t.Fatalf("AddTag: %v", err)
	}
	if err := alice.AddTagWithCustomData(ctxT(t), room, "u.work", map[string]any{}); err != nil {
		t.Fatalf("AddTag u.work: %v", err)
	}
	r := do(t, "GET", v3(s, "user", string(alice.UserID), "rooms", string(room), "tags"), alice.AccessToken, nil).want(t, 200, "")
	jsonEqual(t, r.Raw, map[string]any{"tags": map[string]any{"m.favourite": map[string]any{"order": 0.25}, "u.work": map[string]any{}}})

	resp := syncOnce(t, alice, since, 0, "")
	got := roomTagsInSync(resp, string(room))
	if got == nil || len(got) != 2 || got["m.favourite"].(map[string]any)["order"] != 0.25 {
		t.Fatalf("m.tag in incremental sync = %v", got)
	}
	since = resp.NextBatch
	// Also in an initial sync.
	if got := roomTagsInSync(syncOnce(t, alice, "", 0, ""), string(room)); len(got) != 2 {
		t.Fatalf("m.tag in initial sync = %v", got)
	}

	// Changing an order replaces it; removing drops the tag.
	if err := alice.AddTag(ctxT(t), room, event.RoomTagFavourite, 0.5); err != nil {
		t.Fatal(err)
	}
	if err := alice.RemoveTag(ctxT(t), room, "u.work"); err != nil {
		t.Fatalf("RemoveTag: %v", err)
	}
	tags, err = alice.GetTags(ctxT(t), room)
	if err != nil || len(tags.Tags) != 1 || tags.Tags[event.RoomTagFavourite].Order != "0.5" {
		t.Fatalf("tags after update and removal = %+v, %v", tags, err)
	}
	resp = syncOnce(t, alice, since, 0, "")
	if got := roomTagsInSync(resp, string(room)); len(got) != 1 || got["m.favourite"] == nil {
		t.Fatalf("m.tag after removal in sync = %v", got)
	}
	// Removing a tag the room does not have is fine, and wakes no sync.
	if err := alice.RemoveTag(ctxT(t), room, "u.none"); err != nil {
		t.Fatalf("RemoveTag of an absent tag: %v", err)
	}
	if got := roomTagsInSync(syncOnce(t, alice, resp.NextBatch, 0, ""), string(room)); got != nil {
		t.Fatalf("no-op removal produced m.tag in sync: %v", got)
	}

	// Only the owner; bodies must be objects with a numeric order.
	tagURL := v3(s, "user", string(alice.UserID), "rooms", string(room), "tags", "u.x")
	do(t, "GET", v3(s, "user", string(alice.UserID), "rooms", string(room), "tags"), bob.AccessToken, nil).want(t, http.StatusForbidden, "M_FORBIDDEN")
	do(t, "PUT", tagURL, bob.AccessToken, map[string]any{}).want(t, http.StatusForbidden, "M_FORBIDDEN")
	do(t, "DELETE", tagURL, bob.AccessToken, nil).want(t, http.StatusForbidden, "M_FORBIDDEN")
	do(t, "PUT", tagURL, alice.AccessToken, map[string]any{"order": "first"}).want(t, http.StatusBadRequest, "M_BAD_JSON")
	do(t, "PUT", tagURL, alice.AccessToken, `[1]`).want(t, http.StatusBadRequest, "M_BAD_JSON")
	do(t, "PUT", tagURL, alice.AccessToken, `{`).want(t, http.StatusBadRequest, "M_NOT_JSON")
	do(t, "GET", v3(s, "user", string(alice.UserID), "rooms", "not-a-room", "tags"), alice.AccessToken, nil).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	// The generic account-data endpoint sees the same content.
	r = do(t, "GET", v3(s, "user", string(alice.UserID), "rooms", string(room), "account_data", "m.tag"), alice.AccessToken, nil).want(t, 200, "")
	jsonEqual(t, r.Raw, map[string]any{"tags": map[string]any{"m.favourite": map[string]any{"order": 0.5}}})
}
