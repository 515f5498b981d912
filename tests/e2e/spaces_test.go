package e2e

import (
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"matrixhs/tests/testserver"
)

// hierarchyPage is one /hierarchy response as the tests read it.
type hierarchyPage struct {
	Rooms []struct {
		RoomID         string   `json:"room_id"`
		Name           string   `json:"name"`
		RoomType       string   `json:"room_type"`
		JoinRule       string   `json:"join_rule"`
		NumJoined      int      `json:"num_joined_members"`
		WorldReadable  *bool    `json:"world_readable"`
		GuestCanJoin   *bool    `json:"guest_can_join"`
		AllowedRoomIDs []string `json:"allowed_room_ids"`
		ChildrenState  []struct {
			Type           string         `json:"type"`
			StateKey       string         `json:"state_key"`
			Sender         string         `json:"sender"`
			Content        map[string]any `json:"content"`
			OriginServerTS int64          `json:"origin_server_ts"`
		} `json:"children_state"`
	} `json:"rooms"`
	NextBatch string `json:"next_batch"`
}

func (p hierarchyPage) ids() []string {
	out := []string{}
	for _, r := range p.Rooms {
		out = append(out, r.RoomID)
	}
	return out
}

func hierarchy(t *testing.T, s *testserver.Server, token string, room id.RoomID, q url.Values) hierarchyPage {
	t.Helper()
	r := do(t, "GET", cs(s, "v1", "rooms", string(room), "hierarchy")+"?"+q.Encode(), token, nil).want(t, 200, "")
	var p hierarchyPage
	decodeInto(t, r.Raw, &p)
	if p.Rooms == nil {
		t.Fatalf("hierarchy without rooms array: %s", r.Raw)
	}
	return p
}

func wantIDs(t *testing.T, what string, got []string, want ...id.RoomID) {
	t.Helper()
	w := []string{}
	for _, r := range want {
		w = append(w, string(r))
	}
	if !slices.Equal(got, w) {
		t.Fatalf("%s = %v, want %v", what, got, w)
	}
}

// addChild sets an m.space.child event in space.
func addChild(t *testing.T, s *testserver.Server, token string, space, child id.RoomID, content map[string]any) {
	t.Helper()
	do(t, "PUT", roomURL(s, space, "state", "m.space.child", string(child)), token, content).want(t, 200, "")
	time.Sleep(2 * time.Millisecond) // distinct origin_server_ts for the ordering
}

