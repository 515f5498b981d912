package e2e

import (
	"fmt"
	"net/url"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"matrixhs/storage"
	"matrixhs/tests/testserver"
)

// Room deletion with purge, and history purges, through Synapse's admin API.

// roomTrace is what identifies a room's rows: its IDs and its events'.
type roomTrace struct {
	roomID   string
	roomNID  int64
	eventIDs []string
	nids     []int64
}

// traceRoom records a room's IDs and the IDs of its events (paged as a
// member sees them).
func traceRoom(t *testing.T, s *testserver.Server, token string, room id.RoomID) roomTrace {
	t.Helper()
	info, err := s.DB.Room(ctxT(t), string(room))
	if err != nil {
		t.Fatal(err)
	}
	tr := roomTrace{roomID: string(room), roomNID: info.NID}
	for _, ev := range pageAll(t, s, token, room, "b", 100) {
		stored, err := s.DB.EventByID(ctxT(t), ev.EventID)
		if err != nil {
			t.Fatal(err)
		}
		tr.eventIDs = append(tr.eventIDs, ev.EventID)
		tr.nids = append(tr.nids, stored.NID)
	}
	return tr
}

// leftOf walks every table with a room or event column (found through the
// catalogue, so a table added later is covered) and counts the rows that
// still name the room or one of its events.
func leftOf(t *testing.T, s *testserver.Server, tr roomTrace) map[string]int64 {
	t.Helper()
	ctx := ctxT(t)
	tables, err := s.DB.TablesWithColumns(ctx, "room_nid", "room_id", "event_nid", "event_id")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	left := map[string]int64{}
	for _, tc := range tables {
		seen[tc.Table] = true
		var n int64
		switch tc.Column {
		case "room_nid":
			n, err = storage.CountRowsIn(ctx, s.DB, tc, []int64{tr.roomNID})
		case "room_id":
			n, err = storage.CountRowsIn(ctx, s.DB, tc, []string{tr.roomID})
		case "event_nid":
			n, err = storage.CountRowsIn(ctx, s.DB, tc, tr.nids)
		default:
			n, err = storage.CountRowsIn(ctx, s.DB, tc, tr.eventIDs)
		}
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			left[tc.Table+"."+tc.Column] = n
		}
	}
	for _, must := range []string{"events", "current_state", "receipts", "account_data", "push_actions", "event_search_docs", "state_snapshots"} {
		if !seen[must] {
			t.Fatalf("the catalogue walk misses table %s: %v", must, tables)
		}
	}
	return left
}

// busyRoom fills a room with what a lived-in room has: messages, a reply,
// a reaction, a redaction, a thread, receipts, a tag, a report.
func busyRoom(t *testing.T, s *testserver.Server, alice, bob *mautrix.Client, room id.RoomID, n int) {
	t.Helper()
	var last string
	for i := range n {
		last = text(t, alice, room, fmt.Sprintf("message %d with searchable words", i))
	}
	relSend(t, bob, room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "reply",
		"m.relates_to": map[string]any{"m.in_reply_to": map[string]any{"event_id": last}}})
	relSend(t, bob, room, "m.reaction", map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": last, "key": "👍"}})
	relSend(t, bob, room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "in a thread",
		"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": last}})
	if _, err := alice.RedactEvent(ctxT(t), room, id.EventID(last)); err != nil {
		t.Fatal(err)
	}
	do(t, "POST", roomURL(s, room, "receipt", "m.read", last), bob.AccessToken, map[string]any{}).want(t, 200, "")
	do(t, "PUT", v3(s, "user", string(bob.UserID), "rooms", string(room), "tags", "u.work"), bob.AccessToken, map[string]any{}).want(t, 200, "")
	do(t, "POST", roomURL(s, room, "report", last), bob.AccessToken, map[string]any{"reason": "spam"}).want(t, 200, "")
}

