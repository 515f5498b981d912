package e2e

import (
	"encoding/json"
	"net/url"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"matrixhs/tests/testserver"
)

// How /sync reports membership changes, mirroring Complement's
// TestMembersLocal, TestSync, TestRoomForget and TestGetRoomMembersAtPoint.

// syncBody runs one /sync (timeout 0) with an optional since and inline
// filter and returns the decoded body.
func syncBody(t *testing.T, s *testserver.Server, token, since string, filter any) map[string]any {
	t.Helper()
	q := url.Values{"timeout": {"0"}}
	if since != "" {
		q.Set("since", since)
	}
	if filter != nil {
		f, _ := json.Marshal(filter)
		q.Set("filter", string(f))
	}
	return do(t, "GET", v3(s, "sync")+"?"+q.Encode(), token, nil).want(t, 200, "").Body
}

func presenceSenders(body map[string]any) []string {
	var out []string
	for _, e := range body["presence"].(map[string]any)["events"].([]any) {
		out = append(out, e.(map[string]any)["sender"].(string))
	}
	return out
}

func syncRoomIn(body map[string]any, section string, room id.RoomID) (map[string]any, bool) {
	r, ok := body["rooms"].(map[string]any)[section].(map[string]any)[string(room)].(map[string]any)
	return r, ok
}

// A member who joins brings their presence into room mates' incremental
// syncs, however old it is; joining a room brings the presence of its
// members.
func TestSyncPresenceOfNewMembers(t *testing.T) {
	s := start(t, nil)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	do(t, "PUT", v3(s, "presence", string(bob.UserID), "status"), bob.AccessToken, map[string]any{"presence": "online"}).want(t, 200, "")
	do(t, "PUT", v3(s, "presence", string(alice.UserID), "status"), alice.AccessToken, map[string]any{"presence": "online"}).want(t, 200, "")
	// Both tokens come after both presence changes.
	aliceSince := syncBody(t, s, alice.AccessToken, "", nil)["next_batch"].(string)
	bobSince := syncBody(t, s, bob.AccessToken, "", nil)["next_batch"].(string)
	join(t, bob, room)

	// Existing members see the new member's presence (TestMembersLocal)...
	body := syncBody(t, s, alice.AccessToken, aliceSince, nil)
	if !slices.Contains(presenceSenders(body), string(bob.UserID)) {
		t.Fatalf("alice's incremental sync lacks bob's presence: %v", presenceSenders(body))
	}
	// ...once: the next sync has none of it.
	if again := syncBody(t, s, alice.AccessToken, body["next_batch"].(string), nil); slices.Contains(presenceSenders(again), string(bob.UserID)) {
		t.Fatalf("bob's unchanged presence sent again: %v", presenceSenders(again))
	}
	// The new member sees the room's members' presence (TestSync).
	body = syncBody(t, s, bob.AccessToken, bobSince, nil)
	if !slices.Contains(presenceSenders(body), string(alice.UserID)) {
		t.Fatalf("bob's incremental sync after joining lacks alice's presence: %v", presenceSenders(body))
	}
	if again := syncBody(t, s, bob.AccessToken, body["next_batch"].(string), nil); slices.Contains(presenceSenders(again), string(alice.UserID)) {
		t.Fatalf("alice's unchanged presence sent again: %v", presenceSenders(again))
	}
	// And an initial sync has it all along.
	if got := presenceSenders(syncBody(t, s, alice.AccessToken, "", nil)); !slices.Contains(got, string(bob.UserID)) {
		t.Fatalf("alice's initial sync lacks bob's presence: %v", got)
	}
}

