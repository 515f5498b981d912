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

// TestRoomUpgradeCarriesUserState: an upgrade (by /upgrade or by hand:
// createRoom with a predecessor, then the tombstone) copies each local
// member's push rules for the room, its tags and its m.direct entry to the
// new room, and /sync reports the new push rules.
func TestRoomUpgradeCarriesUserState(t *testing.T) {
	s := start(t, nil)
	alice, alice2 := newUser(t, s, "alice"), newUser(t, s, "alice2")
	for _, manual := range []bool{false, true} {
		old := mkRoomRaw(t, s, alice.AccessToken, map[string]any{"preset": "public_chat", "room_version": "10"})
		join(t, alice2, old)
		for _, c := range []*mautrix.Client{alice, alice2} {
			do(t, "PUT", v3(s, "pushrules", "global", "room", string(old)), c.AccessToken, map[string]any{"actions": []string{"dont_notify"}}).want(t, 200, "")
		}
		do(t, "PUT", v3(s, "pushrules", "global", "override", "quiet-old"), alice.AccessToken, map[string]any{
			"actions":    []string{"dont_notify"},
			"conditions": []any{map[string]any{"kind": "event_match", "key": "room_id", "pattern": string(old)}},
		}).want(t, 200, "")
		do(t, "PUT", v3(s, "user", string(alice.UserID), "rooms", string(old), "tags", "u.work"), alice.AccessToken, map[string]any{"order": 0.5}).want(t, 200, "")
		do(t, "PUT", v3(s, "user", string(alice.UserID), "account_data", "m.direct"), alice.AccessToken,
			map[string]any{"@bob:hs.test": []string{string(old)}}).want(t, 200, "")
		since := do(t, "GET", v3(s, "sync")+"?timeout=0", alice.AccessToken, nil).want(t, 200, "").Body["next_batch"].(string)

		var newRoom id.RoomID
		if manual {
			newRoom = mkRoomRaw(t, s, alice.AccessToken, map[string]any{"preset": "public_chat", "room_version": "11",
				"creation_content": map[string]any{"predecessor": map[string]any{"room_id": string(old)}}})
			do(t, "PUT", roomURL(s, old, "state", "m.room.tombstone", ""), alice.AccessToken,
				map[string]any{"body": "replaced", "replacement_room": string(newRoom)}).want(t, 200, "")
		} else {
			r := do(t, "POST", roomURL(s, old, "upgrade"), alice.AccessToken, map[string]any{"new_version": "11"}).want(t, 200, "")
			newRoom = id.RoomID(r.Body["replacement_room"].(string))
		}

		for _, c := range []*mautrix.Client{alice, alice2} {
			for _, room := range []id.RoomID{old, newRoom} {
				r := do(t, "GET", v3(s, "pushrules", "global", "room", string(room)), c.AccessToken, nil).want(t, 200, "")
				if acts, _ := r.Body["actions"].([]any); len(acts) != 1 || acts[0] != "dont_notify" {
					t.Fatalf("manual=%v: %s's room rule for %s = %s", manual, c.UserID, room, r.Raw)
				}
			}
		}
		r := do(t, "GET", v3(s, "pushrules", "global", "override", string(newRoom)), alice.AccessToken, nil).want(t, 200, "")
		conds, _ := r.Body["conditions"].([]any)
		if len(conds) != 1 || conds[0].(map[string]any)["pattern"] != string(newRoom) {
			t.Fatalf("manual=%v: copied override rule = %s", manual, r.Raw)
		}
		tags := do(t, "GET", v3(s, "user", string(alice.UserID), "rooms", string(newRoom), "tags"), alice.AccessToken, nil).want(t, 200, "")
		if tt, _ := tags.Body["tags"].(map[string]any); tt["u.work"] == nil {
			t.Fatalf("manual=%v: new room tags = %s", manual, tags.Raw)
		}
		direct := do(t, "GET", v3(s, "user", string(alice.UserID), "account_data", "m.direct"), alice.AccessToken, nil).want(t, 200, "")
		if list, _ := direct.Body["@bob:hs.test"].([]any); len(list) != 2 || list[1] != string(newRoom) {
			t.Fatalf("manual=%v: m.direct = %s", manual, direct.Raw)
		}
		// An incremental sync from before the upgrade has the new rules.
		sr := do(t, "GET", v3(s, "sync")+"?timeout=0&since="+since, alice.AccessToken, nil).want(t, 200, "")
		var body struct {
			AccountData struct {
				Events []struct {
					Type    string `json:"type"`
					Content struct {
						Global struct {
							Room []struct {
								RuleID string `json:"rule_id"`
							} `json:"room"`
						} `json:"global"`
					} `json:"content"`
				} `json:"events"`
			} `json:"account_data"`
		}
		decodeInto(t, sr.Raw, &body)
		found := false
		for _, e := range body.AccountData.Events {
			for _, rule := range e.Content.Global.Room {
				found = found || (e.Type == "m.push_rules" && rule.RuleID == string(newRoom))
			}
		}
		if !found {
			t.Fatalf("manual=%v: /sync since the upgrade lacks the new room's push rule: %s", manual, sr.Raw)
		}
	}
}
