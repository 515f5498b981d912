package e2e

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestRoomReadState: GET /state lists the current state once per key and no
// timeline events; mautrix parses it; single lookups 404 when absent.
func TestRoomReadState(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	roomID := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "First"})
	join(t, bob, roomID)
	text(t, alice, roomID, "not state")
	if _, err := alice.SendStateEvent(ctxT(t), roomID, event.StateRoomName, "", map[string]any{"name": "Second"}); err != nil {
		t.Fatal(err)
	}
	st := fullState(t, s, bob.AccessToken, roomID)
	seen := map[string]bool{}
	for _, e := range st {
		if e.StateKey == nil {
			t.Fatalf("/state holds a non-state event %+v", e)
		}
		if seen[e.key()] {
			t.Fatalf("/state lists %s twice", e.key())
		}
		seen[e.key()] = true
		if e.RoomID != string(roomID) || e.EventID == "" || e.Sender == "" {
			t.Fatalf("malformed state event %+v", e)
		}
	}
	for _, k := range []string{"m.room.create|", "m.room.member|" + string(alice.UserID), "m.room.member|" + string(bob.UserID),
		"m.room.power_levels|", "m.room.join_rules|", "m.room.history_visibility|", "m.room.name|"} {
		if !seen[k] {
			t.Fatalf("/state lacks %s (has %v)", k, slices.Sorted(maps.Keys(seen)))
		}
	}
	if n := stateEvent(t, st, "m.room.name", "").Content["name"]; n != "Second" {
		t.Fatalf("current name = %v", n)
	}
	sm, err := bob.State(ctxT(t), roomID)
	if err != nil {
		t.Fatalf("mautrix State: %v", err)
	}
	if sm[event.StateRoomName][""] == nil || sm[event.StateRoomName][""].Content.AsRoomName().Name != "Second" {
		t.Fatalf("mautrix state name = %+v", sm[event.StateRoomName])
	}
	if m := sm[event.StateMember][string(bob.UserID)]; m == nil || m.Content.AsMember().Membership != event.MembershipJoin {
		t.Fatalf("mautrix state bob = %+v", m)
	}
	do(t, "GET", roomURL(s, roomID, "state", "m.room.topic", ""), bob.AccessToken, nil).want(t, http.StatusNotFound, "M_NOT_FOUND")
	do(t, "GET", roomURL(s, roomID, "state", "m.room.member", "@nobody:hs.test"), bob.AccessToken, nil).want(t, http.StatusNotFound, "M_NOT_FOUND")
	// r0 spot-check.
	r := do(t, "GET", cs(s, "r0", "rooms", string(roomID), "state", "m.room.name", ""), bob.AccessToken, nil).want(t, 200, "")
	if r.Body["name"] != "Second" {
		t.Fatalf("r0 state = %s", r.Raw)
	}
}

