package fedrooms

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/tests/fedtest"
)

// template asks to for a make_* template (endpoint "make_join"…) for
// userID, as from, and builds the event signed with from's key after edit
// (nil: none) changed it.
func template(t *testing.T, from *fedtest.Server, to spec.ServerName, endpoint, roomID, userID string,
	edit func(*gomatrixserverlib.ProtoEvent)) gomatrixserverlib.PDU {
	t.Helper()
	r := fed(t, from, "GET", to, "/_matrix/federation/v1/"+endpoint+"/"+esc(roomID)+"/"+esc(userID)+"?ver=10&ver=11&ver=12", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("%s: %d %s", endpoint, r.Status, r.Raw)
	}
	var resp struct {
		Event       gomatrixserverlib.ProtoEvent  `json:"event"`
		RoomVersion gomatrixserverlib.RoomVersion `json:"room_version"`
	}
	if err := json.Unmarshal(r.Raw, &resp); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(&resp.Event)
	}
	ver := gomatrixserverlib.MustGetRoomVersion(resp.RoomVersion)
	pdu, err := ver.NewEventBuilderFromProtoEvent(&resp.Event).Build(time.Now(), from.Name, from.Federation.Own.KeyID, from.Federation.Own.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return pdu
}

func sendPath(version, endpoint, roomID, eventID string) string {
	return "/_matrix/federation/" + version + "/" + endpoint + "/" + esc(roomID) + "/" + esc(eventID)
}

// eventTypes lists the (type, state_key) of events in a send_join answer.
func memberKeys(events any) []string {
	var out []string
	for _, e := range list(events) {
		if get(e, "type") == spec.MRoomMember {
			out = append(out, get(e, "state_key").(string))
		}
	}
	return out
}

// TestSendJoinOmitMembers: with omit_members=true (MSC3706) send_join
// leaves member events out of the state (heroes stay for rooms without a
// name), says members_omitted, lists the servers in the room, and leaves
// state events out of the auth chain; without it the whole state comes.
func TestSendJoinOmitMembers(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2, hs3 := n.Start("hs1"), n.Start("hs2"), n.Start("hs3")
	alice := newUser(t, hs1, "alice")
	bob := newUser(t, hs2, "bob")
	named := alice.createRoom(map[string]any{"preset": "public_chat", "name": "Named"})
	unnamed := alice.createRoom(map[string]any{"preset": "public_chat"})
	bob.mustJoin(named, "hs1")
	bob.mustJoin(unnamed, "hs1")

	join := func(roomID, user, query string) response {
		t.Helper()
		pdu := template(t, hs3, "hs1", "make_join", roomID, user, nil)
		r := fed(t, hs3, "PUT", "hs1", sendPath("v2", "send_join", roomID, pdu.EventID())+query, json.RawMessage(pdu.JSON()))
		if r.Status != http.StatusOK {
			t.Fatalf("send_join: %d %s", r.Status, r.Raw)
		}
		return r
	}
	r := join(named, "@c1:hs3", "?omit_members=true")
	if r.Body["members_omitted"] != true || !contains(list(r.Body["servers_in_room"]), "hs1") || !contains(list(r.Body["servers_in_room"]), "hs2") ||
		contains(list(r.Body["servers_in_room"]), "hs3") {
		t.Fatalf("omitted answer: %s", r.Raw)
	}
	if keys := memberKeys(r.Body["state"]); len(keys) != 0 {
		t.Fatalf("named room's partial state has members %v", keys)
	}
	inState := map[string]bool{}
	for _, e := range list(r.Body["state"]) {
		inState[eventIDOf(t, e)] = true
	}
	for _, e := range list(r.Body["auth_chain"]) {
		if inState[eventIDOf(t, e)] {
			t.Fatalf("auth chain repeats state event %v", e)
		}
	}
	if len(list(r.Body["auth_chain"])) == 0 {
		t.Fatal("empty auth chain")
	}
	// A room without a name keeps its heroes.
	r = join(unnamed, "@c2:hs3", "?omit_members=true")
	if keys := memberKeys(r.Body["state"]); !contains(anys(keys), alice.ID) || !contains(anys(keys), bob.ID) {
		t.Fatalf("unnamed room's partial state has members %v", keys)
	}
	// Without omit_members: the whole state, no members_omitted.
	r = join(named, "@c3:hs3", "")
	if r.Body["members_omitted"] == true || r.Body["servers_in_room"] != nil {
		t.Fatalf("full answer: %s", r.Raw)
	}
	if keys := memberKeys(r.Body["state"]); !contains(anys(keys), alice.ID) || !contains(anys(keys), bob.ID) || !contains(anys(keys), "@c1:hs3") {
		t.Fatalf("full state has members %v", keys)
	}
	if signed := get(r.Body, "event"); signed == nil {
		t.Fatal("no event in the answer")
	}
}

