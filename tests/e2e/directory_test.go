package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"matrixhs/internal/accounts"
	"matrixhs/tests/testserver"
)

// Room aliases, the room directory, /publicRooms and profile propagation.

// dirAdmin creates a server admin and logs it in.
func dirAdmin(t *testing.T, s *testserver.Server, localpart string) *mautrix.Client {
	t.Helper()
	_, err := s.Accounts.Register(ctxT(t), accounts.Registration{Localpart: localpart, Password: testPassword, Admin: true, InhibitLogin: true})
	if err != nil {
		t.Fatalf("creating admin %s: %v", localpart, err)
	}
	return login(t, s, localpart, testPassword, "", "")
}

// dirAliasURL is /_matrix/client/{version}/directory/room/{alias}.
func dirAliasURL(s *testserver.Server, version, alias string) string {
	return cs(s, version, "directory", "room", alias)
}

// dirVisURL is /_matrix/client/v3/directory/list/room/{roomId}.
func dirVisURL(s *testserver.Server, roomID id.RoomID) string {
	return v3(s, "directory", "list", "room", string(roomID))
}

// dirPutState sends a state event with an empty state key (wants 200).
func dirPutState(t *testing.T, s *testserver.Server, token string, roomID id.RoomID, typ string, content any) {
	t.Helper()
	do(t, "PUT", roomURL(s, roomID, "state", typ, ""), token, content).want(t, 200, "")
}

// dirResolve resolves an alias that must exist and checks the response shape.
func dirResolve(t *testing.T, s *testserver.Server, cli *mautrix.Client, alias string) id.RoomID {
	t.Helper()
	res, err := cli.ResolveAlias(ctxT(t), id.RoomAlias(alias))
	if err != nil {
		t.Fatalf("resolving %s: %v", alias, err)
	}
	if !reflect.DeepEqual(res.Servers, []string{s.Config.Server.Name}) {
		t.Fatalf("servers for %s = %v, want [%s]", alias, res.Servers, s.Config.Server.Name)
	}
	return res.RoomID
}

// dirAliases lists a room's local aliases through mautrix.
func dirAliases(t *testing.T, cli *mautrix.Client, roomID id.RoomID) []string {
	t.Helper()
	res, err := cli.GetAliases(ctxT(t), roomID)
	if err != nil {
		t.Fatalf("GET aliases of %s: %v", roomID, err)
	}
	out := []string{}
	for _, a := range res.Aliases {
		out = append(out, string(a))
	}
	return out
}

// TestAliasRoundTrip: an alias created with PUT resolves (with and without a
// token, under v3 and r0), is listed on the room, joins work through it, and
// it is gone after DELETE.
func TestAliasRoundTrip(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	roomID := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	alias := "#team:" + s.Config.Server.Name

	if got := dirAliases(t, alice, roomID); len(got) != 0 {
		t.Fatalf("new room has aliases %v", got)
	}
	r := do(t, "GET", roomURL(s, roomID, "aliases"), alice.AccessToken, nil).want(t, 200, "")
	if string(r.Raw) != `{"aliases":[]}` {
		t.Fatalf("empty alias list = %s, want an empty array", r.Raw)
	}
	if _, err := alice.CreateAlias(ctxT(t), id.RoomAlias(alias), roomID); err != nil {
		t.Fatalf("CreateAlias: %v", err)
	}
	if got := dirResolve(t, s, alice, alias); got != roomID {
		t.Fatalf("alias resolves to %s, want %s", got, roomID)
	}
	// Resolving needs no access token; r0 serves the same endpoint.
	for _, version := range []string{"v3", "r0"} {
		r := do(t, "GET", dirAliasURL(s, version, alias), "", nil).want(t, 200, "")
		if r.Body["room_id"] != string(roomID) {
			t.Fatalf("%s unauthenticated resolve = %s", version, r.Raw)
		}
	}
	if got := dirAliases(t, alice, roomID); !reflect.DeepEqual(got, []string{alias}) {
		t.Fatalf("room aliases = %v, want [%s]", got, alias)
	}
	res, err := bob.JoinRoom(ctxT(t), alias, nil)
	if err != nil || res.RoomID != roomID {
		t.Fatalf("join by alias: %v, %v", res, err)
	}
	if _, err := alice.DeleteAlias(ctxT(t), id.RoomAlias(alias)); err != nil {
		t.Fatalf("DeleteAlias: %v", err)
	}
	_, err = alice.ResolveAlias(ctxT(t), id.RoomAlias(alias))
	wantMatrixErr(t, err, http.StatusNotFound, "M_NOT_FOUND")
	if got := dirAliases(t, alice, roomID); len(got) != 0 {
		t.Fatalf("aliases after delete = %v", got)
	}
	_, err = alice.DeleteAlias(ctxT(t), id.RoomAlias(alias))
	wantMatrixErr(t, err, http.StatusNotFound, "M_NOT_FOUND")
	// The name is free again.
	if _, err := bob.CreateAlias(ctxT(t), id.RoomAlias(alias), roomID); err != nil {
		t.Fatalf("re-creating a deleted alias: %v", err)
	}
}

