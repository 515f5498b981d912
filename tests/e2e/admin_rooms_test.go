package e2e

import (
	"net/url"
	"testing"
)

// Room state, messages, joins, room admins and forward extremities through
// Synapse's admin API.
func TestAdminRoomReadsAndJoins(t *testing.T) {
	s := start(t, nil)
	admin := newAdmin(t, s, "root")
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	carol := newUser(t, s, "carol")
	private := mkRoomRaw(t, s, alice.AccessToken, map[string]any{"preset": "private_chat", "name": "Secret",
		"initial_state": []any{map[string]any{"type": "m.room.history_visibility", "content": map[string]any{"history_visibility": "joined"}}}})
	for i := 0; i < 5; i++ {
		text(t, alice, private, "hidden "+string(rune('a'+i)))
	}
	public := mkRoomRaw(t, s, alice.AccessToken, map[string]any{"preset": "public_chat", "room_alias_name": "pub"})
	rooms := func(r string) string { return adminURL(s, "/v1/rooms/"+url.PathEscape(r)) }

	// State, filtered by type.
	do(t, "GET", rooms(string(private))+"/state", bob.AccessToken, nil).want(t, 403, "M_FORBIDDEN")
	st := do(t, "GET", rooms(string(private))+"/state", admin.AccessToken, nil).want(t, 200, "")
	if n := len(st.Body["state"].([]any)); n < 5 {
		t.Fatalf("state = %s", st.Raw)
	}
	st = do(t, "GET", rooms(string(private))+"/state?type=m.room.name", admin.AccessToken, nil).want(t, 200, "")
	if evs := st.Body["state"].([]any); len(evs) != 1 || evs[0].(map[string]any)["content"].(map[string]any)["name"] != "Secret" {
		t.Fatalf("name state = %s", st.Raw)
	}
	do(t, "GET", rooms("!nope:hs.test")+"/state", admin.AccessToken, nil).want(t, 404, "M_NOT_FOUND")
	do(t, "GET", rooms("nope")+"/state", admin.AccessToken, nil).want(t, 400, "M_INVALID_PARAM")

	// Messages: the admin reads what they could not see as a user, paging both ways.
	m := do(t, "GET", rooms(string(private))+"/messages?dir=b&limit=3", admin.AccessToken, nil).want(t, 200, "")
	chunk := m.Body["chunk"].([]any)
	if len(chunk) != 3 || chunk[0].(map[string]any)["content"].(map[string]any)["body"] != "hidden e" || m.Body["end"] == nil {
		t.Fatalf("messages = %s", m.Raw)
	}
	m = do(t, "GET", rooms(string(private))+"/messages?dir=b&limit=100&from="+url.QueryEscape(m.Body["end"].(string)), admin.AccessToken, nil).want(t, 200, "")
	if m.Body["end"] != nil || len(m.Body["chunk"].([]any)) < 4 {
		t.Fatalf("second page = %s", m.Raw)
	}
	m = do(t, "GET", rooms(string(private))+"/messages?limit=2&filter="+url.QueryEscape(`{"types":["m.room.message"]}`), admin.AccessToken, nil).want(t, 200, "")
	if c := m.Body["chunk"].([]any); len(c) != 2 || c[0].(map[string]any)["content"].(map[string]any)["body"] != "hidden a" {
		t.Fatalf("filtered forward page = %s", m.Raw)
	}
	do(t, "GET", rooms(string(private))+"/messages?dir=x", admin.AccessToken, nil).want(t, 400, "M_INVALID_PARAM")
	do(t, "GET", rooms(string(private))+"/messages?filter=nope", admin.AccessToken, nil).want(t, 400, "M_BAD_JSON")

	// Join: public rooms directly (by alias too), private ones through the admin's invite.
	joinURL := func(r string) string { return adminURL(s, "/v1/join/"+url.PathEscape(r)) }
	do(t, "POST", joinURL("#pub:hs.test"), bob.AccessToken, map[string]any{"user_id": string(bob.UserID)}).want(t, 403, "M_FORBIDDEN")
	if r := do(t, "POST", joinURL("#pub:hs.test"), admin.AccessToken, map[string]any{"user_id": string(bob.UserID)}).want(t, 200, ""); r.Body["room_id"] != string(public) {
		t.Fatalf("join = %s", r.Raw)
	}
	if membership(t, s, bob.AccessToken, public, string(bob.UserID)) != "join" {
		t.Fatal("bob was not joined")
	}
	do(t, "POST", joinURL(string(private)), admin.AccessToken, map[string]any{"user_id": string(bob.UserID)}).want(t, 403, "M_FORBIDDEN")
	do(t, "POST", joinURL(string(private)), admin.AccessToken, map[string]any{}).want(t, 400, "M_MISSING_PARAM")
	do(t, "POST", joinURL(string(private)), admin.AccessToken, map[string]any{"user_id": "@ghost:hs.test"}).want(t, 404, "M_NOT_FOUND")
	do(t, "POST", joinURL(string(private)), admin.AccessToken, map[string]any{"user_id": "@x:elsewhere"}).want(t, 400, "M_INVALID_PARAM")
	do(t, "POST", joinURL("#nope:hs.test"), admin.AccessToken, map[string]any{"user_id": string(bob.UserID)}).want(t, 404, "M_NOT_FOUND")
	gone := newUser(t, s, "gone")
	do(t, "POST", adminURL(s, "/v1/deactivate/"+url.PathEscape(string(gone.UserID))), admin.AccessToken, map[string]any{}).want(t, 200, "")
	do(t, "POST", joinURL(string(public)), admin.AccessToken, map[string]any{"user_id": string(gone.UserID)}).want(t, 403, "M_FORBIDDEN")

	// make_room_admin: alice (the most powerful local member) raises the
	// admin, who is invited first; then the admin can join others.
	do(t, "POST", rooms(string(private))+"/make_room_admin", admin.AccessToken, map[string]any{}).want(t, 200, "")
	pl := stateContent(t, s, alice.AccessToken, private, "m.room.power_levels", "")
	if pl["users"].(map[string]any)[string(admin.UserID)] != float64(100) {
		t.Fatalf("power levels = %v", pl)
	}
	if _, err := admin.JoinRoomByID(ctxT(t), private); err != nil {
		t.Fatal(err)
	}
	do(t, "POST", joinURL(string(private)), admin.AccessToken, map[string]any{"user_id": string(carol.UserID)}).want(t, 200, "")
	if membership(t, s, carol.AccessToken, private, string(carol.UserID)) != "join" {
		t.Fatal("carol was not joined through the admin's invite")
	}

	// Forward extremities: one in a quiet local room; deleting leaves it.
	fe := do(t, "GET", rooms(string(public))+"/forward_extremities", admin.AccessToken, nil).want(t, 200, "")
	if fe.Body["count"] != float64(1) || fe.Body["results"].([]any)[0].(map[string]any)["depth"] == nil {
		t.Fatalf("forward extremities = %s", fe.Raw)
	}
	if r := do(t, "DELETE", rooms("#pub:hs.test")+"/forward_extremities", admin.AccessToken, nil).want(t, 200, ""); r.Body["deleted"] != float64(0) {
		t.Fatalf("deleted = %s", r.Raw)
	}
	if _, err := bob.SendText(ctxT(t), public, "after the trim"); err != nil {
		t.Fatal(err)
	}
}