// TestRoomMembersAndJoined: /members with membership, not_membership and at
// filters; /joined_members with profiles; /joined_rooms.
func TestRoomMembersAndJoined(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	carol := newUser(t, s, "carol")
	dave := newUser(t, s, "dave")
	eve := newUser(t, s, "eve")
	ctx := ctxT(t)
	if err := alice.SetDisplayName(ctx, "Alice A"); err != nil {
		t.Fatal(err)
	}
	if err := alice.SetAvatarURL(ctx, id.MustParseContentURI("mxc://hs.test/avatar1")); err != nil {
		t.Fatal(err)
	}
	if err := bob.SetDisplayName(ctx, "Bob B"); err != nil {
		t.Fatal(err)
	}
	roomID := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	join(t, bob, roomID)
	// A point in time with only alice and bob joined.
	at := messages(t, s, alice.AccessToken, roomID, url.Values{"dir": {"b"}, "limit": {"1"}}).Start
	join(t, carol, roomID)
	if _, err := carol.LeaveRoom(ctx, roomID); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.InviteUser(ctx, roomID, &mautrix.ReqInviteUser{UserID: dave.UserID}); err != nil {
		t.Fatal(err)
	}
	join(t, eve, roomID)
	if _, err := alice.BanUser(ctx, roomID, &mautrix.ReqBanUser{UserID: eve.UserID}); err != nil {
		t.Fatal(err)
	}
	a, b, c, d, e := string(alice.UserID), string(bob.UserID), string(carol.UserID), string(dave.UserID), string(eve.UserID)
	wantMap := func(what string, got, want map[string]string) {
		t.Helper()
		if !maps.Equal(got, want) {
			t.Fatalf("%s = %v, want %v", what, got, want)
		}
	}
	tok := alice.AccessToken
	wantMap("/members", membersOf(t, s, tok, roomID, nil), map[string]string{a: "join", b: "join", c: "leave", d: "invite", e: "ban"})
	wantMap("membership=join", membersOf(t, s, tok, roomID, url.Values{"membership": {"join"}}), map[string]string{a: "join", b: "join"})
	wantMap("membership=invite", membersOf(t, s, tok, roomID, url.Values{"membership": {"invite"}}), map[string]string{d: "invite"})
	wantMap("not_membership=leave", membersOf(t, s, tok, roomID, url.Values{"not_membership": {"leave"}}), map[string]string{a: "join", b: "join", d: "invite", e: "ban"})
	wantMap("at=<token before carol>", membersOf(t, s, tok, roomID, url.Values{"at": {at}}), map[string]string{a: "join", b: "join"})
	// mautrix's Members agrees.
	mres, err := bob.Members(ctx, roomID, mautrix.ReqMembers{Membership: event.MembershipBan})
	if err != nil || len(mres.Chunk) != 1 || mres.Chunk[0].GetStateKey() != e {
		t.Fatalf("mautrix Members(ban) = %+v, %v", mres, err)
	}
	// The member events carry the profile.
	if cont := stateContent(t, s, tok, roomID, "m.room.member", a); cont["displayname"] != "Alice A" || cont["avatar_url"] != "mxc://hs.test/avatar1" {
		t.Fatalf("alice's member content = %v", cont)
	}

	r := do(t, "GET", roomURL(s, roomID, "joined_members"), bob.AccessToken, nil).want(t, 200, "")
	jsonEqual(t, r.Raw, map[string]any{"joined": map[string]any{
		a: map[string]any{"display_name": "Alice A", "avatar_url": "mxc://hs.test/avatar1"},
		b: map[string]any{"display_name": "Bob B", "avatar_url": nil},
	}})

	other := mkRoom(t, alice, &mautrix.ReqCreateRoom{})
	left := mkRoom(t, alice, &mautrix.ReqCreateRoom{})
	if _, err := alice.LeaveRoom(ctx, left); err != nil {
		t.Fatal(err)
	}
	if got := joinedRooms(t, alice); len(got) != 2 || !slices.Contains(got, roomID) || !slices.Contains(got, other) {
		t.Fatalf("alice joined_rooms = %v, want %s and %s", got, roomID, other)
	}
	if got := joinedRooms(t, carol); len(got) != 0 {
		t.Fatalf("carol (left) joined_rooms = %v", got)
	}
	if got := joinedRooms(t, dave); len(got) != 0 {
		t.Fatalf("dave (invited) joined_rooms = %v", got)
	}
	r = do(t, "GET", v3(s, "joined_rooms"), eve.AccessToken, nil).want(t, 200, "")
	jsonEqual(t, r.Raw, map[string]any{"joined_rooms": []any{}})

	// Carol left: /members shows the membership list as of her leave.
	wantMap("carol's /members", membersOf(t, s, carol.AccessToken, roomID, nil), map[string]string{a: "join", b: "join", c: "leave"})

	// Only current members may list joined members: not carol (left), dave
	// (invited), eve (banned), nor a stranger, even in a world-readable room.
	do(t, "PUT", roomURL(s, roomID, "state", "m.room.history_visibility", ""), tok,
		map[string]any{"history_visibility": "world_readable"}).want(t, 200, "")
	stranger := newUser(t, s, "stranger")
	for _, who := range []*mautrix.Client{carol, dave, eve, stranger} {
		do(t, "GET", roomURL(s, roomID, "joined_members"), who.AccessToken, nil).want(t, http.StatusForbidden, "M_FORBIDDEN")
	}
	do(t, "GET", roomURL(s, "!unknown:hs.test", "joined_members"), tok, nil).want(t, http.StatusForbidden, "M_FORBIDDEN")
	do(t, "GET", roomURL(s, "not-a-room", "joined_members"), tok, nil).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
}