// TestAliasErrors: malformed and foreign aliases, taken aliases, unknown
// rooms, non-members and missing parameters are refused as the spec says.
func TestAliasErrors(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	roomID := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	tok := alice.AccessToken
	local := "#taken:" + s.Config.Server.Name
	if _, err := alice.CreateAlias(ctxT(t), id.RoomAlias(local), roomID); err != nil {
		t.Fatal(err)
	}

	put := func(alias, token string, body any) *resp {
		return do(t, "PUT", dirAliasURL(s, "v3", alias), token, body)
	}
	roomBody := map[string]any{"room_id": roomID}
	put("#x:other.example", tok, roomBody).want(t, 400, "M_INVALID_PARAM")
	put("no-sigil:"+s.Config.Server.Name, tok, roomBody).want(t, 400, "M_INVALID_PARAM")
	put("#nocolon", tok, roomBody).want(t, 400, "M_INVALID_PARAM")
	put("#:"+s.Config.Server.Name, tok, roomBody).want(t, 400, "M_INVALID_PARAM")
	put("#has space:"+s.Config.Server.Name, tok, roomBody).want(t, 400, "M_INVALID_PARAM")
	put(local, tok, roomBody).want(t, 409, "M_UNKNOWN")
	// Taken even for another room, and by another user.
	other := mkRoom(t, bob, &mautrix.ReqCreateRoom{})
	put(local, bob.AccessToken, map[string]any{"room_id": other}).want(t, 409, "M_UNKNOWN")
	put("#new:"+s.Config.Server.Name, tok, map[string]any{}).want(t, 400, "M_MISSING_PARAM")
	put("#new:"+s.Config.Server.Name, tok, map[string]any{"room_id": "not-a-room"}).want(t, 400, "M_INVALID_PARAM")
	put("#new:"+s.Config.Server.Name, tok, map[string]any{"room_id": "!nope:" + s.Config.Server.Name}).want(t, 404, "M_NOT_FOUND")
	put("#new:"+s.Config.Server.Name, tok, "[]").want(t, 400, "M_BAD_JSON")
	put("#new:"+s.Config.Server.Name, "", roomBody).want(t, 401, "M_MISSING_TOKEN")
	// Bob is not in alice's room.
	put("#bobs:"+s.Config.Server.Name, bob.AccessToken, roomBody).want(t, 403, "M_FORBIDDEN")
	// An admin may alias a room without being in it.
	admin := dirAdmin(t, s, "root")
	put("#admins:"+s.Config.Server.Name, admin.AccessToken, roomBody).want(t, 200, "")
	if got := dirResolve(t, s, alice, "#admins:"+s.Config.Server.Name); got != roomID {
		t.Fatalf("admin alias resolves to %s", got)
	}

	get := func(alias string) *resp { return do(t, "GET", dirAliasURL(s, "v3", alias), tok, nil) }
	get("#nope:"+s.Config.Server.Name).want(t, 404, "M_NOT_FOUND")
	// Another server's alias is asked of that server: one that cannot be
	// reached is 502, as in Synapse.
	get("#remote:other.example").want(t, 502, "M_UNKNOWN")
	get("nonsense").want(t, 400, "M_INVALID_PARAM")

	del := func(alias, token string) *resp { return do(t, "DELETE", dirAliasURL(s, "v3", alias), token, nil) }
	del("#nope:"+s.Config.Server.Name, tok).want(t, 404, "M_NOT_FOUND")
	del("#remote:other.example", tok).want(t, 404, "M_NOT_FOUND")
	del("nonsense", tok).want(t, 400, "M_INVALID_PARAM")
	del(local, "").want(t, 401, "M_MISSING_TOKEN")

	// Local aliases of a room: members only, unless it is world_readable.
	do(t, "GET", roomURL(s, roomID, "aliases"), bob.AccessToken, nil).want(t, 403, "M_FORBIDDEN")
	do(t, "GET", roomURL(s, "!nope:"+id.RoomID(s.Config.Server.Name), "aliases"), tok, nil).want(t, 403, "M_FORBIDDEN")
	do(t, "GET", roomURL(s, roomID, "aliases"), "", nil).want(t, 401, "M_MISSING_TOKEN")
	dirPutState(t, s, tok, roomID, "m.room.history_visibility", map[string]any{"history_visibility": "world_readable"})
	r := do(t, "GET", roomURL(s, roomID, "aliases"), bob.AccessToken, nil).want(t, 200, "")
	if got, _ := r.Body["aliases"].([]any); len(got) != 2 {
		t.Fatalf("world_readable room aliases for a non-member = %s", r.Raw)
	}
}

