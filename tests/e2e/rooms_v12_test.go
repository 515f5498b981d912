package e2e

import (
	"maps"
	"net/http"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// TestRoomV12Creators: in v12 rooms (MSC4289/MSC4291) power levels naming a
// creator, malformed additional_creators and a new m.room.create are client
// errors (400); trusted_private_chat adds invitees to the requested
// additional creators.
func TestRoomV12Creators(t *testing.T) {
	s := start(t, nil)
	alice, bob, charlie := newUser(t, s, "alice"), newUser(t, s, "bob"), newUser(t, s, "charlie")
	a, b, c := string(alice.UserID), string(bob.UserID), string(charlie.UserID)
	tok := alice.AccessToken

	room := mkRoomRaw(t, s, tok, map[string]any{"room_version": "12", "preset": "public_chat",
		"creation_content": map[string]any{"additional_creators": []string{b}}})
	pl := stateContent(t, s, tok, room, "m.room.power_levels", "")
	if users, _ := pl["users"].(map[string]any); len(users) != 0 {
		t.Fatalf("v12 users = %v, want {}", users)
	}
	plURL := roomURL(s, room, "state", "m.room.power_levels", "")
	do(t, "PUT", plURL, tok, map[string]any{"users": map[string]any{a: 100}}).want(t, http.StatusBadRequest, "M_BAD_JSON")
	do(t, "PUT", plURL, tok, map[string]any{"users": map[string]any{b: 100}}).want(t, http.StatusBadRequest, "M_BAD_JSON")
	do(t, "PUT", plURL, tok, map[string]any{"users": map[string]any{c: 50}}).want(t, 200, "")

	for _, ver := range []string{"11", "12"} {
		r := mkRoomRaw(t, s, tok, map[string]any{"room_version": ver})
		do(t, "PUT", roomURL(s, r, "state", "m.room.create", ""), tok, map[string]any{"room_version": ver, "entropy": 100}).
			want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	}

	for _, bad := range []any{"not-an-array", []any{"@foo:example.com", 42}, []any{"@foo:example.com", "not-a-user-id"}, []any{"@invalid:dom$ain$.com"}} {
		do(t, "POST", v3(s, "createRoom"), tok, map[string]any{"room_version": "12", "creation_content": map[string]any{"additional_creators": bad}}).
			want(t, http.StatusBadRequest, "M_BAD_JSON")
	}
	mkRoomRaw(t, s, tok, map[string]any{"room_version": "12", "creation_content": map[string]any{"additional_creators": []string{"@foo:example.com", "@bar:baz.code"}}})

	dm := mkRoomRaw(t, s, tok, map[string]any{"room_version": "12", "preset": "trusted_private_chat", "is_direct": true,
		"invite": []string{b}, "creation_content": map[string]any{"additional_creators": []string{c}}})
	got, _ := stateContent(t, s, tok, dm, "m.room.create", "")["additional_creators"].([]any)
	if len(got) != 2 || !slices.Contains(got, any(b)) || !slices.Contains(got, any(c)) {
		t.Fatalf("additional_creators = %v, want bob and charlie", got)
	}
}

// TestRoomV12Upgrades mirrors Complement's MSC4289 upgrade cases: who may
// upgrade, the new room's additional_creators and which users stay in its
// power levels (creators are not listed from v12).
func TestRoomV12Upgrades(t *testing.T) {
	s := start(t, nil)
	alice, bob, charlie := newUser(t, s, "alice"), newUser(t, s, "bob"), newUser(t, s, "charlie")
	a, b, c := string(alice.UserID), string(bob.UserID), string(charlie.UserID)
	cases := []struct {
		name        string
		version     string
		users       map[string]any
		upgrader    *mautrix.Client
		additional  []string
		wantCreator []string
		wantUsers   map[string]float64
	}{
		{"non-creator admin, v11", "11", map[string]any{b: 100}, bob, nil, nil, map[string]float64{}},
		{"non-creator admin, v11, moderators", "11", map[string]any{b: 100, c: 100}, bob, nil, nil, map[string]float64{c: 100}},
		{"non-creator admin, v12, new creators", "12", map[string]any{b: 150}, bob, []string{c}, []string{c}, map[string]float64{}},
		{"non-creator admin, v12, creator was moderator", "12", map[string]any{b: 150, c: 50}, bob, []string{c}, []string{c}, map[string]float64{}},
		{"creator, v11, additional creators", "11", map[string]any{a: 100, b: 100}, alice, []string{b}, []string{b}, map[string]float64{}},
		{"creator, v11, additional creators and moderators", "11", map[string]any{a: 100, b: 100, c: 50}, alice, []string{b}, []string{b}, map[string]float64{c: 50}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			room := mkRoomRaw(t, s, alice.AccessToken, map[string]any{"room_version": tc.version, "preset": "public_chat"})
			join(t, bob, room)
			join(t, charlie, room)
			do(t, "PUT", roomURL(s, room, "state", "m.room.power_levels", ""), alice.AccessToken, map[string]any{"users": tc.users}).want(t, 200, "")
			body := map[string]any{"new_version": "12"}
			if tc.additional != nil {
				body["additional_creators"] = tc.additional
			}
			r := do(t, "POST", roomURL(s, room, "upgrade"), tc.upgrader.AccessToken, body).want(t, 200, "")
			newRoom := id.RoomID(r.Body["replacement_room"].(string))
			create := stateContent(t, s, tc.upgrader.AccessToken, newRoom, "m.room.create", "")
			if create["room_version"] != "12" {
				t.Fatalf("create = %v", create)
			}
			gotCreators, present := create["additional_creators"].([]any)
			if tc.wantCreator == nil && present || len(gotCreators) != len(tc.wantCreator) {
				t.Fatalf("additional_creators = %v, want %v", create["additional_creators"], tc.wantCreator)
			}
			users, _ := stateContent(t, s, tc.upgrader.AccessToken, newRoom, "m.room.power_levels", "")["users"].(map[string]any)
			gotUsers := map[string]float64{}
			for u, l := range users {
				gotUsers[u] = l.(float64)
			}
			if !maps.Equal(gotUsers, tc.wantUsers) {
				t.Fatalf("new users = %v, want %v", gotUsers, tc.wantUsers)
			}
		})
	}
	room := mkRoomRaw(t, s, alice.AccessToken, map[string]any{"room_version": "12"})
	do(t, "POST", roomURL(s, room, "upgrade"), alice.AccessToken, map[string]any{"new_version": "12", "additional_creators": []string{"@A B:x"}}).
		want(t, http.StatusBadRequest, "M_BAD_JSON")
	do(t, "POST", roomURL(s, room, "upgrade"), alice.AccessToken, map[string]any{"new_version": "12", "additional_creators": "nope"}).
		want(t, http.StatusBadRequest, "M_BAD_JSON")
}