// TestRoomMessagesPaging: /messages in both directions with limits and from/to
// tokens returns every event exactly once, in the same order both ways.
func TestRoomMessagesPaging(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	tok := alice.AccessToken
	roomID := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	var sent []string
	for i := range 25 {
		sent = append(sent, text(t, alice, roomID, fmt.Sprintf("m%02d", i)))
	}

	// First page backwards from the end.
	p1 := messages(t, s, tok, roomID, url.Values{"dir": {"b"}, "limit": {"7"}})
	if len(p1.Chunk) != 7 || !p1.hasEnd || p1.Start == "" {
		t.Fatalf("first dir=b page: %d events, end present %v, start %q", len(p1.Chunk), p1.hasEnd, p1.Start)
	}
	if got, want := eventIDs(p1.Chunk), reversed(sent[18:]); !slices.Equal(got, want) {
		t.Fatalf("first dir=b page = %v, want the newest 7 newest-first %v", got, want)
	}
	// Default limit is 10.
	if p := messages(t, s, tok, roomID, url.Values{"dir": {"b"}}); len(p.Chunk) != 10 || p.Chunk[0].EventID != sent[24] {
		t.Fatalf("default-limit page has %d events", len(p.Chunk))
	}
	// The next page continues where the first ended.
	p2 := messages(t, s, tok, roomID, url.Values{"dir": {"b"}, "limit": {"7"}, "from": {*p1.End}})
	if got, want := eventIDs(p2.Chunk), reversed(sent[11:18]); !slices.Equal(got, want) {
		t.Fatalf("second dir=b page = %v, want %v", got, want)
	}
	// `to`: from the end back to the first page's end token gives exactly the first page.
	pt := messages(t, s, tok, roomID, url.Values{"dir": {"b"}, "limit": {"100"}, "to": {*p1.End}})
	if got := eventIDs(pt.Chunk); !slices.Equal(got, eventIDs(p1.Chunk)) {
		t.Fatalf("dir=b to=<page1 end> = %v, want %v", got, eventIDs(p1.Chunk))
	}
	// Forwards from page 2's end token: the events after it, oldest first.
	pf := messages(t, s, tok, roomID, url.Values{"dir": {"f"}, "limit": {"3"}, "from": {*p2.End}})
	if got := eventIDs(pf.Chunk); !slices.Equal(got, sent[11:14]) {
		t.Fatalf("dir=f from <page2 end> = %v, want %v", got, sent[11:14])
	}

	// Everything, both ways.
	back := pageAll(t, s, tok, roomID, "b", 7)
	wantNoDuplicates(t, back)
	fwd := pageAll(t, s, tok, roomID, "f", 6)
	wantNoDuplicates(t, fwd)
	if !slices.Equal(eventIDs(fwd), eventIDs(reversed(back))) {
		t.Fatalf("dir=f (%d events) is not dir=b (%d events) reversed", len(fwd), len(back))
	}
	if fwd[0].Type != "m.room.create" {
		t.Fatalf("oldest event is %s, want m.room.create", fwd[0].Type)
	}
	var msgIDs []string
	for _, e := range fwd {
		if e.Type == "m.room.message" {
			msgIDs = append(msgIDs, e.EventID)
		}
		if e.RoomID != string(roomID) {
			t.Fatalf("event without room_id: %+v", e)
		}
	}
	if !slices.Equal(msgIDs, sent) {
		t.Fatalf("messages paged forwards = %v, want %v", msgIDs, sent)
	}

	// mautrix Messages, and r0.
	mres, err := alice.Messages(ctxT(t), roomID, "", "", mautrix.DirectionBackward, nil, 2)
	if err != nil || len(mres.Chunk) != 2 || string(mres.Chunk[0].ID) != sent[24] || mres.End == "" {
		t.Fatalf("mautrix Messages = %+v, %v", mres, err)
	}
	r := do(t, "GET", cs(s, "r0", "rooms", string(roomID), "messages")+"?dir=b&limit=1", tok, nil).want(t, 200, "")
	if ch, _ := r.Body["chunk"].([]any); len(ch) != 1 {
		t.Fatalf("r0 /messages = %s", r.Raw)
	}
}

