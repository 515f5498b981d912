package e2e

import (
	"net/url"
	"strings"
	"testing"

	"maunium.net/go/mautrix"

	"matrixhs/tests/testserver"
)

// The Synapse-compatible admin API, driven as synapse-admin and scripts do.

func adminURL(s *testserver.Server, path string) string { return s.URL() + "/_synapse/admin" + path }

func newAdmin(t *testing.T, s *testserver.Server, localpart string) *mautrix.Client {
	t.Helper()
	cli := newUser(t, s, localpart)
	if err := s.Accounts.SetAdmin(ctxT(t), string(cli.UserID), true); err != nil {
		t.Fatal(err)
	}
	return cli
}

func TestAdminUsers(t *testing.T) {
	s := start(t, nil)
	admin := newAdmin(t, s, "root")
	alice := newUser(t, s, "alice")
	tok := admin.AccessToken

	// Only admins.
	do(t, "GET", adminURL(s, "/v2/users"), alice.AccessToken, nil).want(t, 403, "M_FORBIDDEN")
	do(t, "GET", adminURL(s, "/v2/users"), "", nil).want(t, 401, "M_MISSING_TOKEN")
	if v := do(t, "GET", adminURL(s, "/v1/server_version"), tok, nil).want(t, 200, ""); v.Body["server_version"] == "" {
		t.Fatalf("server_version = %s", v.Raw)
	}

	// Create a user with a password: 201, and the user can log in.
	bobID := "@bob:hs.test"
	r := do(t, "PUT", adminURL(s, "/v2/users/"+url.PathEscape(bobID)), tok,
		map[string]any{"password": "bob-secret-pw", "displayname": "Bob B", "admin": false}).want(t, 201, "")
	if r.Body["name"] != bobID || r.Body["displayname"] != "Bob B" || r.Body["admin"] != false || r.Body["deactivated"] != false {
		t.Fatalf("created user = %s", r.Raw)
	}
	bob := login(t, s, "bob", "bob-secret-pw", "", "")
	// Modify: 200; a new password logs out the old sessions by default.
	do(t, "PUT", adminURL(s, "/v2/users/"+url.PathEscape(bobID)), tok, map[string]any{"password": "another-pw-1"}).want(t, 200, "")
	wantTokenDead(t, s, bob.AccessToken)
	login(t, s, "bob", "another-pw-1", "", "")
	// A refused request creates nothing.
	do(t, "PUT", adminURL(s, "/v2/users/"+url.PathEscape("@toolong:hs.test")), tok,
		map[string]any{"password": "pw-long-enough", "displayname": strings.Repeat("x", 300)}).want(t, 400, "M_BAD_JSON")
	do(t, "GET", adminURL(s, "/v2/users/"+url.PathEscape("@toolong:hs.test")), tok, nil).want(t, 404, "M_NOT_FOUND")
	// A user created without a password cannot log in with one.
	do(t, "PUT", adminURL(s, "/v2/users/"+url.PathEscape("@nopw:hs.test")), tok, map[string]any{}).want(t, 201, "")
	do(t, "POST", v3(s, "login"), "", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": "nopw"}, "password": ""}).want(t, 403, "M_FORBIDDEN")

	// List, filter, paginate.
	r = do(t, "GET", adminURL(s, "/v2/users?limit=2"), tok, nil).want(t, 200, "")
	if r.Body["total"] != float64(4) || len(r.Body["users"].([]any)) != 2 || r.Body["next_token"] != "2" {
		t.Fatalf("first page = %s", r.Raw)
	}
	r = do(t, "GET", adminURL(s, "/v2/users?from=2&limit=2"), tok, nil).want(t, 200, "")
	if len(r.Body["users"].([]any)) != 2 || r.Body["next_token"] != nil {
		t.Fatalf("second page = %s", r.Raw)
	}
	r = do(t, "GET", adminURL(s, "/v2/users?name=ali"), tok, nil).want(t, 200, "")
	if users := r.Body["users"].([]any); len(users) != 1 || users[0].(map[string]any)["name"] != string(alice.UserID) {
		t.Fatalf("name filter = %s", r.Raw)
	}
	do(t, "GET", adminURL(s, "/v2/users?limit=-1"), tok, nil).want(t, 400, "M_INVALID_PARAM")

	// Query one user; unknown and remote users.
	if r := do(t, "GET", adminURL(s, "/v2/users/"+url.PathEscape(bobID)), tok, nil).want(t, 200, ""); r.Body["displayname"] != "Bob B" {
		t.Fatalf("user = %s", r.Raw)
	}
	do(t, "GET", adminURL(s, "/v2/users/"+url.PathEscape("@ghost:hs.test")), tok, nil).want(t, 404, "M_NOT_FOUND")
	do(t, "GET", adminURL(s, "/v2/users/"+url.PathEscape("@x:elsewhere")), tok, nil).want(t, 400, "M_INVALID_PARAM")

	// Admin flag; one cannot demote oneself.
	do(t, "PUT", adminURL(s, "/v1/users/"+url.PathEscape(bobID)+"/admin"), tok, map[string]any{"admin": true}).want(t, 200, "")
	if r := do(t, "GET", adminURL(s, "/v1/users/"+url.PathEscape(bobID)+"/admin"), tok, nil).want(t, 200, ""); r.Body["admin"] != true {
		t.Fatalf("admin flag = %s", r.Raw)
	}
	do(t, "PUT", adminURL(s, "/v1/users/"+url.PathEscape(string(admin.UserID))+"/admin"), tok, map[string]any{"admin": false}).want(t, 400, "M_INVALID_PARAM")
	do(t, "PUT", adminURL(s, "/v1/users/"+url.PathEscape(bobID)+"/admin"), tok, map[string]any{}).want(t, 400, "M_MISSING_PARAM")

	// Reset password.
	do(t, "POST", adminURL(s, "/v1/reset_password/"+url.PathEscape(string(alice.UserID))), tok,
		map[string]any{"new_password": "reset-pw-123", "logout_devices": true}).want(t, 200, "")
	wantTokenDead(t, s, alice.AccessToken)
	alice = login(t, s, "alice", "reset-pw-123", "", "")

	// Devices and joined rooms.
	r = do(t, "GET", adminURL(s, "/v2/users/"+url.PathEscape(string(alice.UserID))+"/devices"), tok, nil).want(t, 200, "")
	devs := r.Body["devices"].([]any)
	if r.Body["total"] != float64(1) || devs[0].(map[string]any)["device_id"] != string(alice.DeviceID) {
		t.Fatalf("devices = %s", r.Raw)
	}
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	r = do(t, "GET", adminURL(s, "/v1/users/"+url.PathEscape(string(alice.UserID))+"/joined_rooms"), tok, nil).want(t, 200, "")
	if r.Body["total"] != float64(1) || r.Body["joined_rooms"].([]any)[0] != string(room) {
		t.Fatalf("joined_rooms = %s", r.Raw)
	}
	do(t, "POST", adminURL(s, "/v2/users/"+url.PathEscape(string(alice.UserID))+"/delete_devices"), tok, map[string]any{"devices": []string{}}).want(t, 200, "")
	wantTokenValid(t, s, alice.AccessToken, string(alice.UserID), string(alice.DeviceID))
	do(t, "POST", adminURL(s, "/v2/users/"+url.PathEscape(string(alice.UserID))+"/delete_devices"), tok, map[string]any{}).want(t, 400, "M_MISSING_PARAM")
	do(t, "DELETE", adminURL(s, "/v2/users/"+url.PathEscape(string(alice.UserID))+"/devices/"+string(alice.DeviceID)), tok, nil).want(t, 200, "")
	wantTokenDead(t, s, alice.AccessToken)
	alice = login(t, s, "alice", "reset-pw-123", "", "")

	// whois: admins see anyone, users only themselves.
	r = do(t, "GET", v3(s, "admin", "whois", string(alice.UserID)), tok, nil).want(t, 200, "")
	if r.Body["user_id"] != string(alice.UserID) || len(r.Body["devices"].(map[string]any)) != 1 {
		t.Fatalf("whois = %s", r.Raw)
	}
	do(t, "GET", v3(s, "admin", "whois", string(alice.UserID)), alice.AccessToken, nil).want(t, 200, "")
	do(t, "GET", v3(s, "admin", "whois", bobID), alice.AccessToken, nil).want(t, 403, "M_FORBIDDEN")
}

func TestAdminDeactivateLeavesRooms(t *testing.T) {
	s := start(t, nil)
	admin := newAdmin(t, s, "root")
	alice := newUser(t, s, "alice")
	room := mkRoom(t, admin, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Lobby"})
	join(t, alice, room)
	invited := mkRoom(t, admin, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	if _, err := admin.InviteUser(ctxT(t), invited, &mautrix.ReqInviteUser{UserID: alice.UserID}); err != nil {
		t.Fatal(err)
	}

	do(t, "POST", adminURL(s, "/v1/deactivate/"+url.PathEscape(string(alice.UserID))), admin.AccessToken, map[string]any{"erase": true}).want(t, 200, "")
	wantTokenDead(t, s, alice.AccessToken)
	members := membersOf(t, s, admin.AccessToken, room, nil)
	if members[string(alice.UserID)] != "leave" {
		t.Fatalf("deactivated user still in the room: %v", members)
	}
	if m := membersOf(t, s, admin.AccessToken, invited, nil); m[string(alice.UserID)] != "leave" {
		t.Fatalf("invite not withdrawn: %v", m)
	}
	r := do(t, "GET", adminURL(s, "/v2/users/"+url.PathEscape(string(alice.UserID))), admin.AccessToken, nil).want(t, 200, "")
	if r.Body["deactivated"] != true || r.Body["displayname"] != "" {
		t.Fatalf("deactivated user = %s", r.Raw)
	}
	do(t, "GET", adminURL(s, "/v2/users?deactivated=true"), admin.AccessToken, nil).want(t, 200, "")
	do(t, "POST", adminURL(s, "/v1/reset_password/"+url.PathEscape(string(alice.UserID))), admin.AccessToken,
		map[string]any{"new_password": "back-again-1"}).want(t, 400, "M_INVALID_PARAM")
	do(t, "PUT", adminURL(s, "/v2/users/"+url.PathEscape(string(alice.UserID))), admin.AccessToken,
		map[string]any{"deactivated": false}).want(t, 400, "M_INVALID_PARAM")

	// Rooms.
	r = do(t, "GET", adminURL(s, "/v1/rooms"), admin.AccessToken, nil).want(t, 200, "")
	if r.Body["total_rooms"] != float64(2) {
		t.Fatalf("rooms = %s", r.Raw)
	}
	r = do(t, "GET", adminURL(s, "/v1/rooms?search_term=lob"), admin.AccessToken, nil).want(t, 200, "")
	rooms := r.Body["rooms"].([]any)
	if len(rooms) != 1 || rooms[0].(map[string]any)["name"] != "Lobby" || rooms[0].(map[string]any)["creator"] != string(admin.UserID) ||
		rooms[0].(map[string]any)["joined_members"] != float64(1) || rooms[0].(map[string]any)["public"] != false {
		t.Fatalf("room search = %s", r.Raw)
	}
	r = do(t, "GET", adminURL(s, "/v1/rooms/"+url.PathEscape(string(room))), admin.AccessToken, nil).want(t, 200, "")
	if r.Body["join_rules"] != "public" || r.Body["version"] != "11" {
		t.Fatalf("room details = %s", r.Raw)
	}
	r = do(t, "GET", adminURL(s, "/v1/rooms/"+url.PathEscape(string(room))+"/members"), admin.AccessToken, nil).want(t, 200, "")
	if r.Body["total"] != float64(1) || r.Body["members"].([]any)[0] != string(admin.UserID) {
		t.Fatalf("members = %s", r.Raw)
	}
	do(t, "GET", adminURL(s, "/v1/rooms/"+url.PathEscape("!nope:hs.test")), admin.AccessToken, nil).want(t, 404, "M_NOT_FOUND")
}

func TestAdminRegistrationTokens(t *testing.T) {
	s := start(t, map[string]string{"MATRIX_REGISTRATION": "token"})
	admin := newAdmin(t, s, "root")
	tok := admin.AccessToken
	base := adminURL(s, "/v1/registration_tokens")

	r := do(t, "POST", base+"/new", tok, map[string]any{"uses_allowed": 1}).want(t, 200, "")
	auto, _ := r.Body["token"].(string)
	if len(auto) != 16 || r.Body["uses_allowed"] != float64(1) || r.Body["completed"] != float64(0) || r.Body["expiry_time"] != nil {
		t.Fatalf("new token = %s", r.Raw)
	}
	do(t, "POST", base+"/new", tok, map[string]any{"token": "party-2026"}).want(t, 200, "")
	do(t, "POST", base+"/new", tok, map[string]any{"token": "party-2026"}).want(t, 400, "M_INVALID_PARAM")
	do(t, "POST", base+"/new", tok, map[string]any{"token": "no spaces"}).want(t, 400, "M_INVALID_PARAM")
	do(t, "POST", base+"/new", tok, map[string]any{"expiry_time": 1}).want(t, 400, "M_INVALID_PARAM")
	do(t, "POST", base+"/new", tok, map[string]any{"uses_allowed": -2}).want(t, 400, "M_INVALID_PARAM")

	// The one-use token signs one user up, then is no longer valid.
	reg := func(user, token string) *resp {
		first := do(t, "POST", v3(s, "register"), "", map[string]any{"username": user, "password": "pw-" + user})
		session, _ := first.Body["session"].(string)
		return do(t, "POST", v3(s, "register"), "", map[string]any{"username": user, "password": "pw-" + user,
			"auth": map[string]any{"type": "m.login.registration_token", "token": token, "session": session}})
	}
	reg("carol", auto).want(t, 200, "")
	if r := do(t, "GET", base+"/"+auto, tok, nil).want(t, 200, ""); r.Body["completed"] != float64(1) {
		t.Fatalf("used token = %s", r.Raw)
	}
	if r := do(t, "GET", base+"?valid=false", tok, nil).want(t, 200, ""); len(r.Body["registration_tokens"].([]any)) != 1 {
		t.Fatalf("invalid tokens = %s", r.Raw)
	}
	if r := do(t, "GET", base+"?valid=true", tok, nil).want(t, 200, ""); len(r.Body["registration_tokens"].([]any)) != 1 {
		t.Fatalf("valid tokens = %s", r.Raw)
	}
	// Lifting the limit (null) makes it usable again.
	if r := do(t, "PUT", base+"/"+auto, tok, map[string]any{"uses_allowed": nil}).want(t, 200, ""); r.Body["uses_allowed"] != nil {
		t.Fatalf("updated token = %s", r.Raw)
	}
	reg("dave", auto).want(t, 200, "")
	do(t, "DELETE", base+"/"+auto, tok, nil).want(t, 200, "")
	do(t, "GET", base+"/"+auto, tok, nil).want(t, 404, "M_NOT_FOUND")
	do(t, "DELETE", base+"/"+auto, tok, nil).want(t, 404, "M_NOT_FOUND")
	do(t, "PUT", base+"/"+auto, tok, map[string]any{}).want(t, 404, "M_NOT_FOUND")
}

func TestAdminMedia(t *testing.T) {
	s := start(t, nil)
	admin := newAdmin(t, s, "root")
	alice := newUser(t, s, "alice")
	var ids []string
	for _, body := range []string{"first file", "second file"} {
		r := upload(t, s, alice.AccessToken, "?filename=a.txt", "text/plain", strings.NewReader(body), int64(len(body))).want(t, 200, "")
		uri, _ := r.Body["content_uri"].(string)
		ids = append(ids, uri[strings.LastIndex(uri, "/")+1:])
	}
	list := adminURL(s, "/v1/users/"+url.PathEscape(string(alice.UserID))+"/media")
	do(t, "GET", list, alice.AccessToken, nil).want(t, 403, "M_FORBIDDEN")
	r := do(t, "GET", list+"?limit=1", admin.AccessToken, nil).want(t, 200, "")
	media := r.Body["media"].([]any)
	if r.Body["total"] != float64(2) || len(media) != 1 || r.Body["next_token"] != float64(1) ||
		media[0].(map[string]any)["media_type"] != "text/plain" || media[0].(map[string]any)["media_length"] == float64(0) {
		t.Fatalf("user media = %s", r.Raw)
	}

	do(t, "GET", list+"?from=x", admin.AccessToken, nil).want(t, 400, "M_INVALID_PARAM")

	del := adminURL(s, "/v1/media/hs.test/"+ids[0])
	do(t, "DELETE", del, alice.AccessToken, nil).want(t, 403, "M_FORBIDDEN")
	if r := do(t, "DELETE", del, admin.AccessToken, nil).want(t, 200, ""); r.Body["total"] != float64(1) {
		t.Fatalf("delete = %s", r.Raw)
	}
	do(t, "GET", s.URL()+"/_matrix/client/v1/media/download/hs.test/"+ids[0], alice.AccessToken, nil).want(t, 404, "M_NOT_FOUND")
	do(t, "GET", s.URL()+"/_matrix/client/v1/media/download/hs.test/"+ids[1], alice.AccessToken, nil).want(t, 200, "")
	do(t, "DELETE", del, admin.AccessToken, nil).want(t, 404, "M_NOT_FOUND")
	do(t, "DELETE", adminURL(s, "/v1/media/other.example/x"), admin.AccessToken, nil).want(t, 400, "M_INVALID_PARAM")
	do(t, "GET", adminURL(s, "/v1/users/"+url.PathEscape("@ghost:hs.test")+"/media"), admin.AccessToken, nil).want(t, 404, "M_NOT_FOUND")
}

func TestAdminShutdownAndBlockRoom(t *testing.T) {
	s := start(t, nil)
	admin := newAdmin(t, s, "root")
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	room := mkRoomRaw(t, s, alice.AccessToken, map[string]any{"preset": "public_chat", "room_alias_name": "bad", "visibility": "public"})
	join(t, bob, room)
	carol := newUser(t, s, "carol")
	if _, err := alice.InviteUser(ctxT(t), room, &mautrix.ReqInviteUser{UserID: carol.UserID}); err != nil {
		t.Fatal(err)
	}
	shut := adminURL(s, "/v1/rooms/"+url.PathEscape(string(room)))
	do(t, "DELETE", shut, alice.AccessToken, map[string]any{"block": true, "purge": false}).want(t, 403, "M_FORBIDDEN")
	r := do(t, "DELETE", shut, admin.AccessToken, map[string]any{"block": true, "purge": false}).want(t, 200, "")
	if len(r.Body["kicked_users"].([]any)) != 3 || len(r.Body["failed_to_kick_users"].([]any)) != 0 ||
		r.Body["local_aliases"].([]any)[0] != "#bad:hs.test" {
		t.Fatalf("shutdown = %s", r.Raw)
	}
	if r := do(t, "GET", shut+"/members", admin.AccessToken, nil).want(t, 200, ""); r.Body["total"] != float64(0) {
		t.Fatalf("members after the shutdown = %s", r.Raw)
	}
	for _, c := range []*mautrix.Client{alice, bob} {
		if m := stateContent(t, s, c.AccessToken, room, "m.room.member", string(c.UserID)); m["membership"] != "leave" {
			t.Fatalf("%s is %v after the shutdown", c.UserID, m)
		}
	}
	do(t, "GET", v3(s, "directory", "room", "#bad:hs.test"), "", nil).want(t, 404, "M_NOT_FOUND")
	do(t, "POST", v3(s, "join", string(room)), bob.AccessToken, map[string]any{}).want(t, 403, "M_FORBIDDEN")
	if r := do(t, "GET", shut+"/block", admin.AccessToken, nil).want(t, 200, ""); r.Body["block"] != true || r.Body["user_id"] != string(admin.UserID) {
		t.Fatalf("block status = %s", r.Raw)
	}
	do(t, "PUT", shut+"/block", admin.AccessToken, map[string]any{}).want(t, 400, "M_MISSING_PARAM")
	do(t, "GET", adminURL(s, "/v1/rooms/not-a-room/block"), admin.AccessToken, nil).want(t, 400, "M_INVALID_PARAM")
	do(t, "PUT", shut+"/block", admin.AccessToken, map[string]any{"block": false}).want(t, 200, "")
	do(t, "POST", v3(s, "join", string(room)), bob.AccessToken, map[string]any{}).want(t, 200, "")
	do(t, "DELETE", adminURL(s, "/v1/rooms/"+url.PathEscape("!nope:hs.test")), admin.AccessToken, map[string]any{"purge": false}).want(t, 404, "M_NOT_FOUND")
}