// TestSpaceHierarchy walks a space: ordering (order, then timestamp),
// depth-first into sub-spaces, visibility (public, invite-only, restricted,
// invited), suggested_only, max_depth and pagination.
func TestSpaceHierarchy(t *testing.T) {
	s := start(t, nil)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	space := mkRoomRaw(t, s, alice.AccessToken, map[string]any{
		"preset": "public_chat", "name": "The Space", "creation_content": map[string]any{"type": "m.space"},
	})
	pub := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Public"})
	private := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Private"})
	restricted := mkRoomRaw(t, s, alice.AccessToken, map[string]any{
		"preset": "private_chat", "name": "Members only",
		"initial_state": []any{map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{
			"join_rule": "restricted", "allow": []any{map[string]any{"type": "m.room_membership", "room_id": string(space)}},
		}}},
	})
	sub := mkRoomRaw(t, s, alice.AccessToken, map[string]any{
		"preset": "public_chat", "name": "Sub", "creation_content": map[string]any{"type": "m.space"},
	})
	deep := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Deep"})
	suggested := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Suggested"})
	removed := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Removed"})

	via := []string{"hs.test"}
	// Ordered children first (by order), then by the child event's timestamp.
	addChild(t, s, alice.AccessToken, space, sub, map[string]any{"via": via})
	addChild(t, s, alice.AccessToken, space, pub, map[string]any{"via": via, "order": "b"})
	addChild(t, s, alice.AccessToken, space, private, map[string]any{"via": via, "order": "a"})
	addChild(t, s, alice.AccessToken, space, restricted, map[string]any{"via": via, "order": "c"})
	addChild(t, s, alice.AccessToken, space, suggested, map[string]any{"via": via, "suggested": true, "order": "\x01bad"})
	addChild(t, s, alice.AccessToken, space, removed, map[string]any{"via": []string{}}) // empty via: not a child
	addChild(t, s, alice.AccessToken, sub, deep, map[string]any{"via": via})

	// Alice sees everything, depth-first: sub's child right after sub.
	all := hierarchy(t, s, alice.AccessToken, space, nil)
	wantIDs(t, "alice's hierarchy", all.ids(), space, private, pub, restricted, sub, deep, suggested)
	root := all.Rooms[0]
	if root.Name != "The Space" || root.RoomType != "m.space" || root.JoinRule != "public" || root.NumJoined != 1 ||
		root.WorldReadable == nil || root.GuestCanJoin == nil {
		t.Fatalf("root entry = %+v", root)
	}
	var childKeys []string
	for _, c := range root.ChildrenState {
		if c.Type != "m.space.child" || c.Sender != string(alice.UserID) || c.OriginServerTS == 0 || c.Content["via"] == nil {
			t.Fatalf("children_state entry = %+v", c)
		}
		childKeys = append(childKeys, c.StateKey)
	}
	slices.Sort(childKeys)
	wantKeys := []string{string(sub), string(pub), string(private), string(restricted), string(suggested)}
	slices.Sort(wantKeys)
	if !slices.Equal(childKeys, wantKeys) {
		t.Fatalf("children_state keys = %v, want %v", childKeys, wantKeys)
	}
	if all.Rooms[1].Name != "Private" || all.Rooms[1].JoinRule != "invite" || len(all.Rooms[1].ChildrenState) != 0 {
		t.Fatalf("private entry = %+v", all.Rooms[1])
	}
	if all.NextBatch != "" {
		t.Fatalf("single page has next_batch %q", all.NextBatch)
	}

	// Bob, in none of the rooms, sees what he could join: not the
	// invite-only room, not the restricted one (he is not in the space).
	wantIDs(t, "bob's hierarchy", hierarchy(t, s, bob.AccessToken, space, nil).ids(), space, pub, sub, deep, suggested)

	// suggested_only walks only suggested children (the root is always there).
	sug := hierarchy(t, s, bob.AccessToken, space, url.Values{"suggested_only": {"true"}})
	wantIDs(t, "suggested_only", sug.ids(), space, suggested)
	if len(sug.Rooms[0].ChildrenState) != 1 || sug.Rooms[0].ChildrenState[0].StateKey != string(suggested) {
		t.Fatalf("suggested_only children_state = %+v", sug.Rooms[0].ChildrenState)
	}

	// max_depth bounds the walk; the sub-space still lists its children.
	d1 := hierarchy(t, s, bob.AccessToken, space, url.Values{"max_depth": {"1"}})
	wantIDs(t, "max_depth=1", d1.ids(), space, pub, sub, suggested)
	if len(d1.Rooms[2].ChildrenState) != 1 || d1.Rooms[2].ChildrenState[0].StateKey != string(deep) {
		t.Fatalf("sub-space at max depth: children_state = %+v", d1.Rooms[2].ChildrenState)
	}
	wantIDs(t, "max_depth=0", hierarchy(t, s, bob.AccessToken, space, url.Values{"max_depth": {"0"}}).ids(), space)

	// Pagination with limit 2, through mautrix.
	var paged []string
	pages := 0
	req := &mautrix.ReqHierarchy{Limit: 2}
	for {
		resp, err := bob.Hierarchy(ctxT(t), space, req)
		if err != nil {
			t.Fatalf("Hierarchy: %v", err)
		}
		if len(resp.Rooms) > 2 {
			t.Fatalf("page of %d rooms with limit 2", len(resp.Rooms))
		}
		for _, r := range resp.Rooms {
			paged = append(paged, string(r.RoomID))
		}
		pages++
		if resp.NextBatch == "" || pages > 10 {
			break
		}
		req.From = resp.NextBatch
	}
	wantIDs(t, "paged hierarchy", paged, space, pub, sub, deep, suggested)
	if pages != 3 {
		t.Fatalf("%d pages, want 3", pages)
	}
	first := hierarchy(t, s, bob.AccessToken, space, url.Values{"limit": {"2"}})
	if first.NextBatch == "" {
		t.Fatal("no next_batch on a partial page")
	}
	do(t, "GET", cs(s, "v1", "rooms", string(space), "hierarchy")+"?"+url.Values{"limit": {"2"}, "from": {first.NextBatch}, "max_depth": {"1"}}.Encode(),
		bob.AccessToken, nil).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	do(t, "GET", cs(s, "v1", "rooms", string(space), "hierarchy")+"?from=bogus", bob.AccessToken, nil).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	do(t, "GET", cs(s, "v1", "rooms", string(space), "hierarchy")+"?limit=0", bob.AccessToken, nil).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	do(t, "GET", cs(s, "v1", "rooms", string(space), "hierarchy")+"?max_depth=-1", bob.AccessToken, nil).want(t, http.StatusBadRequest, "M_INVALID_PARAM")

	// A root the user may not preview, or that does not exist: 403.
	do(t, "GET", cs(s, "v1", "rooms", string(private), "hierarchy"), bob.AccessToken, nil).want(t, http.StatusForbidden, "M_FORBIDDEN")
	do(t, "GET", cs(s, "v1", "rooms", "!nope:hs.test", "hierarchy"), bob.AccessToken, nil).want(t, http.StatusForbidden, "M_FORBIDDEN")
	do(t, "GET", cs(s, "v1", "rooms", string(space), "hierarchy"), "", nil).want(t, http.StatusUnauthorized, "M_MISSING_TOKEN")

	// Joining the space admits bob to the restricted room; an invite
	// reveals the invite-only one.
	join(t, bob, space)
	if _, err := alice.InviteUser(ctxT(t), private, &mautrix.ReqInviteUser{UserID: bob.UserID}); err != nil {
		t.Fatal(err)
	}
	now := hierarchy(t, s, bob.AccessToken, space, nil)
	wantIDs(t, "bob's hierarchy after joining and an invite", now.ids(), space, private, pub, restricted, sub, deep, suggested)
	if r := now.Rooms[3]; r.JoinRule != "restricted" || !slices.Equal(r.AllowedRoomIDs, []string{string(space)}) {
		t.Fatalf("restricted entry = %+v", r)
	}
	if now.Rooms[0].NumJoined != 2 {
		t.Fatalf("num_joined_members = %d after bob joined", now.Rooms[0].NumJoined)
	}
	wantIDs(t, "restricted room's hierarchy", hierarchy(t, s, bob.AccessToken, restricted, nil).ids(), restricted)

	// A cycle (sub lists the space) does not loop.
	addChild(t, s, alice.AccessToken, sub, space, map[string]any{"via": via})
	wantIDs(t, "hierarchy with a cycle", hierarchy(t, s, alice.AccessToken, sub, nil).ids(), sub, deep, space, private, pub, restricted, suggested)
}

