package roomserver

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"

	"matrixhs/roomserver/pushrules"
	"matrixhs/storage"
)

// TestUpgradedPowerLevels: string levels of old room versions become
// numbers and malformed ones are dropped; the upgrader gets enough power before v12, and from v12 no
// creator is listed.
func TestUpgradedPowerLevels(t *testing.T) {
	var old map[string]any
	json.Unmarshal([]byte(`{"ban":"60","users_default":0,"events":{"m.room.name":"50","m.room.power_levels":100},
		"users":{"@a:x":"100","@b:x":50,"@c:x":"oops"}}`), &old)
	fixupPowerLevels(old)
	if err := checkPowerLevels(&room{version: gomatrixserverlib.MustGetRoomVersion("10")}, mustJSON(map[string]any{"ban": old["ban"], "events": old["events"]})); err != nil {
		t.Fatalf("fixed-up levels still malformed: %v", err)
	}
	pl := upgradedPowerLevels(gomatrixserverlib.MustGetRoomVersion("11"), old, "@b:x", nil)
	users := pl["users"].(map[string]any)
	if users["@a:x"] != float64(100) || users["@b:x"] != int64(100) {
		t.Fatalf("v11 users = %v, want a kept at 100 and b raised to 100", users)
	}
	pl = upgradedPowerLevels(gomatrixserverlib.MustGetRoomVersion("12"), old, "@b:x", []string{"@a:x"})
	if users := pl["users"].(map[string]any); len(users) != 0 {
		t.Fatalf("v12 users = %v, want neither creator (and c's malformed level dropped)", users)
	}
}

// upgradeFixture is a v10 room worth upgrading: named, with a topic, a
// published alias, custom power levels, a joined member with room push
// rules, tags and m.direct, and a banned user.
type upgradeFixture struct {
	k     *localKit
	old   string
	alias string
}