// TestAliasDeletePermissions: the alias creator, room members with power to
// change the canonical alias, and server admins may delete an alias; other
// members may not.
func TestAliasDeletePermissions(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice") // room creator (v12: unlimited power)
	bob := newUser(t, s, "bob")     // plain member, creates aliases
	carol := newUser(t, s, "carol") // plain member
	mod := newUser(t, s, "mod")     // power level 50
	outsider := newUser(t, s, "outsider")
	roomID := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	for _, c := range []*mautrix.Client{bob, carol, mod} {
		join(t, c, roomID)
	}
	pl := stateContent(t, s, alice.AccessToken, roomID, "m.room.power_levels", "")
	users, _ := pl["users"].(map[string]any)
	if users == nil {
		users = map[string]any{}
	}
	users[string(mod.UserID)] = 50
	pl["users"] = users
	dirPutState(t, s, alice.AccessToken, roomID, "m.room.power_levels", pl)

	hs := ":" + s.Config.Server.Name
	mk := func(cli *mautrix.Client, alias string) {
		t.Helper()
		if _, err := cli.CreateAlias(ctxT(t), id.RoomAlias(alias+hs), roomID); err != nil {
			t.Fatalf("%s creating %s: %v", cli.UserID, alias, err)
		}
	}
	del := func(cli *mautrix.Client, alias string) *resp {
		return do(t, "DELETE", dirAliasURL(s, "v3", alias+hs), cli.AccessToken, nil)
	}
	mk(bob, "#b1")
	mk(bob, "#b2")
	mk(bob, "#b3")
	mk(alice, "#a1")
	mk(bob, "#b4")

	del(carol, "#b1").want(t, 403, "M_FORBIDDEN")    // another plain member
	del(outsider, "#b1").want(t, 403, "M_FORBIDDEN") // not in the room
	del(bob, "#a1").want(t, 403, "M_FORBIDDEN")      // creator of other aliases, no power
	del(bob, "#b1").want(t, 200, "")                 // own alias
	del(mod, "#b2").want(t, 200, "")                 // power to send m.room.canonical_alias
	del(alice, "#b3").want(t, 200, "")               // room creator
	admin := dirAdmin(t, s, "root")
	del(admin, "#a1").want(t, 200, "") // server admin, not in the room
	if got := dirAliases(t, alice, roomID); !reflect.DeepEqual(got, []string{"#b4" + hs}) {
		t.Fatalf("remaining aliases = %v, want only #b4", got)
	}
	// A creator who left the room may still delete their alias.
	if _, err := bob.LeaveRoom(ctxT(t), roomID); err != nil {
		t.Fatal(err)
	}
	del(bob, "#b4").want(t, 200, "")
	// A moderator who left loses the power.
	mk(carol, "#c1")
	if _, err := mod.LeaveRoom(ctxT(t), roomID); err != nil {
		t.Fatal(err)
	}
	del(mod, "#c1").want(t, 403, "M_FORBIDDEN")
}

// TestAliasDeleteUpdatesCanonicalAlias: deleting an alias drops it from the
// room's m.room.canonical_alias (alias and alt_aliases).
func TestAliasDeleteUpdatesCanonicalAlias(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	tok := alice.AccessToken
	hs := ":" + s.Config.Server.Name
	roomID := mkRoomRaw(t, s, tok, map[string]any{"preset": "public_chat", "room_alias_name": "main"})
	if c := stateContent(t, s, tok, roomID, "m.room.canonical_alias", ""); c["alias"] != "#main"+hs {
		t.Fatalf("canonical alias after createRoom = %v", c)
	}
	for _, a := range []string{"#alt", "#other"} {
		if _, err := alice.CreateAlias(ctxT(t), id.RoomAlias(a+hs), roomID); err != nil {
			t.Fatal(err)
		}
	}
	dirPutState(t, s, tok, roomID, "m.room.canonical_alias", map[string]any{
		"alias": "#main" + hs, "alt_aliases": []string{"#alt" + hs, "#main" + hs, "#other" + hs},
	})

	do(t, "DELETE", dirAliasURL(s, "v3", "#main"+hs), tok, nil).want(t, 200, "")
	c := stateContent(t, s, tok, roomID, "m.room.canonical_alias", "")
	if _, ok := c["alias"]; ok {
		t.Fatalf("canonical alias still names the deleted alias: %v", c)
	}
	if alts, _ := json.Marshal(c["alt_aliases"]); string(alts) != `["#alt`+hs+`","#other`+hs+`"]` {
		t.Fatalf("alt_aliases = %s, want the deleted alias removed", alts)
	}
	// Deleting an alias the event does not name sends nothing.
	if _, err := alice.CreateAlias(ctxT(t), id.RoomAlias("#unlisted"+hs), roomID); err != nil {
		t.Fatal(err)
	}
	before := fullState(t, s, tok, roomID)
	do(t, "DELETE", dirAliasURL(s, "v3", "#unlisted"+hs), tok, nil).want(t, 200, "")
	if a, b := stateEvent(t, before, "m.room.canonical_alias", "").EventID,
		stateEvent(t, fullState(t, s, tok, roomID), "m.room.canonical_alias", "").EventID; a != b {
		t.Fatalf("canonical alias event replaced (%s -> %s) though it did not name the alias", a, b)
	}
	do(t, "DELETE", dirAliasURL(s, "v3", "#alt"+hs), tok, nil).want(t, 200, "")
	do(t, "DELETE", dirAliasURL(s, "v3", "#other"+hs), tok, nil).want(t, 200, "")
	c = stateContent(t, s, tok, roomID, "m.room.canonical_alias", "")
	if len(c) != 0 {
		t.Fatalf("canonical alias content after deleting every alias = %v, want {}", c)
	}

	// A creator without power to change the canonical alias still deletes
	// their alias (the spec's recommendation); the event stays as it was.
	join(t, bob, roomID)
	if _, err := bob.CreateAlias(ctxT(t), id.RoomAlias("#bobs"+hs), roomID); err != nil {
		t.Fatal(err)
	}
	dirPutState(t, s, tok, roomID, "m.room.canonical_alias", map[string]any{"alias": "#bobs" + hs})
	do(t, "DELETE", dirAliasURL(s, "v3", "#bobs"+hs), bob.AccessToken, nil).want(t, 200, "")
	do(t, "GET", dirAliasURL(s, "v3", "#bobs"+hs), "", nil).want(t, 404, "M_NOT_FOUND")
}

