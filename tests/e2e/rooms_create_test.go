package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"matrixhs/tests/testserver"
)

// TestRoomCreatePresets: each preset sets the join rule, history visibility
// and guest access of the spec's table; without a preset, visibility picks it.
func TestRoomCreatePresets(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	tok := alice.AccessToken
	cases := []struct {
		name       string
		req        *mautrix.ReqCreateRoom
		joinRule   string
		guestCanJn bool
		invitePL   float64 // Synapse: moderators invite in public rooms, anyone in private ones
	}{
		{"private_chat", &mautrix.ReqCreateRoom{Preset: "private_chat"}, "invite", true, 0},
		{"trusted_private_chat", &mautrix.ReqCreateRoom{Preset: "trusted_private_chat"}, "invite", true, 0},
		{"public_chat", &mautrix.ReqCreateRoom{Preset: "public_chat"}, "public", false, 50},
		{"visibility_public", &mautrix.ReqCreateRoom{Visibility: "public"}, "public", false, 50},
		{"visibility_private", &mautrix.ReqCreateRoom{Visibility: "private"}, "invite", true, 0},
		{"no_preset", &mautrix.ReqCreateRoom{}, "invite", true, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			roomID := mkRoom(t, alice, tc.req)
			if jr := stateContent(t, s, tok, roomID, "m.room.join_rules", "")["join_rule"]; jr != tc.joinRule {
				t.Fatalf("join_rule = %v, want %s", jr, tc.joinRule)
			}
			if inv := stateContent(t, s, tok, roomID, "m.room.power_levels", "")["invite"]; inv != tc.invitePL {
				t.Fatalf("invite power level = %v, want %v", inv, tc.invitePL)
			}
			if hv := stateContent(t, s, tok, roomID, "m.room.history_visibility", "")["history_visibility"]; hv != "shared" {
				t.Fatalf("history_visibility = %v, want shared", hv)
			}
			r := do(t, "GET", roomURL(s, roomID, "state", "m.room.guest_access", ""), tok, nil)
			if tc.guestCanJn {
				r.want(t, 200, "")
				if r.Body["guest_access"] != "can_join" {
					t.Fatalf("guest_access = %s, want can_join", r.Raw)
				}
			} else if !(r.Status == 404 && r.errcode() == "M_NOT_FOUND") && !(r.Status == 200 && r.Body["guest_access"] == "forbidden") {
				t.Fatalf("public room guest_access: %d %s, want absent or forbidden", r.Status, r.Raw)
			}
			if m := membership(t, s, tok, roomID, string(alice.UserID)); m != "join" {
				t.Fatalf("creator membership = %q", m)
			}
			if rooms := joinedRooms(t, alice); !slices.Contains(rooms, roomID) {
				t.Fatalf("joined_rooms %v lacks %s", rooms, roomID)
			}
		})
	}
}

// TestRoomCreateOptions: name, topic, invite, is_direct, initial_state,
// creation_content and room_alias_name all land in the room's state.
func TestRoomCreateOptions(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	tok := alice.AccessToken
	roomID := mkRoomRaw(t, s, tok, map[string]any{
		"preset":          "private_chat",
		"name":            "Room Name",
		"topic":           "Room Topic",
		"invite":          []string{string(bob.UserID)},
		"is_direct":       true,
		"room_alias_name": "opts",
		"initial_state": []any{
			map[string]any{"type": "m.room.encryption", "state_key": "", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}},
			map[string]any{"type": "org.example.custom", "content": map[string]any{"k": "no state_key means empty"}},
		},
		"creation_content": map[string]any{"m.federate": false, "org.example.extra": "kept"},
	})

	create := stateContent(t, s, tok, roomID, "m.room.create", "")
	if create["m.federate"] != false || create["org.example.extra"] != "kept" {
		t.Fatalf("creation_content not merged into m.room.create: %v", create)
	}
	if create["room_version"] != s.Config.Rooms.DefaultRoomVersion {
		t.Fatalf("room_version = %v, want the configured default %q", create["room_version"], s.Config.Rooms.DefaultRoomVersion)
	}
	if n := stateContent(t, s, tok, roomID, "m.room.name", "")["name"]; n != "Room Name" {
		t.Fatalf("name = %v", n)
	}
	if tp := stateContent(t, s, tok, roomID, "m.room.topic", "")["topic"]; tp != "Room Topic" {
		t.Fatalf("topic = %v", tp)
	}
	if alg := stateContent(t, s, tok, roomID, "m.room.encryption", "")["algorithm"]; alg != "m.megolm.v1.aes-sha2" {
		t.Fatalf("encryption algorithm = %v", alg)
	}
	if k := stateContent(t, s, tok, roomID, "org.example.custom", "")["k"]; k != "no state_key means empty" {
		t.Fatalf("initial_state without state_key: %v", k)
	}
	if a := stateContent(t, s, tok, roomID, "m.room.canonical_alias", "")["alias"]; a != "#opts:hs.test" {
		t.Fatalf("canonical alias = %v, want #opts:hs.test", a)
	}

	// The invite: bob's member event, sent by alice, with is_direct.
	st := fullState(t, s, tok, roomID)
	inv := stateEvent(t, st, "m.room.member", string(bob.UserID))
	if inv.Content["membership"] != "invite" || inv.Content["is_direct"] != true || inv.Sender != string(alice.UserID) {
		t.Fatalf("invite event = %+v, want membership invite, is_direct true, sender alice", inv)
	}
	if slices.Contains(joinedRooms(t, bob), roomID) {
		t.Fatal("invitee is listed as joined before joining")
	}
	// The invited user joins through the new alias.
	res, err := bob.JoinRoom(ctxT(t), "#opts:hs.test", nil)
	if err != nil {
		t.Fatalf("joining by alias: %v", err)
	}
	if res.RoomID != roomID {
		t.Fatalf("join by alias returned %s, want %s", res.RoomID, roomID)
	}
	if m := membership(t, s, bob.AccessToken, roomID, string(bob.UserID)); m != "join" {
		t.Fatalf("bob membership after join = %q", m)
	}

	// The alias is taken now.
	do(t, "POST", v3(s, "createRoom"), tok, map[string]any{"room_alias_name": "opts"}).
		want(t, http.StatusBadRequest, "M_ROOM_IN_USE")
}