func newUpgradeFixture(t *testing.T) *upgradeFixture {
	k := newLocalKit(t)
	f := &upgradeFixture{k: k, alias: "#up:a.test"}
	name, topic := "Up", "old topic"
	f.old = k.createRoom(CreateRoomRequest{Creator: alice, Preset: PresetPublicChat, Public: true, Name: &name, Topic: &topic, Alias: f.alias,
		PowerLevelOverride: mustJSON(map[string]any{"users": map[string]any{alice: 100, carol: 75}, "events_default": 10})})
	k.member(f.old, bob, bob, "join")
	k.member(f.old, alice, dave, "ban")
	rules := pushrules.UserRules{
		Room: []pushrules.Rule{{RuleID: f.old, Enabled: true, Actions: pushrules.Actions{"notify"}}},
		Override: []pushrules.Rule{{RuleID: "mine", Enabled: true, Actions: pushrules.Actions{"dont_notify"},
			Conditions: []pushrules.Condition{{Kind: "event_match", Key: "room_id", Pattern: f.old}}}},
	}
	raw, _ := json.Marshal(rules)
	err := k.db.Write(k.ctx, func(tx *storage.Tx) error {
		if _, err := tx.PutPushRules(k.ctx, bob, raw); err != nil {
			return err
		}
		if _, err := tx.PutAccountData(k.ctx, bob, f.old, "m.tag", []byte(`{"tags":{"u.work":{"order":0.5}}}`)); err != nil {
			return err
		}
		_, err := tx.PutAccountData(k.ctx, bob, "", "m.direct", mustJSON(map[string]any{alice: []string{f.old}}))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Who may upgrade: a joined member with the power to send a tombstone, to
// a stable version, naming valid additional creators.
func TestUpgradeRoomRefusals(t *testing.T) {
	f := newUpgradeFixture(t)
	k := f.k
	for _, c := range []struct {
		req  UpgradeRequest
		want string
	}{
		{UpgradeRequest{RoomID: f.old, UserID: bob, NewVersion: "11"}, "you may not upgrade this room"},
		{UpgradeRequest{RoomID: f.old, UserID: carol, NewVersion: "11"}, "you are not in the room"},
	} {
		_, err := k.rs.UpgradeRoom(k.ctx, c.req)
		wantForbidden(t, c.req.UserID+" upgrading", err, c.want, "")
	}
	if _, err := k.rs.UpgradeRoom(k.ctx, UpgradeRequest{RoomID: f.old, UserID: alice, NewVersion: "999"}); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("upgrading to an unknown version: %v", err)
	}
	var bad *BadRequestError
	if _, err := k.rs.UpgradeRoom(k.ctx, UpgradeRequest{RoomID: f.old, UserID: alice, NewVersion: "12", AdditionalCreators: []string{"nobody"}}); !errors.As(err, &bad) {
		t.Fatalf("upgrading with a malformed additional creator: %v", err)
	}
	if _, err := k.rs.UpgradeRoom(k.ctx, UpgradeRequest{RoomID: "!gone:a.test", UserID: alice, NewVersion: "11"}); !errors.Is(err, ErrRoomNotFound) {
		t.Fatalf("upgrading an unknown room: %v", err)
	}
}

// An upgrade makes a room with the old one's important state and bans,
// moves the aliases and the directory listing, stops ordinary users from
// talking in the old room, points it at the new one, and carries the
// members' push rules, tags and m.direct over.
func TestUpgradeRoom(t *testing.T) {
	f := newUpgradeFixture(t)
	k := f.k
	newID, err := k.rs.UpgradeRoom(k.ctx, UpgradeRequest{RoomID: f.old, UserID: alice, NewVersion: "11", DisplayName: "Alice"})
	if err != nil {
		t.Fatal(err)
	}
	newRoom, err := k.db.Room(k.ctx, newID)
	if err != nil || newRoom.Version != "11" || !newRoom.Published {
		t.Fatalf("new room %+v, %v; want v11 and published", newRoom, err)
	}
	if oldRoom, _ := k.db.Room(k.ctx, f.old); oldRoom.Published {
		t.Fatal("the old room is still published")
	}
	if id, err := k.db.AliasRoom(k.ctx, f.alias); err != nil || id != newID {
		t.Fatalf("alias resolves to %q, %v", id, err)
	}
	state := func(roomID, typ string) map[string]any {
		t.Helper()
		evs, err := k.db.CurrentStateEvents(k.ctx, k.roomNID(roomID), typ)
		if err != nil || len(evs) != 1 {
			t.Fatalf("%s %s: %d events, %v", roomID, typ, len(evs), err)
		}
		return k.content(evs[0].EventID)
	}
	if c := state(newID, "m.room.create"); c["predecessor"].(map[string]any)["room_id"] != f.old {
		t.Fatalf("new create content %v", c)
	}
	if state(newID, "m.room.name")["name"] != "Up" || state(newID, "m.room.join_rules")["join_rule"] != "public" {
		t.Fatal("name or join rules not carried over")
	}
	if m := k.membership(newID, dave); m != "ban" {
		t.Fatalf("dave in the new room: %q, want banned", m)
	}
	pl := state(newID, "m.room.power_levels")
	if users := pl["users"].(map[string]any); users[alice] != float64(100) || users[carol] != float64(75) || pl["events_default"] != float64(10) {
		t.Fatalf("new power levels %v: want the old ones", pl)
	}
	if c := state(f.old, "m.room.tombstone"); c["replacement_room"] != newID {
		t.Fatalf("tombstone %v", c)
	}
	if oldPL := state(f.old, "m.room.power_levels"); oldPL["events_default"] != float64(50) || oldPL["invite"] != float64(50) {
		t.Fatalf("old power levels %v: want events_default and invite raised to 50", oldPL)
	}
	if c := state(f.old, "m.room.canonical_alias"); len(c) != 0 {
		t.Fatalf("the old room still advertises %v", c)
	}
	if _, err := k.trySend(f.old, bob, "m.room.message", nil, map[string]any{"body": "still here?"}); err == nil {
		t.Fatal("an ordinary user could still talk in the old room")
	}

	// bob's own state for the room followed him.
	raw, err := k.db.PushRules(k.ctx, bob)
	if err != nil {
		t.Fatal(err)
	}
	var rules pushrules.UserRules
	json.Unmarshal(raw, &rules)
	if len(rules.Room) != 2 || rules.Room[0].RuleID != newID || len(rules.Override) != 2 || rules.Override[0].RuleID != newID ||
		rules.Override[0].Conditions[0].Pattern != newID || rules.Override[1].Conditions[0].Pattern != f.old {
		t.Fatalf("bob's push rules after the upgrade: %s", raw)
	}
	if tags, err := k.db.AccountData(k.ctx, bob, newID, "m.tag"); err != nil || !strings.Contains(string(tags), "u.work") {
		t.Fatalf("bob's tags in the new room: %s, %v", tags, err)
	}
	direct, err := k.db.AccountData(k.ctx, bob, "", "m.direct")
	var d map[string][]string
	json.Unmarshal(direct, &d)
	if err != nil || !slices.Equal(d[alice], []string{f.old, newID}) {
		t.Fatalf("bob's m.direct: %s, %v", direct, err)
	}
}

// From v12 the upgrader and the additional creators are creators: named in
// the create event, listed in no power levels.
func TestUpgradeRoomToV12(t *testing.T) {
	f := newUpgradeFixture(t)
	k := f.k
	newID, err := k.rs.UpgradeRoom(k.ctx, UpgradeRequest{RoomID: f.old, UserID: alice, NewVersion: "12", AdditionalCreators: []string{bob}})
	if err != nil {
		t.Fatal(err)
	}
	evs, _ := k.db.CurrentStateEvents(k.ctx, k.roomNID(newID), "m.room.create")
	c := k.content(evs[0].EventID)
	if creators, _ := c["additional_creators"].([]any); len(creators) != 1 || creators[0] != bob {
		t.Fatalf("v12 create content %v", c)
	}
	evs, _ = k.db.CurrentStateEvents(k.ctx, k.roomNID(newID), "m.room.power_levels")
	users := k.content(evs[0].EventID)["users"].(map[string]any)
	if _, ok := users[alice]; ok || users[bob] != nil {
		t.Fatalf("v12 power levels list a creator: %v", users)
	}
}

// A tombstone sent by hand carries the user state only to a room that
// names the old one as its predecessor.
func TestTombstoneCarriesUserStateToSuccessor(t *testing.T) {
	f := newUpgradeFixture(t)
	k := f.k
	stranger := k.createRoom(CreateRoomRequest{Creator: alice, Preset: PresetPublicChat})
	k.send(f.old, alice, "m.room.tombstone", ptrTo(""), map[string]any{"body": "moved", "replacement_room": stranger})
	if tags, err := k.db.AccountData(k.ctx, bob, stranger, "m.tag"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("tags carried to a room that is no successor: %s, %v", tags, err)
	}
	successor := k.createRoom(CreateRoomRequest{Creator: alice, Preset: PresetPublicChat,
		CreationContent: mustJSON(map[string]any{"predecessor": map[string]any{"room_id": f.old}})})
	k.send(f.old, alice, "m.room.tombstone", ptrTo(""), map[string]any{"body": "moved", "replacement_room": successor})
	if tags, err := k.db.AccountData(k.ctx, bob, successor, "m.tag"); err != nil || !strings.Contains(string(tags), "u.work") {
		t.Fatalf("tags in the successor: %s, %v", tags, err)
	}
}