// TestDirectoryVisibility: GET/PUT /directory/list/room/{roomId}.
func TestDirectoryVisibility(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	outsider := newUser(t, s, "outsider")
	pub := mkRoom(t, alice, &mautrix.ReqCreateRoom{Visibility: "public", Name: "Pub"})
	priv := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Priv"}) // joinable, not published
	join(t, bob, priv)

	vis := func(roomID id.RoomID) string {
		t.Helper()
		r := do(t, "GET", dirVisURL(s, roomID), "", nil).want(t, 200, "") // no token needed
		v, _ := r.Body["visibility"].(string)
		return v
	}
	listed := func() []id.RoomID {
		t.Helper()
		res, err := alice.PublicRooms(ctxT(t), &mautrix.ReqPublicRooms{})
		if err != nil {
			t.Fatalf("publicRooms: %v", err)
		}
		var out []id.RoomID
		for _, c := range res.Chunk {
			out = append(out, c.RoomID)
		}
		return out
	}
	if vis(pub) != "public" || vis(priv) != "private" {
		t.Fatalf("visibility pub=%s priv=%s", vis(pub), vis(priv))
	}
	if got := listed(); !reflect.DeepEqual(got, []id.RoomID{pub}) {
		t.Fatalf("listed = %v, want [%s]", got, pub)
	}
	do(t, "GET", dirVisURL(s, "!nope:"+id.RoomID(s.Config.Server.Name)), "", nil).want(t, 404, "M_NOT_FOUND")

	set := func(token string, roomID id.RoomID, body any) *resp {
		return do(t, "PUT", dirVisURL(s, roomID), token, body)
	}
	set(bob.AccessToken, priv, map[string]any{"visibility": "public"}).want(t, 403, "M_FORBIDDEN")      // member without power
	set(outsider.AccessToken, pub, map[string]any{"visibility": "private"}).want(t, 403, "M_FORBIDDEN") // not in the room
	set("", pub, map[string]any{"visibility": "private"}).want(t, 401, "M_MISSING_TOKEN")
	set(alice.AccessToken, pub, map[string]any{"visibility": "hidden"}).want(t, 400, "M_INVALID_PARAM")
	set(alice.AccessToken, "!nope:"+id.RoomID(s.Config.Server.Name), map[string]any{"visibility": "public"}).want(t, 404, "M_NOT_FOUND")
	if vis(pub) != "public" || vis(priv) != "private" {
		t.Fatal("refused requests changed the visibility")
	}

	set(alice.AccessToken, priv, map[string]any{}).want(t, 200, "") // visibility defaults to public
	set(alice.AccessToken, pub, map[string]any{"visibility": "private"}).want(t, 200, "")
	if vis(pub) != "private" || vis(priv) != "public" {
		t.Fatalf("after toggling: pub=%s priv=%s", vis(pub), vis(priv))
	}
	if got := listed(); !reflect.DeepEqual(got, []id.RoomID{priv}) {
		t.Fatalf("listed after toggling = %v, want [%s]", got, priv)
	}
	// Idempotent, and an admin outside the room may change it.
	set(alice.AccessToken, pub, map[string]any{"visibility": "private"}).want(t, 200, "")
	admin := dirAdmin(t, s, "root")
	set(admin.AccessToken, pub, map[string]any{"visibility": "public"}).want(t, 200, "")
	if vis(pub) != "public" {
		t.Fatal("admin could not publish the room")
	}
	// createRoom with visibility public publishes; the r0 prefix works too.
	r := do(t, "GET", cs(s, "r0", "directory", "list", "room", string(pub)), "", nil).want(t, 200, "")
	if r.Body["visibility"] != "public" {
		t.Fatalf("r0 visibility = %s", r.Raw)
	}
}

// pubRoom is a /publicRooms chunk entry decoded loosely, so absent fields
// can be told from empty ones.
type pubRoom map[string]any

func (p pubRoom) id() string { s, _ := p["room_id"].(string); return s }