// TestSpaceHierarchyFollowsOnlySpaces: m.space.child events count only in
// rooms whose type is m.space (Complement's TestClientSpacesSummary: a
// link from an ordinary room is ignored); an ordinary room lists no
// children, also as the root.
func TestSpaceHierarchyFollowsOnlySpaces(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	root := mkRoomRaw(t, s, alice.AccessToken, map[string]any{
		"preset": "public_chat", "name": "Root", "creation_content": map[string]any{"type": "m.space"},
	})
	r2 := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "R2"})
	r5 := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "R5"})
	via := map[string]any{"via": []string{"hs.test"}}
	addChild(t, s, alice.AccessToken, root, r2, via)
	addChild(t, s, alice.AccessToken, r2, r5, via) // ignored: R2 is not a space

	h := hierarchy(t, s, alice.AccessToken, root, nil)
	wantIDs(t, "hierarchy", h.ids(), root, r2)
	if len(h.Rooms[1].ChildrenState) != 0 {
		t.Fatalf("ordinary room lists children: %+v", h.Rooms[1].ChildrenState)
	}
	own := hierarchy(t, s, alice.AccessToken, r2, nil)
	wantIDs(t, "ordinary room as root", own.ids(), r2)
	if len(own.Rooms[0].ChildrenState) != 0 {
		t.Fatalf("ordinary root lists children: %+v", own.Rooms[0].ChildrenState)
	}
}