// TestRoomCreateEventOrder: the first events of a room are in the order the
// spec prescribes for createRoom, both paging backwards and forwards.
func TestRoomCreateEventOrder(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	a, b := string(alice.UserID), string(bob.UserID)
	roomID := mkRoomRaw(t, s, alice.AccessToken, map[string]any{
		"preset":          "private_chat",
		"room_alias_name": "order",
		"initial_state": []any{
			map[string]any{"type": "m.room.encryption", "state_key": "", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}},
		},
		"name":   "N",
		"topic":  "T",
		"invite": []string{b},
	})
	want := []string{
		"m.room.create|",
		"m.room.member|" + a,
		"m.room.power_levels|",
		"m.room.canonical_alias|",
		"m.room.join_rules|",
		"m.room.history_visibility|",
		"m.room.guest_access|",
		"m.room.encryption|",
		"m.room.name|",
		"m.room.topic|",
		"m.room.member|" + b,
	}
	keys := func(evs []rev) []string {
		out := []string{}
		for _, e := range evs {
			out = append(out, e.key())
		}
		return out
	}
	back := pageAll(t, s, alice.AccessToken, roomID, "b", 4)
	wantNoDuplicates(t, back)
	if got := keys(reversed(back)); !slices.Equal(got, want) {
		t.Fatalf("events (dir=b, reversed) =\n %v\nwant\n %v", got, want)
	}
	fwd := pageAll(t, s, alice.AccessToken, roomID, "f", 3)
	if got := eventIDs(fwd); !slices.Equal(got, eventIDs(reversed(back))) {
		t.Fatalf("dir=f order %v differs from reversed dir=b order %v", got, eventIDs(reversed(back)))
	}
	for _, e := range fwd {
		if e.RoomID != string(roomID) || e.Sender != a || e.OriginServerTS <= 0 || !strings.HasPrefix(e.EventID, "$") {
			t.Fatalf("malformed client event %+v", e)
		}
	}
	if fwd[1].Content["membership"] != "join" {
		t.Fatalf("second event is not the creator's join: %+v", fwd[1])
	}
}