type pubPage struct {
	Chunk     []pubRoom `json:"chunk"`
	NextBatch *string   `json:"next_batch"`
	PrevBatch *string   `json:"prev_batch"`
	Total     *int      `json:"total_room_count_estimate"`
}

// publicRoomsGET fetches GET /publicRooms?q (token may be "").
func publicRoomsGET(t *testing.T, s *testserver.Server, token string, q url.Values) pubPage {
	t.Helper()
	u := v3(s, "publicRooms")
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	r := do(t, "GET", u, token, nil).want(t, 200, "")
	var p pubPage
	decodeInto(t, r.Raw, &p)
	if p.Chunk == nil {
		t.Fatalf("/publicRooms without a chunk array: %s", r.Raw)
	}
	return p
}

// publicRoomsPOST fetches POST /publicRooms with body.
func publicRoomsPOST(t *testing.T, s *testserver.Server, token string, body any) pubPage {
	t.Helper()
	r := do(t, "POST", v3(s, "publicRooms"), token, body).want(t, 200, "")
	var p pubPage
	decodeInto(t, r.Raw, &p)
	if p.Chunk == nil {
		t.Fatalf("/publicRooms without a chunk array: %s", r.Raw)
	}
	return p
}

func pageIDs(p pubPage) []string {
	out := []string{}
	for _, c := range p.Chunk {
		out = append(out, c.id())
	}
	return out
}

// TestPublicRoomsListing: published rooms are listed with the spec's
// fields and member counts, largest first; unpublished, invite-only and
// empty rooms are not.
func TestPublicRoomsListing(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	carol := newUser(t, s, "carol")
	tok := alice.AccessToken
	hs := ":" + s.Config.Server.Name

	full := mkRoomRaw(t, s, tok, map[string]any{
		"visibility": "public", "name": "Full Room", "topic": "Everything set", "room_alias_name": "full",
		"creation_content": map[string]any{"type": "m.space"},
		"initial_state": []any{
			map[string]any{"type": "m.room.avatar", "content": map[string]any{"url": "mxc://hs.test/avatar"}},
			map[string]any{"type": "m.room.history_visibility", "content": map[string]any{"history_visibility": "world_readable"}},
			map[string]any{"type": "m.room.guest_access", "content": map[string]any{"guest_access": "can_join"}},
		},
	})
	join(t, bob, full)
	join(t, carol, full)
	bare := mkRoomRaw(t, s, bob.AccessToken, map[string]any{"visibility": "public"})
	mkRoomRaw(t, s, tok, map[string]any{"preset": "public_chat", "name": "Not published"})
	mkRoomRaw(t, s, tok, map[string]any{"visibility": "private", "name": "Private"})
	// Published but invite-only: hidden (nobody could join it).
	inviteOnly := mkRoomRaw(t, s, tok, map[string]any{"visibility": "public", "name": "Invite only"})
	dirPutState(t, s, tok, inviteOnly, "m.room.join_rules", map[string]any{"join_rule": "invite"})
	// Published, but everyone left: hidden.
	empty := mkRoomRaw(t, s, carol.AccessToken, map[string]any{"visibility": "public", "name": "Empty"})
	if _, err := carol.LeaveRoom(ctxT(t), empty); err != nil {
		t.Fatal(err)
	}

	// Anonymous GET, authenticated GET and POST agree.
	anonPage := publicRoomsGET(t, s, "", nil)
	for _, p := range []pubPage{anonPage, publicRoomsGET(t, s, tok, nil), publicRoomsPOST(t, s, tok, map[string]any{})} {
		if got := pageIDs(p); !reflect.DeepEqual(got, []string{string(full), string(bare)}) {
			t.Fatalf("listed rooms = %v, want [%s %s]", got, full, bare)
		}
		if p.NextBatch != nil || p.PrevBatch != nil {
			t.Fatalf("single page has batch tokens: next %v prev %v", p.NextBatch, p.PrevBatch)
		}
		if p.Total == nil || *p.Total != 2 {
			t.Fatalf("total_room_count_estimate = %v, want 2", p.Total)
		}
	}
	wantFull := map[string]any{
		"room_id": string(full), "num_joined_members": 3.0, "name": "Full Room", "topic": "Everything set",
		"canonical_alias": "#full" + hs, "avatar_url": "mxc://hs.test/avatar", "world_readable": true,
		"guest_can_join": true, "join_rule": "public", "room_type": "m.space",
	}
	if got := map[string]any(anonPage.Chunk[0]); !reflect.DeepEqual(got, wantFull) {
		t.Fatalf("full room entry:\n got  %v\n want %v", got, wantFull)
	}
	wantBare := map[string]any{
		"room_id": string(bare), "num_joined_members": 1.0, "world_readable": false, "guest_can_join": false, "join_rule": "public",
	}
	if got := map[string]any(anonPage.Chunk[1]); !reflect.DeepEqual(got, wantBare) {
		t.Fatalf("bare room entry:\n got  %v\n want %v", got, wantBare)
	}

	// Through mautrix, and counts follow membership changes.
	if _, err := carol.LeaveRoom(ctxT(t), full); err != nil {
		t.Fatal(err)
	}
	res, err := bob.PublicRooms(ctxT(t), &mautrix.ReqPublicRooms{})
	if err != nil {
		t.Fatalf("mautrix PublicRooms: %v", err)
	}
	if len(res.Chunk) != 2 || res.Chunk[0].RoomID != full || res.Chunk[0].NumJoinedMembers != 2 ||
		res.Chunk[0].CanonicalAlias != id.RoomAlias("#full"+hs) || res.Chunk[0].RoomType != "m.space" {
		t.Fatalf("mautrix PublicRooms = %+v", res.Chunk)
	}
	// Renaming shows at once.
	dirPutState(t, s, tok, full, "m.room.name", map[string]any{"name": "Renamed"})
	if p := publicRoomsGET(t, s, "", nil); p.Chunk[0]["name"] != "Renamed" {
		t.Fatalf("name after rename = %v", p.Chunk[0]["name"])
	}

	// Server parameter: ours is fine; another's list is asked over federation
	// (a server that cannot be reached is 502, as in Synapse), by
	// authenticated users only; a bad server name is refused.
	if p := publicRoomsGET(t, s, "", url.Values{"server": {s.Config.Server.Name}}); len(p.Chunk) != 2 {
		t.Fatalf("server=%s lists %v", s.Config.Server.Name, pageIDs(p))
	}
	do(t, "GET", v3(s, "publicRooms")+"?server=other.invalid", tok, nil).want(t, 502, "M_UNKNOWN")
	do(t, "POST", v3(s, "publicRooms")+"?server=other.invalid", tok, map[string]any{}).want(t, 502, "M_UNKNOWN")
	do(t, "GET", v3(s, "publicRooms")+"?server=other.invalid", "", nil).want(t, 401, "M_MISSING_TOKEN")
	do(t, "GET", v3(s, "publicRooms")+"?server=bad%20name", tok, nil).want(t, 400, "M_INVALID_PARAM")
	// POST needs a token; a bad token on GET is refused rather than ignored.
	do(t, "POST", v3(s, "publicRooms"), "", map[string]any{}).want(t, 401, "M_MISSING_TOKEN")
	do(t, "GET", v3(s, "publicRooms"), "bogus", nil).want(t, 401, "M_UNKNOWN_TOKEN")
	do(t, "GET", v3(s, "publicRooms")+"?limit=-1", "", nil).want(t, 400, "M_INVALID_PARAM")
	do(t, "GET", v3(s, "publicRooms")+"?since=garbage", "", nil).want(t, 400, "M_INVALID_PARAM")
	// No third-party networks exist here.
	if p := publicRoomsPOST(t, s, tok, map[string]any{"third_party_instance_id": "irc"}); len(p.Chunk) != 0 {
		t.Fatalf("third_party_instance_id lists %v", pageIDs(p))
	}
	if p := publicRoomsPOST(t, s, tok, map[string]any{"include_all_networks": true}); len(p.Chunk) != 2 {
		t.Fatalf("include_all_networks lists %v", pageIDs(p))
	}
}