// TestRoomContextAndEvent: /context returns the event with its neighbours,
// state and usable tokens; /event returns single events and 404s.
func TestRoomContextAndEvent(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	tok := alice.AccessToken
	roomID := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Ctx"})
	var m []string
	for i := range 5 {
		m = append(m, text(t, alice, roomID, fmt.Sprintf("c%d", i)))
	}
	all := pageAll(t, s, tok, roomID, "f", 100)
	idx := slices.Index(eventIDs(all), m[2])

	r := do(t, "GET", roomURL(s, roomID, "context", m[2]), tok, nil).want(t, 200, "")
	var c struct {
		Start        *string `json:"start"`
		End          *string `json:"end"`
		Event        rev     `json:"event"`
		EventsBefore []rev   `json:"events_before"`
		EventsAfter  []rev   `json:"events_after"`
		State        []rev   `json:"state"`
	}
	decodeInto(t, r.Raw, &c)
	if c.Event.EventID != m[2] || c.Event.body() != "c2" {
		t.Fatalf("context event = %+v", c.Event)
	}
	if got := eventIDs(c.EventsAfter); !slices.Equal(got, m[3:]) {
		t.Fatalf("events_after = %v, want %v", got, m[3:])
	}
	if len(c.EventsBefore) < 2 || c.EventsBefore[0].EventID != m[1] || c.EventsBefore[1].EventID != m[0] {
		t.Fatalf("events_before = %v, want newest-first starting %s, %s", eventIDs(c.EventsBefore), m[1], m[0])
	}
	if len(c.EventsBefore)+len(c.EventsAfter) > 10 {
		t.Fatalf("context returned %d events around, default limit is 10", len(c.EventsBefore)+len(c.EventsAfter))
	}
	if c.Start == nil || c.End == nil || *c.Start == "" || *c.End == "" {
		t.Fatalf("context tokens start=%v end=%v", c.Start, c.End)
	}
	stateKeys := map[string]bool{}
	for _, e := range c.State {
		stateKeys[e.key()] = true
	}
	if !stateKeys["m.room.create|"] || !stateKeys["m.room.name|"] || !stateKeys["m.room.member|"+string(alice.UserID)] {
		t.Fatalf("context state lacks create/name/member: %v", slices.Sorted(maps.Keys(stateKeys)))
	}
	// The tokens continue the timeline: nothing after the end token; the start
	// token leads back through exactly the remaining older events.
	after := messages(t, s, tok, roomID, url.Values{"dir": {"f"}, "from": {*c.End}, "limit": {"10"}})
	if len(after.Chunk) != 0 {
		t.Fatalf("events after context end = %v", eventIDs(after.Chunk))
	}
	var older []rev
	from := *c.Start
	for i := 0; ; i++ {
		if i > 50 {
			t.Fatal("paging back from the context start token does not end")
		}
		p := messages(t, s, tok, roomID, url.Values{"dir": {"b"}, "from": {from}, "limit": {"3"}})
		older = append(older, p.Chunk...)
		if !p.hasEnd {
			break
		}
		from = *p.End
	}
	gotBefore := append(eventIDs(c.EventsBefore), eventIDs(older)...)
	if want := eventIDs(reversed(all[:idx])); !slices.Equal(gotBefore, want) {
		t.Fatalf("events_before + paging back from start = %v, want %v", gotBefore, want)
	}
	// limit applies to before+after together.
	lim := do(t, "GET", roomURL(s, roomID, "context", m[2])+"?limit=2", tok, nil).want(t, 200, "")
	var cl struct {
		Event        rev   `json:"event"`
		EventsBefore []rev `json:"events_before"`
		EventsAfter  []rev `json:"events_after"`
	}
	decodeInto(t, lim.Raw, &cl)
	if cl.Event.EventID != m[2] || len(cl.EventsBefore)+len(cl.EventsAfter) > 2 {
		t.Fatalf("context limit=2: event %s, %d before, %d after", cl.Event.EventID, len(cl.EventsBefore), len(cl.EventsAfter))
	}
	// mautrix Context.
	mc, err := alice.Context(ctxT(t), roomID, id.EventID(m[4]), nil, 4)
	if err != nil || string(mc.Event.ID) != m[4] || len(mc.EventsAfter) != 0 || len(mc.EventsBefore) == 0 || string(mc.EventsBefore[0].ID) != m[3] {
		t.Fatalf("mautrix Context = %+v, %v", mc, err)
	}
	do(t, "GET", roomURL(s, roomID, "context", "$doesnotexist"), tok, nil).want(t, http.StatusNotFound, "M_NOT_FOUND")

	// /event.
	ev, err := alice.GetEvent(ctxT(t), roomID, id.EventID(m[0]))
	if err != nil || string(ev.ID) != m[0] || ev.Sender != alice.UserID || ev.Type != event.EventMessage || ev.RoomID != roomID {
		t.Fatalf("mautrix GetEvent = %+v, %v", ev, err)
	}
	getEvent(t, s, tok, roomID, "$doesnotexist").want(t, http.StatusNotFound, "M_NOT_FOUND")
	// An event ID of another room is not found through this room.
	other := mkRoom(t, alice, &mautrix.ReqCreateRoom{})
	getEvent(t, s, tok, other, m[0]).want(t, http.StatusNotFound, "M_NOT_FOUND")
}