func anys(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func eventIDOf(t *testing.T, e any) string {
	t.Helper()
	js, _ := json.Marshal(e)
	pdu, err := gomatrixserverlib.MustGetRoomVersion("10").NewEventFromUntrustedJSON(js)
	if err != nil {
		t.Fatal(err)
	}
	return pdu.EventID()
}

// TestForgedMembershipRequestsRefused: the resident server refuses
// send_join/send_leave/make_join requests that do not match their origin,
// path, membership, version or signatures, and invites that do not match
// theirs; nothing is stored.
func TestForgedMembershipRequestsRefused(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2, hs3 := n.Start("hs1"), n.Start("hs2"), n.Start("hs3")
	alice := newUser(t, hs1, "alice")
	bob := newUser(t, hs2, "bob")
	roomID := alice.createRoom(map[string]any{"preset": "public_chat", "room_version": "10"})
	makeJoin := "/_matrix/federation/v1/make_join/" + esc(roomID) + "/"

	// make_join for a user of another server than the origin.
	fed(t, hs2, "GET", "hs1", makeJoin+esc("@carol:hs3")+"?ver=10", nil).want(t, http.StatusForbidden, "M_FORBIDDEN")
	// make_join without the room's version among those supported.
	r := fed(t, hs2, "GET", "hs1", makeJoin+esc(bob.ID)+"?ver=11", nil)
	r.want(t, http.StatusBadRequest, "M_INCOMPATIBLE_ROOM_VERSION")
	if r.Body["room_version"] != "10" {
		t.Fatalf("incompatible answer: %s", r.Raw)
	}
	fed(t, hs2, "GET", "hs1", makeJoin+esc(bob.ID), nil).want(t, http.StatusBadRequest, "M_INCOMPATIBLE_ROOM_VERSION")
	// An unknown room.
	fed(t, hs2, "GET", "hs1", "/_matrix/federation/v1/make_join/"+esc("!nope:hs1")+"/"+esc(bob.ID)+"?ver=10", nil).want(t, http.StatusNotFound, "M_NOT_FOUND")
	// Unsigned requests never reach the handlers.
	req, _ := http.NewRequest("GET", hs1.URL()+makeJoin+esc(bob.ID)+"?ver=10", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unsigned make_join: %v %v", resp, err)
	}

	// hs3 relays a join of a hs2 user: refused, the join is not hs3's to send.
	join := template(t, hs2, "hs1", "make_join", roomID, bob.ID, nil)
	fed(t, hs3, "PUT", "hs1", sendPath("v2", "send_join", roomID, join.EventID()), json.RawMessage(join.JSON())).want(t, http.StatusForbidden, "M_FORBIDDEN")
	// The path names another event.
	fed(t, hs2, "PUT", "hs1", sendPath("v2", "send_join", roomID, otherEventID), json.RawMessage(join.JSON())).want(t, http.StatusBadRequest, "M_BAD_JSON")
	// A leave through send_join.
	leave := template(t, hs2, "hs1", "make_join", roomID, bob.ID, func(p *gomatrixserverlib.ProtoEvent) {
		p.Content = spec.RawJSON(`{"membership":"leave"}`)
	})
	fed(t, hs2, "PUT", "hs1", sendPath("v2", "send_join", roomID, leave.EventID()), json.RawMessage(leave.JSON())).want(t, http.StatusBadRequest, "M_BAD_JSON")
	// A join of one user made by another (state key != sender).
	other := template(t, hs2, "hs1", "make_join", roomID, bob.ID, func(p *gomatrixserverlib.ProtoEvent) {
		sk := "@bob2:hs2"
		p.StateKey = &sk
	})
	fed(t, hs2, "PUT", "hs1", sendPath("v2", "send_join", roomID, other.EventID()), json.RawMessage(other.JSON())).want(t, http.StatusBadRequest, "M_BAD_JSON")
	// A join signed with a key that is not hs2's.
	_, fake, _ := ed25519.GenerateKey(rand.Reader)
	forged := buildWith(t, join, "hs2", hs2.Federation.Own.KeyID, fake)
	fed(t, hs2, "PUT", "hs1", sendPath("v2", "send_join", roomID, forged.EventID()), json.RawMessage(forged.JSON())).want(t, http.StatusForbidden, "M_FORBIDDEN")
	if m := membershipOn(t, hs1, roomID, bob.ID); m != "" {
		t.Fatalf("refused joins left bob as %q", m)
	}
	// A send_leave of a user who is not in the room: the auth rules refuse.
	lv := template(t, hs2, "hs1", "make_join", roomID, bob.ID, func(p *gomatrixserverlib.ProtoEvent) {
		p.Content = spec.RawJSON(`{"membership":"leave"}`)
	})
	fed(t, hs2, "PUT", "hs1", sendPath("v2", "send_leave", roomID, lv.EventID()), json.RawMessage(lv.JSON())).want(t, http.StatusForbidden, "M_FORBIDDEN")
	fed(t, hs2, "GET", "hs1", "/_matrix/federation/v1/make_leave/"+esc(roomID)+"/"+esc(bob.ID), nil).want(t, http.StatusForbidden, "M_FORBIDDEN")
	// The real join goes through.
	fed(t, hs2, "PUT", "hs1", sendPath("v2", "send_join", roomID, join.EventID()), json.RawMessage(join.JSON())).want(t, http.StatusOK, "")

	// Invites: hs1 invites a hs2 user through hs2, as it should…
	invRoom := alice.createRoom(map[string]any{"preset": "private_chat", "room_version": "10"})
	invite := func(from *fedtest.Server, sender, target string, edit func(*inviteBody)) response {
		t.Helper()
		pdu := buildInvite(t, from, invRoom, sender, target)
		body := &inviteBody{RoomVersion: "10", Event: json.RawMessage(pdu.JSON()), InviteRoomState: []json.RawMessage{}}
		path := sendPath("v2", "invite", invRoom, pdu.EventID())
		if edit != nil {
			edit(body)
			if body.path != "" {
				path = body.path
			}
		}
		return fed(t, from, "PUT", "hs2", path, body)
	}
	// …but not as hs3 on hs1's behalf.
	invite(hs3, alice.ID, bob.ID, nil).want(t, http.StatusForbidden, "M_FORBIDDEN")
	// Not for a user of another server.
	invite(hs1, alice.ID, "@carol:hs3", nil).want(t, http.StatusForbidden, "M_FORBIDDEN")
	// Not with a path naming another event.
	invite(hs1, alice.ID, bob.ID, func(b *inviteBody) { b.path = sendPath("v2", "invite", invRoom, otherEventID) }).want(t, http.StatusBadRequest, "M_BAD_JSON")
	// Not in a room version hs2 does not know.
	invite(hs1, alice.ID, bob.ID, func(b *inviteBody) { b.RoomVersion = "999" }).want(t, http.StatusBadRequest, "M_INCOMPATIBLE_ROOM_VERSION")
	// Not when the event is no invite.
	invite(hs1, alice.ID, bob.ID, func(b *inviteBody) {
		var ev map[string]any
		json.Unmarshal(b.Event, &ev)
		ev["content"] = map[string]any{"membership": "join"}
		b.Event, _ = json.Marshal(ev)
	}).want(t, http.StatusBadRequest, "")
	// Not when hs1's signature does not verify.
	invite(hs1, alice.ID, bob.ID, func(b *inviteBody) {
		pdu := buildInviteWith(t, hs1.Name, hs1.Federation.Own.KeyID, fake, invRoom, alice.ID, bob.ID)
		b.Event = json.RawMessage(pdu.JSON())
		b.path = sendPath("v2", "invite", invRoom, pdu.EventID())
	}).want(t, http.StatusForbidden, "M_FORBIDDEN")
	if oob, err := hs2.DB.CurrentOutOfBand(t.Context(), invRoom, bob.ID); err == nil {
		t.Fatalf("a refused invite was stored: %+v", oob)
	}
	// A well-formed invite is signed by hs2 and answered. Its room summary
	// keeps what is well-formed: a create event that is not this room's
	// (here: another room's, in full) is left out.
	otherCreate := eventOn(t, hs1, stateEventID(t, hs1, roomID, spec.MRoomCreate, ""))
	r = invite(hs1, alice.ID, bob.ID, func(b *inviteBody) {
		b.InviteRoomState = []json.RawMessage{
			json.RawMessage(otherCreate.JSON),
			json.RawMessage(`{"type":"m.room.name","state_key":"","sender":"` + alice.ID + `","content":{"name":"Kept"}}`),
			json.RawMessage(`{"type":"m.room.topic","content":{"topic":"no state key"}}`),
			json.RawMessage(`"junk"`),
		}
	})
	if r.Status != http.StatusOK {
		t.Fatalf("invite: %d %s", r.Status, r.Raw)
	}
	js, _ := json.Marshal(r.Body["event"])
	if !signedBy(js, "hs2") || !signedBy(js, "hs1") {
		t.Fatalf("returned invite: %s", js)
	}
	st := bob.invitedTo(invRoom)
	if len(st) != 2 || get(st[0], "type") != spec.MRoomName || get(st[1], "content", "membership") != spec.Invite {
		t.Fatalf("invite_state: %v", st)
	}
}

// otherEventID is a well-formed event ID of no event.
const otherEventID = "$aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

type inviteBody struct {
	RoomVersion     string            `json:"room_version"`
	Event           json.RawMessage   `json:"event"`
	InviteRoomState []json.RawMessage `json:"invite_room_state"`
	path            string
}

// buildWith rebuilds a signed event's fields signed by another key.
func buildWith(t *testing.T, pdu gomatrixserverlib.PDU, origin spec.ServerName, keyID gomatrixserverlib.KeyID, key ed25519.PrivateKey) gomatrixserverlib.PDU {
	t.Helper()
	var proto gomatrixserverlib.ProtoEvent
	if err := json.Unmarshal(pdu.JSON(), &proto); err != nil {
		t.Fatal(err)
	}
	proto.Signature = nil
	out, err := gomatrixserverlib.MustGetRoomVersion(pdu.Version()).NewEventBuilderFromProtoEvent(&proto).Build(time.Now(), origin, keyID, key)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// buildInvite builds an invite on from's room head as from's user would,
// signed by from.
func buildInvite(t *testing.T, from *fedtest.Server, roomID, sender, target string) gomatrixserverlib.PDU {
	t.Helper()
	return buildInviteWith(t, from.Name, from.Federation.Own.KeyID, from.Federation.Own.PrivateKey, roomID, sender, target)
}

func buildInviteWith(t *testing.T, origin spec.ServerName, keyID gomatrixserverlib.KeyID, key ed25519.PrivateKey, roomID, sender, target string) gomatrixserverlib.PDU {
	t.Helper()
	proto := gomatrixserverlib.ProtoEvent{
		SenderID: sender, RoomID: roomID, Type: spec.MRoomMember, StateKey: &target,
		Content: spec.RawJSON(`{"membership":"invite"}`), PrevEvents: []string{"$prev"}, AuthEvents: []string{"$auth"}, Depth: 5,
	}
	pdu, err := gomatrixserverlib.MustGetRoomVersion("10").NewEventBuilderFromProtoEvent(&proto).Build(time.Now(), origin, keyID, key)
	if err != nil {
		t.Fatal(err)
	}
	return pdu
}

// TestServerACLRefusesMembership: a server the room's ACL denies can
// neither join nor knock; invites of its users are not sent its way
// either (its make_join is refused before).
func TestServerACLRefusesMembership(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2, hs3 := n.Start("hs1"), n.Start("hs2"), n.Start("hs3")
	alice := newUser(t, hs1, "alice")
	bob := newUser(t, hs2, "bob")
	carol := newUser(t, hs3, "carol")
	roomID := alice.createRoom(map[string]any{"preset": "public_chat"})
	alice.putState(roomID, "m.room.server_acl", "", map[string]any{"allow": []string{"*"}, "deny": []string{"hs3"}})
	carol.join(roomID, "hs1").want(t, http.StatusForbidden, "M_FORBIDDEN")
	fed(t, hs3, "GET", "hs1", "/_matrix/federation/v1/make_join/"+esc(roomID)+"/"+esc(carol.ID)+"?ver=10&ver=11", nil).want(t, http.StatusForbidden, "M_FORBIDDEN")
	bob.mustJoin(roomID, "hs1")
}

// TestInviteWithWrongVersionDoesNotStickToRoom: a third server invites a
// user of hs2 to hs1's room claiming another room version; when the user
// joins through hs1, hs2 takes the room's real version.
func TestInviteWithWrongVersionDoesNotStickToRoom(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2, hs3 := n.Start("hs1"), n.Start("hs2"), n.Start("hs3")
	alice := newUser(t, hs1, "alice")
	bob := newUser(t, hs2, "bob")
	roomID := alice.createRoom(map[string]any{"preset": "public_chat", "room_version": "11"})

	proto := gomatrixserverlib.ProtoEvent{
		SenderID: "@mallory:hs3", RoomID: roomID, Type: spec.MRoomMember, StateKey: &bob.ID,
		Content: spec.RawJSON(`{"membership":"invite"}`), PrevEvents: []string{otherEventID}, AuthEvents: []string{otherEventID}, Depth: 2,
	}
	pdu, err := gomatrixserverlib.MustGetRoomVersion("9").NewEventBuilderFromProtoEvent(&proto).
		Build(time.Now(), hs3.Name, hs3.Federation.Own.KeyID, hs3.Federation.Own.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	body := inviteBody{RoomVersion: "9", Event: json.RawMessage(pdu.JSON()), InviteRoomState: []json.RawMessage{}}
	fed(t, hs3, "PUT", "hs2", sendPath("v2", "invite", roomID, pdu.EventID()), body).want(t, http.StatusOK, "")
	bob.invitedTo(roomID)

	bob.mustJoin(roomID, "hs1")
	ver, err := hs2.Rooms.RoomVersion(t.Context(), roomID)
	if err != nil || ver.Version() != "11" {
		t.Fatalf("hs2's room version: %v, %v", ver, err)
	}
	if m := membershipOn(t, hs2, roomID, bob.ID); m != spec.Join {
		t.Fatalf("hs2 has bob as %q", m)
	}
	bob.send(roomID, "hello")
}

// TestSendJoinAndLeaveV1: the v1 send_join and send_leave (still served by
// Synapse, and used by servers that predate v2) take the same events as
// v2, answer [200, answer], and refuse any other event with 400.
func TestSendJoinAndLeaveV1(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	alice := newUser(t, hs1, "alice")
	roomID := alice.createRoom(map[string]any{"preset": "public_chat", "room_version": "10"})

	leaveNotJoin := template(t, hs2, "hs1", "make_join", roomID, "@c1:hs2", func(p *gomatrixserverlib.ProtoEvent) {
		p.Content = spec.RawJSON(`{"membership":"leave"}`)
	})
	r := fed(t, hs2, "PUT", "hs1", sendPath("v1", "send_join", roomID, leaveNotJoin.EventID()), json.RawMessage(leaveNotJoin.JSON()))
	r.want(t, http.StatusBadRequest, "")

	join := template(t, hs2, "hs1", "make_join", roomID, "@c1:hs2", nil)
	r = fed(t, hs2, "PUT", "hs1", sendPath("v1", "send_join", roomID, join.EventID()), json.RawMessage(join.JSON()))
	var v1 []json.RawMessage
	if r.Status != http.StatusOK || json.Unmarshal(r.Raw, &v1) != nil || len(v1) != 2 || string(v1[0]) != "200" {
		t.Fatalf("v1 send_join: %d %s", r.Status, r.Raw)
	}
	var answer map[string]any
	json.Unmarshal(v1[1], &answer)
	if keys := memberKeys(answer["state"]); !contains(anys(keys), alice.ID) || answer["members_omitted"] == true {
		t.Fatalf("v1 send_join answer: %s", v1[1])
	}
	if m := membershipOn(t, hs1, roomID, "@c1:hs2"); m != spec.Join {
		t.Fatalf("hs1 has @c1:hs2 as %q", m)
	}

	leave := template(t, hs2, "hs1", "make_leave", roomID, "@c1:hs2", nil)
	r = fed(t, hs2, "PUT", "hs1", sendPath("v1", "send_leave", roomID, leave.EventID()), json.RawMessage(leave.JSON()))
	if r.Status != http.StatusOK || string(r.Raw) != "[200,{}]" {
		t.Fatalf("v1 send_leave: %d %s", r.Status, r.Raw)
	}
	if m := membershipOn(t, hs1, roomID, "@c1:hs2"); m != spec.Leave {
		t.Fatalf("hs1 has @c1:hs2 as %q after the leave", m)
	}
}