func TestAdminDeleteRoomPurgesEverything(t *testing.T) {
	s := start(t, nil)
	admin := newAdmin(t, s, "root")
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	room := mkRoomRaw(t, s, alice.AccessToken, map[string]any{"preset": "public_chat", "room_alias_name": "doomed", "visibility": "public"})
	join(t, bob, room)
	busyRoom(t, s, alice, bob, room, 30)
	other := mkRoomRaw(t, s, alice.AccessToken, map[string]any{"preset": "public_chat"})
	join(t, bob, other)
	busyRoom(t, s, alice, bob, other, 5)
	otherBefore := len(pageAll(t, s, alice.AccessToken, other, "b", 100))
	tr := traceRoom(t, s, alice.AccessToken, room)
	if len(leftOf(t, s, tr)) < 8 {
		t.Fatalf("the room's rows were not found before the purge: %v", leftOf(t, s, tr))
	}

	u := adminURL(s, "/v1/rooms/"+url.PathEscape(string(room)))
	do(t, "DELETE", u, bob.AccessToken, map[string]any{}).want(t, 403, "M_FORBIDDEN")
	do(t, "DELETE", u, "", map[string]any{}).want(t, 401, "M_MISSING_TOKEN")
	do(t, "DELETE", u, admin.AccessToken, map[string]any{"purge": "yes"}).want(t, 400, "M_BAD_JSON")
	do(t, "DELETE", adminURL(s, "/v1/rooms/nonsense"), admin.AccessToken, map[string]any{}).want(t, 400, "M_INVALID_PARAM")
	r := do(t, "DELETE", u, admin.AccessToken, map[string]any{}).want(t, 200, "")
	if len(r.Body["kicked_users"].([]any)) != 2 || r.Body["local_aliases"].([]any)[0] != "#doomed:hs.test" || r.Body["new_room_id"] != nil {
		t.Fatalf("delete = %s", r.Raw)
	}
	if left := leftOf(t, s, tr); len(left) != 0 {
		t.Fatalf("rows of the purged room are left: %v", left)
	}
	do(t, "GET", u, admin.AccessToken, nil).want(t, 404, "M_NOT_FOUND")
	if n := len(pageAll(t, s, alice.AccessToken, other, "b", 100)); n != otherBefore {
		t.Fatalf("the other room has %d events after the purge, had %d", n, otherBefore)
	}
	// The users' syncs go on; the alias and the room can be made again.
	if _, err := alice.SyncRequest(ctxT(t), 0, "", "", true, ""); err != nil {
		t.Fatal(err)
	}
	again := mkRoomRaw(t, s, alice.AccessToken, map[string]any{"preset": "public_chat", "room_alias_name": "doomed"})
	join(t, bob, again)
	text(t, alice, again, "a fresh start")
	if r := do(t, "GET", v3(s, "directory", "room", "#doomed:hs.test"), "", nil).want(t, 200, ""); r.Body["room_id"] != string(again) {
		t.Fatalf("alias = %s", r.Raw)
	}
	// The purged room ID is unknown now: joining it fails cleanly.
	do(t, "POST", v3(s, "join", string(room)), bob.AccessToken, map[string]any{}).want(t, 404, "M_NOT_FOUND")
}

func TestAdminDeleteRoomV2RunsInTheBackground(t *testing.T) {
	s := start(t, nil)
	admin := newAdmin(t, s, "root")
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	room := mkRoomRaw(t, s, alice.AccessToken, map[string]any{"preset": "public_chat"})
	join(t, bob, room)
	busyRoom(t, s, alice, bob, room, 10)
	tr := traceRoom(t, s, alice.AccessToken, room)

	u := s.URL() + "/_synapse/admin/v2/rooms/" + url.PathEscape(string(room))
	do(t, "DELETE", u, bob.AccessToken, map[string]any{}).want(t, 403, "M_FORBIDDEN")
	r := do(t, "DELETE", u, admin.AccessToken, map[string]any{"block": true}).want(t, 200, "")
	deleteID, _ := r.Body["delete_id"].(string)
	if deleteID == "" {
		t.Fatalf("delete = %s", r.Raw)
	}
	status := s.URL() + "/_synapse/admin/v2/rooms/delete_status/" + deleteID
	do(t, "GET", status, bob.AccessToken, nil).want(t, 403, "M_FORBIDDEN")
	waitFor(t, "the deletion to complete", func() bool {
		st := do(t, "GET", status, admin.AccessToken, nil).want(t, 200, "")
		if st.Body["status"] == "failed" {
			t.Fatalf("deletion failed: %s", st.Raw)
		}
		return st.Body["status"] == "complete"
	})
	st := do(t, "GET", status, admin.AccessToken, nil).want(t, 200, "")
	shutdown := st.Body["shutdown_room"].(map[string]any)
	progress := st.Body["progress"].(map[string]any)
	if st.Body["room_id"] != string(room) || len(shutdown["kicked_users"].([]any)) != 2 || progress["events_deleted"].(float64) < float64(len(tr.eventIDs)) {
		t.Fatalf("status = %s", st.Raw)
	}
	byRoom := do(t, "GET", u+"/delete_status", admin.AccessToken, nil).want(t, 200, "")
	if res := byRoom.Body["results"].([]any); len(res) != 1 || res[0].(map[string]any)["delete_id"] != deleteID {
		t.Fatalf("status by room = %s", byRoom.Raw)
	}
	do(t, "GET", s.URL()+"/_synapse/admin/v2/rooms/delete_status/nope", admin.AccessToken, nil).want(t, 404, "M_NOT_FOUND")
	// Blocked: only the block is left of the room.
	left := leftOf(t, s, tr)
	if len(left) != 1 || left["blocked_rooms.room_id"] != 1 {
		t.Fatalf("left of a blocked, purged room: %v", left)
	}
	do(t, "POST", v3(s, "join", string(room)), bob.AccessToken, map[string]any{}).want(t, 403, "M_FORBIDDEN")
	// Unknown rooms are 404 for v2.
	do(t, "DELETE", s.URL()+"/_synapse/admin/v2/rooms/"+url.PathEscape("!nope:hs.test"), admin.AccessToken, map[string]any{}).want(t, 404, "M_NOT_FOUND")
}

