package feddirectory

import (
	"net/http"
	"slices"
	"testing"

	"matrixhs/tests/fedtest"
)

// TestRemoteSpaceHierarchy: alice's space on hs1 has children only hs2 is
// in: a public room, a private room and a space of hs2 with a child of its
// own. Alice's hierarchy walks into them by asking hs2 (the children's via
// server): the public room and space and the space's child are listed, the
// private room is not until she is in it. hs2's /hierarchy answers hs1 for
// the rooms hs1 may see only.
func TestRemoteSpaceHierarchy(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	alice := newUser(t, hs1, "alice")
	bob := newUser(t, hs2, "bob")

	root := alice.createRoom(space("Root"))
	local := alice.createRoom(map[string]any{"preset": "public_chat", "name": "Local room"})
	pub := bob.createRoom(map[string]any{"preset": "public_chat", "name": "Remote public"})
	priv := bob.createRoom(map[string]any{"preset": "private_chat", "name": "Remote private"})
	sub := bob.createRoom(space("Remote space"))
	deep := bob.createRoom(map[string]any{"preset": "public_chat", "name": "Deep room", "topic": "below the remote space"})
	alice.child(root, local, false, hs1.Name)
	alice.child(root, pub, true, hs2.Name)
	alice.child(root, priv, false, hs2.Name)
	alice.child(root, sub, false, "hs9", hs2.Name) // an unreachable via first
	bob.child(sub, deep, false, hs2.Name)

	hierarchy := func(query string) []string {
		t.Helper()
		r := alice.call("GET", "/_matrix/client/v1/rooms/"+esc(root)+"/hierarchy"+query, nil, false)
		r.Want(t, http.StatusOK, "")
		return roomIDs(r.Body["rooms"])
	}
	got := hierarchy("")
	want := []string{root, local, pub, sub, deep}
	if !sameSet(got, want) {
		t.Fatalf("hierarchy: %v, want %v (private %s left out)", got, want, priv)
	}
	// The remote rooms come with what hs2 knows of them.
	r := alice.call("GET", "/_matrix/client/v1/rooms/"+esc(root)+"/hierarchy", nil, false)
	for _, room := range fedtest.List(r.Body["rooms"]) {
		switch fedtest.Get(room, "room_id") {
		case deep:
			if fedtest.Get(room, "topic") != "below the remote space" || fedtest.Get(room, "join_rule") != "public" ||
				fedtest.Get(room, "num_joined_members") != float64(1) {
				t.Fatalf("deep room: %v", room)
			}
		case sub:
			if fedtest.Get(room, "room_type") != "m.space" || len(fedtest.List(fedtest.Get(room, "children_state"))) != 1 {
				t.Fatalf("remote space: %v", room)
			}
		}
	}
	if got := hierarchy("?suggested_only=true"); !sameSet(got, []string{root, pub}) {
		t.Fatalf("suggested only: %v", got)
	}
	if got := hierarchy("?max_depth=1"); !sameSet(got, []string{root, local, pub, sub}) {
		t.Fatalf("max_depth=1: %v", got)
	}
	// Pages re-walk the remote part too.
	var paged []string
	from := ""
	for range 10 {
		q := "?limit=2"
		if from != "" {
			q += "&from=" + from
		}
		r := alice.call("GET", "/_matrix/client/v1/rooms/"+esc(root)+"/hierarchy"+q, nil, false)
		r.Want(t, http.StatusOK, "")
		paged = append(paged, roomIDs(r.Body["rooms"])...)
		from, _ = r.Body["next_batch"].(string)
		if from == "" {
			break
		}
	}
	if !slices.Equal(paged, got) {
		t.Fatalf("paged hierarchy: %v, want %v", paged, want)
	}

	// hs2 answers hs1 itself: a space with its children, rooms hs1 may not
	// see are 404 as unknown rooms.
	fr := fed(t, hs1, "GET", hs2.Name, "/_matrix/federation/v1/hierarchy/"+esc(sub), nil)
	fr.Want(t, http.StatusOK, "")
	if fedtest.Get(fr.Body, "room", "room_id") != sub || !slices.Equal(roomIDs(fr.Body["children"]), []string{deep}) ||
		len(fedtest.List(fedtest.Get(fr.Body, "room", "children_state"))) != 1 {
		t.Fatalf("hs2's hierarchy of its space: %s", fr.Raw)
	}
	fed(t, hs1, "GET", hs2.Name, "/_matrix/federation/v1/hierarchy/"+esc(priv), nil).Want(t, http.StatusNotFound, "M_NOT_FOUND")
	fed(t, hs1, "GET", hs2.Name, "/_matrix/federation/v1/hierarchy/"+esc("!unknown:hs2"), nil).Want(t, http.StatusNotFound, "M_NOT_FOUND")
	fed(t, hs1, "GET", hs2.Name, "/_matrix/federation/v1/hierarchy/notaroom", nil).Want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	fed(t, hs1, "GET", hs2.Name, "/_matrix/federation/v1/hierarchy/"+esc(sub)+"?suggested_only=maybe", nil).Want(t, http.StatusBadRequest, "M_INVALID_PARAM")

	// A private child of a space hs2 holds is listed as inaccessible to
	// hs1, until hs1 has a member in it.
	bob.child(sub, priv, false, hs2.Name)
	fr = fed(t, hs1, "GET", hs2.Name, "/_matrix/federation/v1/hierarchy/"+esc(sub), nil)
	if !slices.Equal(fedtest.List(fr.Body["inaccessible_children"]), []any{priv}) || slices.Contains(roomIDs(fr.Body["children"]), priv) {
		t.Fatalf("private child's listing: %s", fr.Raw)
	}
	if got := hierarchy(""); slices.Contains(got, priv) {
		t.Fatalf("private room leaked: %v", got)
	}
	bob.Must("POST", "/rooms/"+esc(priv)+"/invite", map[string]any{"user_id": alice.ID})
	// The invite reaches hs1 before the inviter's answer (PUT /invite).
	alice.call("POST", "/_matrix/client/v3/join/"+esc(priv)+"?via=hs2", map[string]any{}, false).Want(t, http.StatusOK, "")
	fr = fed(t, hs1, "GET", hs2.Name, "/_matrix/federation/v1/hierarchy/"+esc(priv), nil)
	fr.Want(t, http.StatusOK, "")
	if got := hierarchy(""); !slices.Contains(got, priv) {
		t.Fatalf("private room alice joined is not listed: %v", got)
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			return false
		}
	}
	return true
}