// A room joined since the last sync is limited (as Synapse marks it), even
// when the filtered history fits the limit.
func TestSyncNewlyJoinedRoomIsLimited(t *testing.T) {
	s := start(t, nil)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	filter := map[string]any{"room": map[string]any{
		"timeline": map[string]any{"limit": 10, "types": []string{"m.room.message"}},
		"state":    map[string]any{"types": []string{}},
	}}
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	for _, b := range []string{"1-1", "1-2", "1-3", "1-4"} {
		text(t, alice, room, b)
	}
	since := syncBody(t, s, bob.AccessToken, "", filter)["next_batch"].(string)
	for _, b := range []string{"2-1", "2-2", "2-3", "2-4"} {
		text(t, alice, room, b)
	}
	join(t, bob, room)
	jr, ok := syncRoomIn(syncBody(t, s, bob.AccessToken, since, filter), "join", room)
	if !ok {
		t.Fatal("newly joined room missing")
	}
	tl := jr["timeline"].(map[string]any)
	evs := tl["events"].([]any)
	for _, e := range evs {
		if e.(map[string]any)["type"] != "m.room.message" {
			t.Fatalf("filtered timeline holds %v", e)
		}
	}
	if len(evs) != 8 || tl["limited"] != true {
		t.Fatalf("timeline of %d events, limited %v; want the 8 messages, limited", len(evs), tl["limited"])
	}
}

// A room left and then forgotten still reaches the other devices' next
// incremental sync as a leave; an initial sync never lists it, even with
// include_leave.
func TestSyncForgottenRoom(t *testing.T) {
	s := start(t, nil)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	includeLeave := map[string]any{"room": map[string]any{"include_leave": true}}
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	join(t, bob, room)
	text(t, alice, room, "Hello world!")
	beforeLeave := syncBody(t, s, alice.AccessToken, "", nil)["next_batch"].(string)
	if _, err := alice.LeaveRoom(ctxT(t), room); err != nil {
		t.Fatal(err)
	}
	do(t, "POST", roomURL(s, room, "forget"), alice.AccessToken, map[string]any{}).want(t, 200, "")
	text(t, bob, room, "Hello again")

	for _, f := range []any{nil, includeLeave} {
		if _, ok := syncRoomIn(syncBody(t, s, alice.AccessToken, beforeLeave, f), "leave", room); !ok {
			t.Fatalf("incremental sync (filter %v) lacks the forgotten room's leave", f)
		}
	}
	if _, ok := syncRoomIn(syncBody(t, s, alice.AccessToken, "", includeLeave), "leave", room); ok {
		t.Fatal("initial sync with include_leave lists the forgotten room")
	}
}

// /members?at= with a token from a sync gives the members at that point:
// the prev_batch of a new room's complete timeline is the sync's position
// (Complement's TestGetRoomMembersAtPoint), a next_batch works as well, and
// a point the user may not see is refused.
func TestMembersAtSyncToken(t *testing.T) {
	s := start(t, nil)
	alice, bob, carol := newUser(t, s, "alice"), newUser(t, s, "bob"), newUser(t, s, "carol")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	text(t, alice, room, "Hello world!")
	body := syncBody(t, s, alice.AccessToken, "", nil)
	jr, _ := syncRoomIn(body, "join", room)
	prevBatch := jr["timeline"].(map[string]any)["prev_batch"].(string)
	join(t, bob, room)
	text(t, bob, room, "Hello back")

	for _, at := range []string{prevBatch, body["next_batch"].(string)} {
		r := do(t, "GET", roomURL(s, room, "members")+"?at="+url.QueryEscape(at), alice.AccessToken, nil).want(t, 200, "")
		var got []string
		for _, e := range r.Body["chunk"].([]any) {
			ev := e.(map[string]any)
			if ev["room_id"] != string(room) || ev["type"] != "m.room.member" {
				t.Fatalf("chunk entry %v", ev)
			}
			got = append(got, ev["state_key"].(string))
		}
		if !slices.Equal(got, []string{string(alice.UserID)}) {
			t.Fatalf("members at %s = %v, want alice alone", at, got)
		}
	}

	// Under history_visibility joined, carol (joining later) may not see
	// the members from before her join; from after it she may.
	do(t, "PUT", roomURL(s, room, "state", "m.room.history_visibility", ""), alice.AccessToken,
		map[string]any{"history_visibility": "joined"}).want(t, 200, "")
	before := syncBody(t, s, alice.AccessToken, "", nil)["next_batch"].(string)
	join(t, carol, room)
	after := syncBody(t, s, carol.AccessToken, "", nil)["next_batch"].(string)
	do(t, "GET", roomURL(s, room, "members")+"?at="+url.QueryEscape(before), carol.AccessToken, nil).want(t, 403, "M_FORBIDDEN")
	if r := do(t, "GET", roomURL(s, room, "members")+"?at="+url.QueryEscape(after), carol.AccessToken, nil).want(t, 200, ""); len(r.Body["chunk"].([]any)) != 3 {
		t.Fatalf("members after carol's join: %s", r.Raw)
	}
	do(t, "GET", roomURL(s, room, "members")+"?at=nonsense", carol.AccessToken, nil).want(t, 400, "M_INVALID_PARAM")
}