// TestRoomHistoryVisibility: joined / shared / left / non-member /
// world_readable rules for /messages, /event, /state, /members, /context.
func TestRoomHistoryVisibility(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	carol := newUser(t, s, "carol")
	withVisibility := func(vis string) id.RoomID {
		return mkRoomRaw(t, s, alice.AccessToken, map[string]any{
			"preset": "public_chat",
			"initial_state": []any{map[string]any{"type": "m.room.history_visibility", "state_key": "",
				"content": map[string]any{"history_visibility": vis}}},
		})
	}

	t.Run("joined", func(t *testing.T) {
		roomID := withVisibility("joined")
		before := text(t, alice, roomID, "before")
		join(t, bob, roomID)
		after := text(t, alice, roomID, "after")
		if got := messageBodies(pageAll(t, s, bob.AccessToken, roomID, "b", 5)); !slices.Equal(got, []string{"after"}) {
			t.Fatalf("bob sees messages %v, want only [after]", got)
		}
		getEvent(t, s, bob.AccessToken, roomID, before).want(t, http.StatusNotFound, "M_NOT_FOUND")
		eventOK(t, s, bob.AccessToken, roomID, after)
		do(t, "GET", roomURL(s, roomID, "context", before), bob.AccessToken, nil).want(t, http.StatusNotFound, "M_NOT_FOUND")
		if got := messageBodies(pageAll(t, s, alice.AccessToken, roomID, "b", 5)); !slices.Equal(got, []string{"after", "before"}) {
			t.Fatalf("alice sees %v", got)
		}
	})

	t.Run("shared", func(t *testing.T) {
		roomID := withVisibility("shared")
		before := text(t, alice, roomID, "before")
		join(t, bob, roomID)
		text(t, alice, roomID, "after")
		if got := messageBodies(pageAll(t, s, bob.AccessToken, roomID, "b", 5)); !slices.Equal(got, []string{"after", "before"}) {
			t.Fatalf("bob sees messages %v, want [after before]", got)
		}
		if e := eventOK(t, s, bob.AccessToken, roomID, before); e.body() != "before" {
			t.Fatalf("event = %+v", e)
		}
	})

	t.Run("left", func(t *testing.T) {
		roomID := withVisibility("shared")
		join(t, bob, roomID)
		during := text(t, alice, roomID, "during")
		if _, err := bob.LeaveRoom(ctxT(t), roomID); err != nil {
			t.Fatal(err)
		}
		afterLeave := text(t, alice, roomID, "after leave")
		do(t, "PUT", roomURL(s, roomID, "state", "m.room.name", ""), alice.AccessToken, map[string]any{"name": "renamed after leave"}).want(t, 200, "")
		if got := messageBodies(pageAll(t, s, bob.AccessToken, roomID, "b", 5)); !slices.Equal(got, []string{"during"}) {
			t.Fatalf("left user sees %v, want only [during]", got)
		}
		eventOK(t, s, bob.AccessToken, roomID, during)
		getEvent(t, s, bob.AccessToken, roomID, afterLeave).want(t, http.StatusNotFound, "M_NOT_FOUND")
		// State as of the leave: no name then.
		do(t, "GET", roomURL(s, roomID, "state", "m.room.name", ""), bob.AccessToken, nil).want(t, http.StatusNotFound, "M_NOT_FOUND")
		for _, e := range fullState(t, s, bob.AccessToken, roomID) {
			if e.Type == "m.room.name" {
				t.Fatalf("left user's /state includes a name set after the leave: %+v", e)
			}
		}
	})

	t.Run("non-member", func(t *testing.T) {
		roomID := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "secret"})
		ev := text(t, alice, roomID, "private")
		tok := carol.AccessToken
		do(t, "GET", roomURL(s, roomID, "state"), tok, nil).want(t, http.StatusForbidden, "M_FORBIDDEN")
		do(t, "GET", roomURL(s, roomID, "state", "m.room.name", ""), tok, nil).want(t, http.StatusForbidden, "M_FORBIDDEN")
		do(t, "GET", roomURL(s, roomID, "messages")+"?dir=b", tok, nil).want(t, http.StatusForbidden, "M_FORBIDDEN")
		do(t, "GET", roomURL(s, roomID, "members"), tok, nil).want(t, http.StatusForbidden, "M_FORBIDDEN")
		do(t, "GET", roomURL(s, roomID, "joined_members"), tok, nil).want(t, http.StatusForbidden, "M_FORBIDDEN")
		getEvent(t, s, tok, roomID, ev).want(t, http.StatusNotFound, "M_NOT_FOUND")
		// An invited user may not read a "shared" room's history yet either.
		if _, err := alice.InviteUser(ctxT(t), roomID, &mautrix.ReqInviteUser{UserID: carol.UserID}); err != nil {
			t.Fatal(err)
		}
		getEvent(t, s, tok, roomID, ev).want(t, http.StatusNotFound, "M_NOT_FOUND")
	})

	t.Run("world_readable", func(t *testing.T) {
		roomID := mkRoomRaw(t, s, alice.AccessToken, map[string]any{
			"preset": "private_chat",
			"initial_state": []any{map[string]any{"type": "m.room.history_visibility", "state_key": "",
				"content": map[string]any{"history_visibility": "world_readable"}}},
		})
		ev := text(t, alice, roomID, "for everyone")
		if got := messageBodies(pageAll(t, s, carol.AccessToken, roomID, "b", 5)); !slices.Equal(got, []string{"for everyone"}) {
			t.Fatalf("non-member reads %v from a world_readable room", got)
		}
		if e := eventOK(t, s, carol.AccessToken, roomID, ev); e.body() != "for everyone" {
			t.Fatalf("event = %+v", e)
		}
		// Still not joinable (invite-only) and carol cannot post.
		do(t, "POST", roomURL(s, roomID, "join"), carol.AccessToken, map[string]any{}).want(t, http.StatusForbidden, "M_FORBIDDEN")
	})
}