// TestPublicRoomsFiltered: generic_search_term matches name, topic and
// canonical alias case-insensitively; room_types selects by creation type.
func TestPublicRoomsFiltered(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	tok := alice.AccessToken
	named := mkRoomRaw(t, s, tok, map[string]any{"visibility": "public", "name": "Gardening Club"})
	topic := mkRoomRaw(t, s, tok, map[string]any{"visibility": "public", "topic": "We talk about GARDENS and bees"})
	aliased := mkRoomRaw(t, s, tok, map[string]any{"visibility": "public", "room_alias_name": "gardenparty"})
	space := mkRoomRaw(t, s, tok, map[string]any{"visibility": "public", "name": "Äpfel Space", "creation_content": map[string]any{"type": "m.space"}})
	custom := mkRoomRaw(t, s, tok, map[string]any{"visibility": "public", "name": "Other", "creation_content": map[string]any{"type": "org.example.kind"}})

	search := func(body map[string]any) []string {
		t.Helper()
		ids := pageIDs(publicRoomsPOST(t, s, tok, body))
		slices.Sort(ids)
		return ids
	}
	want := func(ids ...id.RoomID) []string {
		out := []string{}
		for _, i := range ids {
			out = append(out, string(i))
		}
		slices.Sort(out)
		return out
	}
	cases := []struct {
		name   string
		filter map[string]any
		want   []string
	}{
		{"name, topic and alias", map[string]any{"generic_search_term": "garden"}, want(named, topic, aliased)},
		{"case-insensitive", map[string]any{"generic_search_term": "GaRdEnInG"}, want(named)},
		{"topic only", map[string]any{"generic_search_term": "bees"}, want(topic)},
		{"alias with server", map[string]any{"generic_search_term": "#gardenparty:" + s.Config.Server.Name}, want(aliased)},
		{"non-ASCII case", map[string]any{"generic_search_term": "äPFEL"}, want(space)},
		{"no match", map[string]any{"generic_search_term": "zebra"}, want()},
		{"blank term", map[string]any{"generic_search_term": "  "}, want(named, topic, aliased, space, custom)},
		{"spaces", map[string]any{"room_types": []any{"m.space"}}, want(space)},
		{"untyped", map[string]any{"room_types": []any{nil}}, want(named, topic, aliased)},
		{"untyped and custom", map[string]any{"room_types": []any{nil, "org.example.kind"}}, want(named, topic, aliased, custom)},
		{"empty room_types", map[string]any{"room_types": []any{}}, want(named, topic, aliased, space, custom)},
		{"type and term", map[string]any{"room_types": []any{nil}, "generic_search_term": "club"}, want(named)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := search(map[string]any{"filter": tc.filter}); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("filter %v: got %v, want %v", tc.filter, got, tc.want)
			}
		})
	}
	do(t, "POST", v3(s, "publicRooms"), tok, map[string]any{"filter": map[string]any{"generic_search_term": 5}}).want(t, 400, "M_BAD_JSON")
	do(t, "POST", v3(s, "publicRooms"), tok, map[string]any{"include_all_networks": true, "third_party_instance_id": "irc"}).
		want(t, 400, "M_INVALID_PARAM")
}