// Events carry the reader's membership at the event in
// unsigned.membership (MSC4115, Complement's TestMembershipOnEvents): "leave"
// before the reader joined, "join" from their join event on, in /sync,
// /messages, /context and /event.
func TestMembershipOnEvents(t *testing.T) {
	s := start(t, nil)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	pre := text(t, alice, room, "prejoin")
	join(t, bob, room)
	post := text(t, alice, room, "postjoin")

	check := func(where string, evs []any) {
		t.Helper()
		joined, seen := false, 0
		for _, e := range evs {
			ev := e.(map[string]any)
			if ev["type"] == "m.room.member" && ev["state_key"] == string(bob.UserID) {
				joined = true
			}
			want := map[bool]string{false: "leave", true: "join"}[joined]
			got, _ := ev["unsigned"].(map[string]any)["membership"].(string)
			if got != want {
				t.Fatalf("%s: event %v has membership %q, want %q", where, ev["event_id"], got, want)
			}
			if ev["event_id"] == pre || ev["event_id"] == post {
				seen++
			}
		}
		if seen != 2 || !joined {
			t.Fatalf("%s: did not see both messages and bob's join", where)
		}
	}
	jr, _ := syncRoomIn(syncBody(t, s, bob.AccessToken, "", map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 50}}}), "join", room)
	check("sync", jr["timeline"].(map[string]any)["events"].([]any))

	r := do(t, "GET", roomURL(s, room, "messages")+"?dir=f&limit=50", bob.AccessToken, nil).want(t, 200, "")
	check("messages", r.Body["chunk"].([]any))

	r = do(t, "GET", roomURL(s, room, "context", post)+"?limit=50", bob.AccessToken, nil).want(t, 200, "")
	ctxEvents := append(reversedAny(r.Body["events_before"].([]any)), r.Body["event"])
	check("context", append(ctxEvents, r.Body["events_after"].([]any)...))

	for id, want := range map[string]string{pre: "leave", post: "join"} {
		r := do(t, "GET", roomURL(s, room, "event", id), bob.AccessToken, nil).want(t, 200, "")
		if got := r.Body["unsigned"].(map[string]any)["membership"]; got != want {
			t.Fatalf("/event %s: membership %v, want %s", id, got, want)
		}
	}
	// The sender's own view: joined throughout.
	r = do(t, "GET", roomURL(s, room, "event", pre), alice.AccessToken, nil).want(t, 200, "")
	if got := r.Body["unsigned"].(map[string]any)["membership"]; got != "join" {
		t.Fatalf("alice's membership at her own message = %v", got)
	}
}

func reversedAny(in []any) []any {
	out := make([]any, len(in))
	for i, v := range in {
		out[len(in)-1-i] = v
	}
	return out
}