// TestRoomProfilePropagation: a displayname/avatar change updates the user's
// member event in every joined room, and only those.
func TestRoomProfilePropagation(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	ctx := ctxT(t)
	r1 := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	r2 := mkRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	join(t, alice, r2)
	r3 := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	join(t, bob, r3)
	if _, err := alice.LeaveRoom(ctx, r3); err != nil {
		t.Fatal(err)
	}
	a := string(alice.UserID)
	do(t, "PUT", v3(s, "profile", a, "displayname"), alice.AccessToken, map[string]any{"displayname": "Alice Renamed"}).want(t, 200, "")
	for _, roomID := range []id.RoomID{r1, r2} {
		c := stateContent(t, s, alice.AccessToken, roomID, "m.room.member", a)
		if c["displayname"] != "Alice Renamed" || c["membership"] != "join" {
			t.Fatalf("alice's member event in %s = %v", roomID, c)
		}
		jm, err := alice.JoinedMembers(ctx, roomID)
		if err != nil || jm.Joined[alice.UserID].DisplayName != "Alice Renamed" {
			t.Fatalf("joined_members in %s = %+v, %v", roomID, jm, err)
		}
	}
	if c := stateContent(t, s, bob.AccessToken, r3, "m.room.member", a); c["membership"] != "leave" || c["displayname"] == "Alice Renamed" {
		t.Fatalf("left room's member event changed: %v", c)
	}
	if err := alice.SetAvatarURL(ctx, id.MustParseContentURI("mxc://hs.test/newavatar")); err != nil {
		t.Fatal(err)
	}
	c := stateContent(t, s, bob.AccessToken, r2, "m.room.member", a)
	if c["avatar_url"] != "mxc://hs.test/newavatar" || c["displayname"] != "Alice Renamed" {
		t.Fatalf("after avatar change alice's member content = %v", c)
	}
	// A new room picks up the current profile.
	r4 := mkRoom(t, alice, &mautrix.ReqCreateRoom{})
	if c := stateContent(t, s, alice.AccessToken, r4, "m.room.member", a); c["displayname"] != "Alice Renamed" || c["avatar_url"] != "mxc://hs.test/newavatar" {
		t.Fatalf("new room member content = %v", c)
	}
}