// TestRoomSummary previews rooms: public ones for anyone (with or without
// a token, by ID or alias), private ones only for members.
func TestRoomSummary(t *testing.T) {
	s := start(t, nil)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	pub := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Lobby", Topic: "Say hi", RoomAliasName: "lobby"})
	private := mkRoomRaw(t, s, alice.AccessToken, map[string]any{
		"preset": "private_chat", "name": "Secret", "creation_content": map[string]any{"type": "m.space"},
		"initial_state": []any{map[string]any{"type": "m.room.encryption", "state_key": "", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}},
	})
	summary := func(token, target string) *resp {
		return do(t, "GET", cs(s, "v1", "room_summary", target), token, nil)
	}

	r := summary(bob.AccessToken, string(pub)).want(t, 200, "")
	if r.Body["room_id"] != string(pub) || r.Body["name"] != "Lobby" || r.Body["topic"] != "Say hi" || r.Body["join_rule"] != "public" ||
		r.Body["membership"] != "leave" || r.Body["room_version"] != "11" || r.Body["num_joined_members"] != float64(1) ||
		r.Body["canonical_alias"] != "#lobby:hs.test" || r.Body["world_readable"] != false || r.Body["guest_can_join"] != false {
		t.Fatalf("summary for a non-member: %s", r.Raw)
	}
	if _, ok := r.Body["encryption"]; ok {
		t.Fatalf("unencrypted room with encryption: %s", r.Raw)
	}
	// By alias, and without a token (no membership then).
	r = summary("", "#lobby:hs.test").want(t, 200, "")
	if r.Body["room_id"] != string(pub) {
		t.Fatalf("summary by alias: %s", r.Raw)
	}
	if _, ok := r.Body["membership"]; ok {
		t.Fatalf("unauthenticated summary has membership: %s", r.Raw)
	}
	// The member's view: membership, type and encryption.
	r = summary(alice.AccessToken, string(private)).want(t, 200, "")
	if r.Body["membership"] != "join" || r.Body["room_type"] != "m.space" || r.Body["encryption"] != "m.megolm.v1.aes-sha2" ||
		r.Body["join_rule"] != "invite" {
		t.Fatalf("member's summary of a private room: %s", r.Raw)
	}
	// Private rooms are 404 for others, as unknown rooms and aliases.
	summary(bob.AccessToken, string(private)).want(t, http.StatusNotFound, "M_NOT_FOUND")
	summary("", string(private)).want(t, http.StatusNotFound, "M_NOT_FOUND")
	summary(bob.AccessToken, "!nope:hs.test").want(t, http.StatusNotFound, "M_NOT_FOUND")
	summary(bob.AccessToken, "#nope:hs.test").want(t, http.StatusNotFound, "M_NOT_FOUND")
	summary(bob.AccessToken, "lobby").want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	// An invite lets bob preview it.
	if _, err := alice.InviteUser(ctxT(t), private, &mautrix.ReqInviteUser{UserID: bob.UserID}); err != nil {
		t.Fatal(err)
	}
	r = summary(bob.AccessToken, string(private)).want(t, 200, "")
	if r.Body["membership"] != "invite" || r.Body["name"] != "Secret" {
		t.Fatalf("invitee's summary: %s", r.Raw)
	}

	// mautrix calls MSC3266's unstable path.
	res, err := bob.GetRoomSummary(ctxT(t), "#lobby:hs.test")
	if err != nil {
		t.Fatalf("GetRoomSummary: %v", err)
	}
	if res.RoomID != pub || res.Name != "Lobby" || res.UnstableRoomVersion != "11" || res.Membership != "leave" {
		t.Fatalf("mautrix summary = %+v", res)
	}
}