// Left rooms in rooms.leave, as Complement's sync_archive_test.go checks
// them: the archived timeline and state stop at the leave (with filters and
// with an empty timeline), a gapped sync still reports the leave, an older
// leave is not repeated, and one's own leave is visible under joined history
// visibility.
func TestSyncLeaveSection(t *testing.T) {
	s := start(t, nil)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	const madeUp = "a.madeup.test.state"
	bobFilter := map[string]any{"room": map[string]any{
		"timeline":      map[string]any{"types": []string{"m.room.message", madeUp}},
		"state":         map[string]any{"types": []string{madeUp}},
		"include_leave": true,
	}}
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	join(t, bob, room)
	bobSince := syncBody(t, s, bob.AccessToken, "", bobFilter)["next_batch"].(string)
	setMadeUp := func(v string) {
		do(t, "PUT", roomURL(s, room, "state", madeUp, ""), alice.AccessToken, map[string]any{"my_key": v}).want(t, 200, "")
	}
	text(t, alice, room, "before")
	setMadeUp("before")
	if _, err := bob.LeaveRoom(ctxT(t), room); err != nil {
		t.Fatal(err)
	}
	text(t, alice, room, "after")
	setMadeUp("after")

	for name, since := range map[string]string{"initial": "", "incremental": bobSince} {
		lr, ok := syncRoomIn(syncBody(t, s, bob.AccessToken, since, bobFilter), "leave", room)
		if !ok {
			t.Fatalf("%s: left room missing", name)
		}
		evs := lr["timeline"].(map[string]any)["events"].([]any)
		if st := lr["state"].(map[string]any)["events"].([]any); len(st) != 0 {
			t.Fatalf("%s: state %v, want none", name, st)
		}
		if len(evs) != 2 || evs[0].(map[string]any)["content"].(map[string]any)["body"] != "before" {
			t.Fatalf("%s: timeline %v, want the two events from before the leave", name, evs)
		}
	}
	// An empty timeline: the state holds the leave and the state from before it.
	empty := map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 0}, "include_leave": true}}
	lr, _ := syncRoomIn(syncBody(t, s, bob.AccessToken, "", empty), "leave", room)
	sawLeave := false
	for _, e := range lr["state"].(map[string]any)["events"].([]any) {
		ev := e.(map[string]any)
		content := ev["content"].(map[string]any)
		if ev["type"] == madeUp && content["my_key"] != "before" {
			t.Fatalf("state from after the leave: %v", ev)
		}
		if ev["type"] == "m.room.member" && ev["state_key"] == string(bob.UserID) {
			sawLeave = content["membership"] == "leave"
		}
	}
	if !sawLeave {
		t.Fatalf("state lacks bob's leave: %v", lr["state"])
	}

	// Gapped: alice leaves one room and fills another; the leave still comes,
	// and is not repeated after that.
	gappy := map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 1}, "include_leave": true}}
	toLeave := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	spam := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	join(t, bob, toLeave)
	since := syncBody(t, s, alice.AccessToken, "", gappy)["next_batch"].(string)
	if _, err := alice.LeaveRoom(ctxT(t), toLeave); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		text(t, alice, spam, "Mr Anderson...")
	}
	body := syncBody(t, s, alice.AccessToken, since, gappy)
	if _, ok := syncRoomIn(body, "leave", toLeave); !ok {
		t.Fatal("gapped sync lacks the leave")
	}
	text(t, bob, toLeave, "after alice left")
	if left := syncBody(t, s, alice.AccessToken, body["next_batch"].(string), gappy)["rooms"].(map[string]any)["leave"].(map[string]any); len(left) != 0 {
		t.Fatalf("an older leave is repeated: %v", left)
	}

	// One's own leave is visible under history_visibility joined.
	hidden := mkRoomRaw(t, s, alice.AccessToken, map[string]any{"preset": "public_chat", "initial_state": []any{
		map[string]any{"type": "m.room.history_visibility", "state_key": "", "content": map[string]any{"history_visibility": "joined"}}}})
	join(t, bob, hidden)
	includeLeave := map[string]any{"room": map[string]any{"include_leave": true}}
	since = syncBody(t, s, alice.AccessToken, "", includeLeave)["next_batch"].(string)
	if _, err := alice.LeaveRoom(ctxT(t), hidden); err != nil {
		t.Fatal(err)
	}
	lr, ok := syncRoomIn(syncBody(t, s, alice.AccessToken, since, includeLeave), "leave", hidden)
	if !ok {
		t.Fatal("left room missing")
	}
	evs := lr["timeline"].(map[string]any)["events"].([]any)
	if st := lr["state"].(map[string]any)["events"].([]any); len(st) != 0 || len(evs) != 1 ||
		evs[0].(map[string]any)["content"].(map[string]any)["membership"] != "leave" {
		t.Fatalf("own leave under joined visibility: timeline %v, state %v", evs, st)
	}
}