// TestPublicRoomsPagination: paging with a small limit returns every room
// exactly once in directory order (members desc, then room ID), forwards and
// backwards, with and without a filter.
func TestPublicRoomsPagination(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	var others []*mautrix.Client
	for i := range 4 {
		others = append(others, newUser(t, s, "u"+strconv.Itoa(i)))
	}
	// Joined counts 5, 3, 3, 2, 1, 1: two ties, ordered by room ID.
	counts := []int{5, 3, 3, 2, 1, 1}
	var rooms []id.RoomID
	for i, n := range counts {
		roomID := mkRoomRaw(t, s, alice.AccessToken, map[string]any{"visibility": "public", "name": "Paging " + strconv.Itoa(i)})
		for _, u := range others[:n-1] {
			join(t, u, roomID)
		}
		rooms = append(rooms, roomID)
	}
	// The expected order.
	type entry struct {
		id string
		n  int
	}
	var order []entry
	for i, r := range rooms {
		order = append(order, entry{string(r), counts[i]})
	}
	slices.SortFunc(order, func(a, b entry) int {
		if a.n != b.n {
			return b.n - a.n
		}
		if a.id < b.id {
			return -1
		}
		return 1
	})
	var wantIDs []string
	for _, e := range order {
		wantIDs = append(wantIDs, e.id)
	}
	if got := pageIDs(publicRoomsGET(t, s, "", nil)); !reflect.DeepEqual(got, wantIDs) {
		t.Fatalf("unpaged order = %v, want %v", got, wantIDs)
	}

	for _, method := range []string{"GET", "POST"} {
		t.Run(method, func(t *testing.T) {
			fetch := func(since string) pubPage {
				t.Helper()
				if method == "GET" {
					q := url.Values{"limit": {"2"}}
					if since != "" {
						q.Set("since", since)
					}
					return publicRoomsGET(t, s, "", q)
				}
				body := map[string]any{"limit": 2, "filter": map[string]any{"generic_search_term": "paging"}}
				if since != "" {
					body["since"] = since
				}
				return publicRoomsPOST(t, s, alice.AccessToken, body)
			}
			var pages []pubPage
			var got []string
			since := ""
			for i := 0; ; i++ {
				if i > 10 {
					t.Fatal("pagination does not terminate")
				}
				p := fetch(since)
				if len(p.Chunk) > 2 {
					t.Fatalf("page of %d rooms with limit 2", len(p.Chunk))
				}
				if (i == 0) != (p.PrevBatch == nil) {
					t.Fatalf("page %d: prev_batch = %v", i, p.PrevBatch)
				}
				if p.Total == nil || *p.Total != len(rooms) {
					t.Fatalf("page %d: total_room_count_estimate = %v", i, p.Total)
				}
				pages = append(pages, p)
				got = append(got, pageIDs(p)...)
				if p.NextBatch == nil {
					break
				}
				since = *p.NextBatch
			}
			if !reflect.DeepEqual(got, wantIDs) {
				t.Fatalf("paged forwards: %v, want %v", got, wantIDs)
			}
			if len(pages) != 3 {
				t.Fatalf("%d pages, want 3", len(pages))
			}
			// Backwards from the last page reproduces the earlier pages.
			p := pages[len(pages)-1]
			for i := len(pages) - 2; i >= 0; i-- {
				if p.PrevBatch == nil {
					t.Fatalf("page %d has no prev_batch", i+1)
				}
				p = fetch(*p.PrevBatch)
				if !reflect.DeepEqual(pageIDs(p), pageIDs(pages[i])) {
					t.Fatalf("backwards page %d = %v, want %v", i, pageIDs(p), pageIDs(pages[i]))
				}
			}
			if p.PrevBatch != nil {
				t.Fatalf("first page reached backwards has prev_batch %q", *p.PrevBatch)
			}
		})
	}

	// A room on the first page that shrinks while a client pages moves
	// behind the token; no room after the token is skipped (as an offset
	// would skip one).
	first := publicRoomsGET(t, s, "", url.Values{"limit": {"2"}})
	if first.NextBatch == nil || !reflect.DeepEqual(pageIDs(first), wantIDs[:2]) {
		t.Fatalf("first page = %v (next %v)", pageIDs(first), first.NextBatch)
	}
	for _, u := range others {
		if _, err := u.LeaveRoom(ctxT(t), id.RoomID(wantIDs[0])); err != nil {
			t.Fatal(err)
		}
	}
	rest := publicRoomsGET(t, s, "", url.Values{"limit": {"10"}, "since": {*first.NextBatch}})
	got := slices.DeleteFunc(pageIDs(rest), func(x string) bool { return x == wantIDs[0] })
	if !reflect.DeepEqual(got, wantIDs[2:]) {
		t.Fatalf("after the token: %v, want %v (plus the shrunk room)", pageIDs(rest), wantIDs[2:])
	}
}