// TestRoomInviteStateCreateEvent: the create event in an invite's stripped
// state carries its event ID, room ID and timestamp (MSC4311), so a v12
// room ID can be checked against it.
func TestRoomInviteStateCreateEvent(t *testing.T) {
	s := start(t, nil)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	for _, ver := range []string{"11", "12"} {
		room := mkRoomRaw(t, s, alice.AccessToken, map[string]any{"room_version": ver, "preset": "public_chat"})
		do(t, "POST", roomURL(s, room, "invite"), alice.AccessToken, map[string]any{"user_id": string(bob.UserID)}).want(t, 200, "")
		r := do(t, "GET", v3(s, "sync"), bob.AccessToken, nil).want(t, 200, "")
		var body struct {
			Rooms struct {
				Invite map[string]struct {
					InviteState struct {
						Events []map[string]any `json:"events"`
					} `json:"invite_state"`
				} `json:"invite"`
			} `json:"rooms"`
		}
		decodeInto(t, r.Raw, &body)
		var create map[string]any
		for _, e := range body.Rooms.Invite[string(room)].InviteState.Events {
			if e["type"] == "m.room.create" {
				create = e
			}
		}
		if create == nil || create["sender"] != string(alice.UserID) || create["room_id"] != string(room) {
			t.Fatalf("v%s invite_state create event = %v", ver, create)
		}
		if ts, _ := create["origin_server_ts"].(float64); ts <= 0 {
			t.Fatalf("v%s create event without origin_server_ts: %v", ver, create)
		}
		if ver == "12" && create["event_id"] != "$"+string(room)[1:] {
			t.Fatalf("v12 create event_id %v does not match room %s", create["event_id"], room)
		}
	}
}
