package e2e

import (
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// TestRoomUpgrade upgrades a v10 room to v12: tombstone in the old room,
// predecessor and copied state in the new one, bans carried over, old room
// restricted, aliases moved; a member without power cannot upgrade.
func TestRoomUpgrade(t *testing.T) {
	s := start(t, nil)
	alice, bob, eve := newUser(t, s, "alice"), newUser(t, s, "bob"), newUser(t, s, "eve")
	name := "Upgradable"
	old := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", RoomVersion: "10", Name: name, Topic: "topic", RoomAliasName: "up"})
	join(t, bob, old)
	join(t, eve, old)
	if _, err := alice.BanUser(ctxT(t), old, &mautrix.ReqBanUser{UserID: eve.UserID, Reason: "spam"}); err != nil {
		t.Fatal(err)
	}

	// Bob (power 0) may not upgrade.
	do(t, "POST", roomURL(s, old, "upgrade"), bob.AccessToken, map[string]any{"new_version": "12"}).want(t, 403, "M_FORBIDDEN")
	do(t, "POST", roomURL(s, old, "upgrade"), alice.AccessToken, map[string]any{"new_version": "99"}).want(t, 400, "M_UNSUPPORTED_ROOM_VERSION")
	do(t, "POST", roomURL(s, old, "upgrade"), alice.AccessToken, map[string]any{}).want(t, 400, "M_MISSING_PARAM")

	r := do(t, "POST", roomURL(s, old, "upgrade"), alice.AccessToken, map[string]any{"new_version": "12"}).want(t, 200, "")
	newRoom := id.RoomID(r.Body["replacement_room"].(string))
	if newRoom == "" || newRoom == old {
		t.Fatalf("replacement_room = %q", newRoom)
	}

	tomb := stateContent(t, s, alice.AccessToken, old, "m.room.tombstone", "")
	if tomb["replacement_room"] != string(newRoom) {
		t.Fatalf("tombstone = %v", tomb)
	}
	create := stateContent(t, s, alice.AccessToken, newRoom, "m.room.create", "")
	pred, _ := create["predecessor"].(map[string]any)
	if create["room_version"] != "12" || pred["room_id"] != string(old) {
		t.Fatalf("new create content = %v", create)
	}
	if got := stateContent(t, s, alice.AccessToken, newRoom, "m.room.name", "")["name"]; got != name {
		t.Fatalf("name not copied: %v", got)
	}
	if got := stateContent(t, s, alice.AccessToken, newRoom, "m.room.join_rules", "")["join_rule"]; got != "public" {
		t.Fatalf("join rule not copied: %v", got)
	}
	if m := membership(t, s, alice.AccessToken, newRoom, string(eve.UserID)); m != "ban" {
		t.Fatalf("ban not carried over: %q", m)
	}
	// Old room: ordinary users can no longer talk.
	if _, err := bob.SendText(ctxT(t), old, "still here?"); err == nil {
		t.Fatal("bob could still send in the old room")
	}
	pl := stateContent(t, s, alice.AccessToken, old, "m.room.power_levels", "")
	if num(t, pl["events_default"], "events_default") < 50 || num(t, pl["invite"], "invite") < 50 {
		t.Fatalf("old room power levels not restricted: %v", pl)
	}
	// The alias moved and the old room no longer advertises it.
	res, err := alice.ResolveAlias(ctxT(t), id.RoomAlias("#up:hs.test"))
	if err != nil || res.RoomID != newRoom {
		t.Fatalf("alias resolves to %v, %v; want %s", res, err, newRoom)
	}
	if ca := stateContent(t, s, alice.AccessToken, old, "m.room.canonical_alias", ""); ca["alias"] != nil {
		t.Fatalf("old canonical alias still set: %v", ca)
	}
	// Bob follows the tombstone.
	join(t, bob, newRoom)
	text(t, bob, newRoom, "hello in the new room")
}