// TestProfilePropagation: display name and avatar changes reach every room
// the user is joined to as member events, keeping the rest of the content;
// rooms the user left are untouched.
func TestProfilePropagation(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	tok := alice.AccessToken
	me := string(alice.UserID)
	own := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	direct := mkRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "trusted_private_chat", IsDirect: true, Invite: []id.UserID{alice.UserID}})
	join(t, alice, direct)
	bobs := mkRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	join(t, alice, bobs)
	left := mkRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	join(t, alice, left)
	if _, err := alice.LeaveRoom(ctxT(t), left); err != nil {
		t.Fatal(err)
	}
	// A member event with extra content: it must survive the update.
	do(t, "PUT", roomURL(s, own, "state", "m.room.member", me), tok,
		map[string]any{"membership": "join", "org.example.extra": "kept", "reason": "old reason"}).want(t, 200, "")
	joined := []id.RoomID{own, direct, bobs}

	if err := alice.SetDisplayName(ctxT(t), "Alice Liddell"); err != nil {
		t.Fatalf("SetDisplayName: %v", err)
	}
	for _, roomID := range joined {
		c := stateContent(t, s, tok, roomID, "m.room.member", me)
		if c["displayname"] != "Alice Liddell" || c["membership"] != "join" {
			t.Fatalf("member event in %s after renaming = %v", roomID, c)
		}
		if roomID != own { // bob sees it too
			if c := stateContent(t, s, bob.AccessToken, roomID, "m.room.member", me); c["displayname"] != "Alice Liddell" {
				t.Fatalf("bob sees %v in %s", c, roomID)
			}
		}
	}
	c := stateContent(t, s, tok, own, "m.room.member", me)
	if c["org.example.extra"] != "kept" || c["reason"] != nil {
		t.Fatalf("own room member content = %v, want extra kept and reason dropped", c)
	}
	// The left room keeps alice's leave; bob's view is the judge (alice may only see up to her leave).
	if c := stateContent(t, s, bob.AccessToken, left, "m.room.member", me); c["membership"] != "leave" || c["displayname"] != nil {
		t.Fatalf("left room member event = %v, want an untouched leave", c)
	}

	if err := alice.SetAvatarURL(ctxT(t), id.ContentURI{Homeserver: "hs.test", FileID: "face"}); err != nil {
		t.Fatalf("SetAvatarURL: %v", err)
	}
	for _, roomID := range joined {
		c := stateContent(t, s, tok, roomID, "m.room.member", me)
		if c["avatar_url"] != "mxc://hs.test/face" || c["displayname"] != "Alice Liddell" {
			t.Fatalf("member event in %s after avatar change = %v", roomID, c)
		}
	}
	// Setting the same name again sends nothing new.
	before := stateEvent(t, fullState(t, s, tok, bobs), "m.room.member", me).EventID
	if err := alice.SetDisplayName(ctxT(t), "Alice Liddell"); err != nil {
		t.Fatal(err)
	}
	if after := stateEvent(t, fullState(t, s, tok, bobs), "m.room.member", me).EventID; after != before {
		t.Fatalf("unchanged display name sent a new member event (%s -> %s)", before, after)
	}
	// Clearing the display name removes it from the member events.
	do(t, "PUT", v3(s, "profile", me, "displayname"), tok, map[string]any{"displayname": nil}).want(t, 200, "")
	for _, roomID := range joined {
		c := stateContent(t, s, tok, roomID, "m.room.member", me)
		if _, ok := c["displayname"]; ok || c["avatar_url"] != "mxc://hs.test/face" {
			t.Fatalf("member event in %s after clearing the name = %v", roomID, c)
		}
	}
	// Rooms joined later pick the profile up from the join itself.
	later := mkRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	join(t, alice, later)
	if c := stateContent(t, s, tok, later, "m.room.member", me); c["avatar_url"] != "mxc://hs.test/face" {
		t.Fatalf("new join member content = %v", c)
	}
}