// TestMessagesEndWhenEventsReturned: a /messages page holding events has an
// end token even when it reaches the start of the room (as Synapse, and as
// Complement's TestRoomImageRoundtrip expects with a contains_url filter);
// only an empty page at the start has none.
func TestMessagesEndWhenEventsReturned(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{})
	text(t, alice, room, "test")
	file := map[string]any{"msgtype": "m.file", "body": "test.png", "url": "mxc://hs.test/abc"}
	if _, err := alice.SendMessageEvent(ctxT(t), room, event.EventMessage, file); err != nil {
		t.Fatal(err)
	}
	for _, q := range []url.Values{
		{"dir": {"b"}, "filter": {`{"contains_url":true}`}},
		{"dir": {"b"}, "limit": {"100"}},
		{"dir": {"f"}, "limit": {"100"}},
	} {
		p := messages(t, s, alice.AccessToken, room, q)
		if len(p.Chunk) == 0 || p.End == nil {
			t.Fatalf("%s: %d events, end %v; want events and an end", q.Encode(), len(p.Chunk), p.End)
		}
		if q.Get("filter") != "" && (len(p.Chunk) != 1 || p.Chunk[0].Content["url"] != file["url"]) {
			t.Fatalf("contains_url page = %+v", p.Chunk)
		}
		q.Set("from", *p.End)
		if next := messages(t, s, alice.AccessToken, room, q); len(next.Chunk) != 0 || next.End != nil {
			t.Fatalf("%s: page after the last: %d events, end %v", q.Encode(), len(next.Chunk), next.End)
		}
	}
}