func TestAdminDeleteRoomMovesUsersToANewRoom(t *testing.T) {
	s := start(t, nil)
	admin := newAdmin(t, s, "root")
	alice := newUser(t, s, "alice")
	room := mkRoomRaw(t, s, alice.AccessToken, map[string]any{"preset": "public_chat", "room_alias_name": "moved"})
	r := do(t, "DELETE", adminURL(s, "/v1/rooms/"+url.PathEscape(string(room))), admin.AccessToken,
		map[string]any{"new_room_user_id": string(admin.UserID), "message": "gone", "room_name": "Moved"}).want(t, 200, "")
	newRoom, _ := r.Body["new_room_id"].(string)
	if newRoom == "" {
		t.Fatalf("delete = %s", r.Raw)
	}
	if membership(t, s, alice.AccessToken, id.RoomID(newRoom), string(alice.UserID)) != "join" {
		t.Fatal("alice was not moved to the new room")
	}
	if r := do(t, "GET", v3(s, "directory", "room", "#moved:hs.test"), "", nil).want(t, 200, ""); r.Body["room_id"] != newRoom {
		t.Fatalf("alias = %s", r.Raw)
	}
	do(t, "DELETE", adminURL(s, "/v1/rooms/"+url.PathEscape(newRoom)), admin.AccessToken,
		map[string]any{"new_room_user_id": "@x:elsewhere"}).want(t, 400, "M_INVALID_PARAM")
}

func TestAdminPurgeHistory(t *testing.T) {
	s := start(t, nil)
	admin := newAdmin(t, s, "root")
	alice := newUser(t, s, "alice")
	room := mkRoomRaw(t, s, alice.AccessToken, map[string]any{"preset": "public_chat", "name": "History"})
	var ids []string
	for i := range 20 {
		ids = append(ids, text(t, alice, room, fmt.Sprintf("m%d", i)))
	}
	u := adminURL(s, "/v1/purge_history/"+url.PathEscape(string(room)))
	do(t, "POST", u, alice.AccessToken, map[string]any{"purge_up_to_event_id": ids[10]}).want(t, 403, "M_FORBIDDEN")
	do(t, "POST", u, admin.AccessToken, map[string]any{}).want(t, 400, "M_MISSING_PARAM")
	do(t, "POST", u, admin.AccessToken, map[string]any{"purge_up_to_ts": "soon"}).want(t, 400, "M_BAD_JSON")
	do(t, "POST", adminURL(s, "/v1/purge_history/"+url.PathEscape("!nope:hs.test")), admin.AccessToken,
		map[string]any{"purge_up_to_ts": 1}).want(t, 404, "M_NOT_FOUND")
	do(t, "POST", u, admin.AccessToken, map[string]any{"purge_up_to_event_id": "$nope"}).want(t, 404, "M_NOT_FOUND")

	purge := func(body map[string]any, path string) map[string]any {
		t.Helper()
		r := do(t, "POST", u+path, admin.AccessToken, body).want(t, 200, "")
		purgeID, _ := r.Body["purge_id"].(string)
		if purgeID == "" {
			t.Fatalf("purge = %s", r.Raw)
		}
		status := adminURL(s, "/v1/purge_history_status/"+purgeID)
		var st *resp
		waitFor(t, "the purge to finish", func() bool {
			st = do(t, "GET", status, admin.AccessToken, nil).want(t, 200, "")
			return st.Body["status"] == "complete" || st.Body["status"] == "failed"
		})
		if st.Body["status"] != "complete" {
			t.Fatalf("purge status = %s", st.Raw)
		}
		return st.Body["progress"].(map[string]any)
	}
	// Local users' events stay unless delete_local_events.
	if p := purge(map[string]any{"purge_up_to_event_id": ids[10]}, ""); p["events_deleted"] != float64(0) {
		t.Fatalf("local events were purged: %v", p)
	}
	if p := purge(map[string]any{"delete_local_events": true}, "/"+url.PathEscape(ids[10])); p["events_deleted"] != float64(10) {
		t.Fatalf("purge progress = %v", p)
	}
	bodies := messageBodies(pageAll(t, s, alice.AccessToken, room, "b", 7))
	if len(bodies) != 10 || bodies[0] != "m19" || bodies[9] != "m10" {
		t.Fatalf("messages after the purge = %v", bodies)
	}
	// State stays: the room's name and the members.
	if c := stateContent(t, s, alice.AccessToken, room, "m.room.name", ""); c["name"] != "History" {
		t.Fatalf("name after the purge = %v", c)
	}
	// By time: everything before now but the newest event (an extremity).
	purge(map[string]any{"delete_local_events": true, "purge_up_to_ts": s.Accounts.Now().UnixMilli() + 1000}, "")
	if bodies := messageBodies(pageAll(t, s, alice.AccessToken, room, "b", 7)); len(bodies) != 1 || bodies[0] != "m19" {
		t.Fatalf("messages after purging up to now = %v", bodies)
	}
	text(t, alice, room, "still works")
	do(t, "GET", adminURL(s, "/v1/purge_history_status/nope"), admin.AccessToken, nil).want(t, 404, "M_NOT_FOUND")
}