// TestRoomCreateVersions: room versions 10, 11 and 12 (room ID format, create
// event, creator power), the default version, and an unsupported one.
func TestRoomCreateVersions(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	tok := alice.AccessToken
	a := string(alice.UserID)
	for _, ver := range []string{"10", "11", "12"} {
		t.Run("v"+ver, func(t *testing.T) {
			roomID := mkRoom(t, alice, &mautrix.ReqCreateRoom{RoomVersion: id.RoomVersion(ver), Preset: "public_chat"})
			st := fullState(t, s, tok, roomID)
			create := stateEvent(t, st, "m.room.create", "")
			if create.Content["room_version"] != ver {
				t.Fatalf("create room_version = %v, want %s", create.Content["room_version"], ver)
			}
			if create.Sender != a {
				t.Fatalf("create sender = %s", create.Sender)
			}
			pl := stateEvent(t, st, "m.room.power_levels", "").Content
			users, _ := pl["users"].(map[string]any)
			if ver == "12" {
				if strings.Contains(string(roomID), ":") {
					t.Fatalf("v12 room ID %s has a server part", roomID)
				}
				if create.EventID != "$"+string(roomID)[1:] {
					t.Fatalf("v12 create event ID %s, want $%s", create.EventID, string(roomID)[1:])
				}
				if _, ok := users[a]; ok {
					t.Fatalf("v12 power levels list the creator: %v", users)
				}
				events, _ := pl["events"].(map[string]any)
				stateDefault := int64(50)
				if v, ok := pl["state_default"]; ok {
					stateDefault = num(t, v, "state_default")
				}
				if events["m.room.tombstone"] == nil || num(t, events["m.room.tombstone"], "tombstone PL") != 150 || stateDefault >= 150 {
					t.Fatalf("v12 tombstone power %v, want 150 (state_default %d)", events["m.room.tombstone"], stateDefault)
				}
			} else {
				if !strings.HasSuffix(string(roomID), ":hs.test") {
					t.Fatalf("v%s room ID %s lacks :hs.test", ver, roomID)
				}
				if users[a] == nil || num(t, users[a], "creator PL") != 100 {
					t.Fatalf("v%s creator power = %v, want 100", ver, users[a])
				}
			}
			if ver == "10" && create.Content["creator"] != a {
				t.Fatalf("v10 create content creator = %v", create.Content["creator"])
			}
			// The room works: a message round-trips.
			evID := text(t, alice, roomID, "hello v"+ver)
			if e := eventOK(t, s, tok, roomID, evID); e.body() != "hello v"+ver || e.RoomID != string(roomID) {
				t.Fatalf("event = %+v", e)
			}
		})
	}

	// Omitted version: the configured default, 11 unless configured (MSC4304:
	// clients in the wild mishandle v12 creators).
	roomID := mkRoom(t, alice, &mautrix.ReqCreateRoom{})
	if v := stateContent(t, s, tok, roomID, "m.room.create", "")["room_version"]; v != "11" {
		t.Fatalf("default room version = %v, want 11", v)
	}
	// default_room_version picks another default.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "homeserver.yaml"), []byte("rooms: {default_room_version: \"12\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s12 := testserver.StartIn(t, dir, nil)
	carol := newUser(t, s12, "carol")
	if v := stateContent(t, s12, carol.AccessToken, mkRoom(t, carol, &mautrix.ReqCreateRoom{}), "m.room.create", "")["room_version"]; v != "12" {
		t.Fatalf("room version with default_room_version 12 = %v", v)
	}
	do(t, "POST", v3(s, "createRoom"), tok, map[string]any{"room_version": "999"}).
		want(t, http.StatusBadRequest, "M_UNSUPPORTED_ROOM_VERSION")
	do(t, "POST", v3(s, "createRoom"), tok, map[string]any{"room_version": "org.example.unknown"}).
		want(t, http.StatusBadRequest, "M_UNSUPPORTED_ROOM_VERSION")
	// r0 spot-check.
	r := do(t, "POST", cs(s, "r0", "createRoom"), tok, map[string]any{"room_version": "11"}).want(t, 200, "")
	if rid, _ := r.Body["room_id"].(string); !strings.HasPrefix(rid, "!") || !strings.HasSuffix(rid, ":hs.test") {
		t.Fatalf("r0 createRoom room_id = %s", r.Raw)
	}
}

// TestRoomCreateTrustedPrivateChat: invitees get the creator's power (v11:
// PL 100; v12: additional_creators).
func TestRoomCreateTrustedPrivateChat(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	b := string(bob.UserID)
	r11 := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "trusted_private_chat", RoomVersion: "11", Invite: []id.UserID{bob.UserID}})
	users, _ := stateContent(t, s, alice.AccessToken, r11, "m.room.power_levels", "")["users"].(map[string]any)
	if users[b] == nil || num(t, users[b], "invitee PL") != 100 || num(t, users[string(alice.UserID)], "creator PL") != 100 {
		t.Fatalf("v11 trusted_private_chat users = %v, want alice and bob at 100", users)
	}
	r12 := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "trusted_private_chat", RoomVersion: "12", Invite: []id.UserID{bob.UserID}})
	create := stateContent(t, s, alice.AccessToken, r12, "m.room.create", "")
	ac, _ := create["additional_creators"].([]any)
	if !slices.Contains(ac, any(b)) {
		t.Fatalf("v12 trusted_private_chat additional_creators = %v, want bob", create["additional_creators"])
	}
	// Bob, once joined, has creator power: he may change power levels.
	join(t, bob, r12)
	do(t, "PUT", roomURL(s, r12, "state", "m.room.name", ""), bob.AccessToken, map[string]any{"name": "by bob"}).want(t, 200, "")
}

