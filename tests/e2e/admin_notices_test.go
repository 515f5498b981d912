package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"matrixhs/tests/testserver"
)

// noticesInvite waits (by long-polling /sync) until the user is invited to
// a room by the notices user, and returns the room.
func noticesInvite(t *testing.T, s *testserver.Server, token, noticesUser string) id.RoomID {
	t.Helper()
	since := ""
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		u := v3(s, "sync") + "?timeout=1000"
		if since != "" {
			u += "&since=" + since
		}
		r := do(t, "GET", u, token, nil).want(t, 200, "")
		var body struct {
			NextBatch string `json:"next_batch"`
			Rooms     struct {
				Invite map[string]struct {
					InviteState struct {
						Events []struct {
							Sender string `json:"sender"`
						} `json:"events"`
					} `json:"invite_state"`
				} `json:"invite"`
			} `json:"rooms"`
		}
		decodeInto(t, r.Raw, &body)
		for roomID, inv := range body.Rooms.Invite {
			if evs := inv.InviteState.Events; len(evs) > 0 && evs[0].Sender == noticesUser {
				return id.RoomID(roomID)
			}
		}
		since = body.NextBatch
	}
	t.Fatal("no invite from the server notices user")
	return ""
}

// TestServerNotices mirrors Complement's TestServerNotices: only admins may
// send; the recipient is invited by @_server, cannot reject the invite, can
// join, read and then leave; the next notice re-invites them to the same
// room; a transaction ID makes a notice idempotent. The recipient cannot
// write in the room, which is tagged m.server_notice.
func TestServerNotices(t *testing.T) {
	s := start(t, nil)
	admin := newAdmin(t, s, "root")
	alice := newUser(t, s, "alice")
	noticesUser := "@_server:hs.test"
	body := map[string]any{"user_id": string(alice.UserID), "content": map[string]any{"msgtype": "m.text", "body": "hello from server notices!"}}
	notice := func(txn string) string {
		t.Helper()
		var r *resp
		if txn == "" {
			r = do(t, "POST", adminURL(s, "/v1/send_server_notice"), admin.AccessToken, body).want(t, 200, "")
		} else {
			r = do(t, "PUT", adminURL(s, "/v1/send_server_notice/"+txn), admin.AccessToken, body).want(t, 200, "")
		}
		ev, _ := r.Body["event_id"].(string)
		if ev == "" {
			t.Fatalf("send_server_notice = %s", r.Raw)
		}
		return ev
	}

	do(t, "POST", adminURL(s, "/v1/send_server_notice"), alice.AccessToken, body).want(t, http.StatusForbidden, "M_FORBIDDEN")
	eventID := notice("")
	roomID := noticesInvite(t, s, alice.AccessToken, noticesUser)

	do(t, "POST", roomURL(s, roomID, "leave"), alice.AccessToken, map[string]any{}).want(t, http.StatusForbidden, "M_CANNOT_LEAVE_SERVER_NOTICE_ROOM")
	join(t, alice, roomID)
	if e := eventOK(t, s, alice.AccessToken, roomID, eventID); e.Sender != noticesUser || e.body() != "hello from server notices!" {
		t.Fatalf("notice = %+v", e)
	}
	do(t, "PUT", roomURL(s, roomID, "send", "m.room.message", "a1"), alice.AccessToken, map[string]any{"msgtype": "m.text", "body": "hi"}).
		want(t, http.StatusForbidden, "M_FORBIDDEN")
	tags := do(t, "GET", v3(s, "user", string(alice.UserID), "rooms", string(roomID), "tags"), alice.AccessToken, nil).want(t, 200, "")
	if tt, _ := tags.Body["tags"].(map[string]any); tt["m.server_notice"] == nil {
		t.Fatalf("notices room tags = %s", tags.Raw)
	}
	if n := stateContent(t, s, alice.AccessToken, roomID, "m.room.name", "")["name"]; n != "Server Notices" {
		t.Fatalf("room name = %v", n)
	}
	do(t, "POST", roomURL(s, roomID, "invite"), alice.AccessToken, map[string]any{"user_id": string(admin.UserID)}).want(t, http.StatusForbidden, "M_FORBIDDEN")
	do(t, "POST", roomURL(s, roomID, "leave"), alice.AccessToken, map[string]any{}).want(t, 200, "")

	notice("")
	if again := noticesInvite(t, s, alice.AccessToken, noticesUser); again != roomID {
		t.Fatalf("after leaving, the next notice came in room %s, want %s", again, roomID)
	}
	if a, b := notice("1"), notice("1"); a != b {
		t.Fatalf("the same transaction ID sent %s and %s", a, b)
	}

	// Errors: unknown and remote users, malformed bodies; the notices
	// user's name is taken and nobody can log in as it or invite it.
	do(t, "POST", adminURL(s, "/v1/send_server_notice"), admin.AccessToken, map[string]any{"user_id": "@nobody:hs.test", "content": map[string]any{}}).want(t, http.StatusNotFound, "M_NOT_FOUND")
	do(t, "POST", adminURL(s, "/v1/send_server_notice"), admin.AccessToken, map[string]any{"user_id": "@bob:elsewhere.test", "content": map[string]any{}}).want(t, http.StatusBadRequest, "M_UNKNOWN")
	do(t, "POST", adminURL(s, "/v1/send_server_notice"), admin.AccessToken, map[string]any{"user_id": string(alice.UserID)}).want(t, http.StatusBadRequest, "M_MISSING_PARAM")
	do(t, "POST", adminURL(s, "/v1/send_server_notice"), admin.AccessToken, map[string]any{"user_id": string(alice.UserID), "content": "text"}).want(t, http.StatusBadRequest, "M_BAD_JSON")
	do(t, "POST", adminURL(s, "/v1/send_server_notice"), admin.AccessToken, map[string]any{"user_id": "@A B:hs.test", "content": map[string]any{}}).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	if r := do(t, "POST", v3(s, "register"), "", map[string]any{"username": "_server", "password": testPassword, "auth": map[string]any{"type": "m.login.dummy"}}); r.Status != http.StatusBadRequest {
		t.Fatalf("registering the notices user's name: %d %s", r.Status, r.Raw)
	}
	do(t, "POST", v3(s, "login"), "", map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": "_server"}, "password": ""}).
		want(t, http.StatusForbidden, "M_FORBIDDEN")
	other := mkRoom(t, alice, &mautrix.ReqCreateRoom{})
	do(t, "POST", roomURL(s, other, "invite"), alice.AccessToken, map[string]any{"user_id": noticesUser}).want(t, http.StatusForbidden, "M_FORBIDDEN")
	do(t, "POST", v3(s, "createRoom"), alice.AccessToken, map[string]any{"invite": []string{noticesUser}}).want(t, http.StatusForbidden, "M_FORBIDDEN")
	users := do(t, "GET", adminURL(s, "/v2/users"), admin.AccessToken, nil).want(t, 200, "")
	if users.Body["total"] != float64(2) {
		t.Fatalf("admin user list shows the notices user: %s", users.Raw)
	}
}

// TestServerNoticesConfig: auto_join joins the recipient and the configured
// room details and profile are used; an empty system_mxid_localpart turns
// notices off.
func TestServerNoticesConfig(t *testing.T) {
	startWith := func(yaml string) *testserver.Server {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "homeserver.yaml"), []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return testserver.StartIn(t, dir, nil)
	}
	s := startWith("server_notices:\n  system_mxid_localpart: notices\n  system_mxid_display_name: The Admins\n  room_name: From the admins\n  room_topic: Read me\n  auto_join: true\n")
	admin := newAdmin(t, s, "root")
	alice := newUser(t, s, "alice")
	r := do(t, "POST", adminURL(s, "/v1/send_server_notice"), admin.AccessToken, map[string]any{
		"user_id": string(alice.UserID), "type": "org.example.notice", "state_key": "", "content": map[string]any{"level": "high"},
	}).want(t, 200, "")
	rooms := joinedRooms(t, alice)
	if len(rooms) != 1 {
		t.Fatalf("alice's rooms after an auto_join notice = %v", rooms)
	}
	room := rooms[0]
	st := fullState(t, s, alice.AccessToken, room)
	if e := stateEvent(t, st, "org.example.notice", ""); e.EventID != r.Body["event_id"] || e.Sender != "@notices:hs.test" {
		t.Fatalf("state notice = %+v", e)
	}
	if n := stateEvent(t, st, "m.room.name", "").Content["name"]; n != "From the admins" {
		t.Fatalf("room name = %v", n)
	}
	if tp := stateEvent(t, st, "m.room.topic", "").Content["topic"]; tp != "Read me" {
		t.Fatalf("room topic = %v", tp)
	}
	if d := stateEvent(t, st, "m.room.member", "@notices:hs.test").Content["displayname"]; d != "The Admins" {
		t.Fatalf("notices user display name = %v", d)
	}

	off := startWith("server_notices:\n  system_mxid_localpart: \"\"\n")
	admin2 := newAdmin(t, off, "root")
	bob := newUser(t, off, "bob")
	do(t, "POST", adminURL(off, "/v1/send_server_notice"), admin2.AccessToken, map[string]any{"user_id": string(bob.UserID), "content": map[string]any{}}).
		want(t, http.StatusBadRequest, "M_UNKNOWN")
}