// TestRoomCreatePowerLevelOverride: power_level_content_override is applied
// on top of the default and enforced afterwards.
func TestRoomCreatePowerLevelOverride(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	b := string(bob.UserID)
	roomID := mkRoomRaw(t, s, alice.AccessToken, map[string]any{
		"preset": "private_chat",
		"invite": []string{b},
		"power_level_content_override": map[string]any{
			"state_default": 60,
			"users":         map[string]any{b: 50, string(alice.UserID): 100},
			"events":        map[string]any{"m.room.name": 10, "org.example.locked": 100},
		},
	})
	pl := stateContent(t, s, alice.AccessToken, roomID, "m.room.power_levels", "")
	users, _ := pl["users"].(map[string]any)
	events, _ := pl["events"].(map[string]any)
	if num(t, pl["state_default"], "state_default") != 60 || num(t, users[b], "bob PL") != 50 ||
		num(t, events["m.room.name"], "name PL") != 10 || num(t, events["org.example.locked"], "custom PL") != 100 {
		t.Fatalf("power levels = %v, want the override applied", pl)
	}
	join(t, bob, roomID)
	do(t, "PUT", roomURL(s, roomID, "state", "m.room.name", ""), bob.AccessToken, map[string]any{"name": "bob's"}).want(t, 200, "")
	do(t, "PUT", roomURL(s, roomID, "state", "m.room.topic", ""), bob.AccessToken, map[string]any{"topic": "no"}).
		want(t, http.StatusForbidden, "M_FORBIDDEN")
	do(t, "PUT", roomURL(s, roomID, "send", "org.example.locked", "t1"), bob.AccessToken, map[string]any{}).
		want(t, http.StatusForbidden, "M_FORBIDDEN")
	if n := stateContent(t, s, bob.AccessToken, roomID, "m.room.name", "")["name"]; n != "bob's" {
		t.Fatalf("name = %v", n)
	}
	// Before v12, users must keep the creator (Synapse); from v12 creators
	// must not be listed at all.
	override := map[string]any{"users": map[string]any{b: 100}}
	do(t, "POST", v3(s, "createRoom"), alice.AccessToken, map[string]any{"room_version": "11", "power_level_content_override": override}).
		want(t, http.StatusBadRequest, "M_INVALID_ROOM_STATE")
	v12 := mkRoomRaw(t, s, alice.AccessToken, map[string]any{"room_version": "12", "power_level_content_override": override})
	if u, _ := stateContent(t, s, alice.AccessToken, v12, "m.room.power_levels", "")["users"].(map[string]any); len(u) != 1 || num(t, u[b], "bob") != 100 {
		t.Fatalf("v12 users = %v, want only bob", u)
	}
	override["users"] = map[string]any{b: 100, string(alice.UserID): 100}
	do(t, "POST", v3(s, "createRoom"), alice.AccessToken, map[string]any{"room_version": "12", "power_level_content_override": override}).
		want(t, http.StatusBadRequest, "M_BAD_JSON")
}

// TestRoomCreateRichTopic: createRoom's topic also writes the MSC3765 rich
// topic block; a topic from initial_state alone is stored as given, and the
// topic parameter wins over one in initial_state.
func TestRoomCreateRichTopic(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	tok := alice.AccessToken
	wantRich := func(roomID id.RoomID, topic string) {
		t.Helper()
		c := stateContent(t, s, tok, roomID, "m.room.topic", "")
		jsonEqual(t, mustMarshal(t, c), map[string]any{
			"topic":   topic,
			"m.topic": map[string]any{"m.text": []any{map[string]any{"mimetype": "text/plain", "body": topic}}},
		})
	}
	wantRich(mkRoomRaw(t, s, tok, map[string]any{"topic": "Test Room", "preset": "public_chat"}), "Test Room")
	initial := []map[string]any{{"type": "m.room.topic", "state_key": "", "content": map[string]any{"topic": "Shenanigans"}}}
	wantRich(mkRoomRaw(t, s, tok, map[string]any{"topic": "Test Room", "initial_state": initial}), "Test Room")
	plain := mkRoomRaw(t, s, tok, map[string]any{"initial_state": initial})
	jsonEqual(t, mustMarshal(t, stateContent(t, s, tok, plain, "m.room.topic", "")), map[string]any{"topic": "Shenanigans"})
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
