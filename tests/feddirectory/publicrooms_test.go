package feddirectory

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/federationapi"
	"matrixhs/internal/httputil"
	"matrixhs/tests/fedtest"
)

// TestRemotePublicRoomList: a user of hs2 reads hs1's public room list
// through hs2 (GET and POST ?server=hs1): hs1's published rooms only,
// filtered by a search term and room type, paged with hs1's tokens; hs1
// answers other servers' signed /publicRooms itself; bad server names,
// unreachable servers and anonymous requests for another server's list are
// refused.
func TestRemotePublicRoomList(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	alice := newUser(t, hs1, "alice")
	bob := newUser(t, hs2, "bob")
	alpha := alice.createRoom(map[string]any{"preset": "public_chat", "visibility": "public", "name": "Alpha lounge", "topic": "all things alpha"})
	beta := alice.createRoom(map[string]any{"preset": "public_chat", "visibility": "public", "name": "Beta corner"})
	spaceID := alice.createRoom(map[string]any{"preset": "public_chat", "visibility": "public", "name": "Gamma space",
		"creation_content": map[string]any{"type": "m.space"}})
	secret := alice.createRoom(map[string]any{"preset": "private_chat", "name": "Alpha secrets"})
	unlisted := alice.createRoom(map[string]any{"preset": "public_chat", "name": "Alpha unlisted"})

	// The whole list, by GET.
	r := bob.call("GET", "/_matrix/client/v3/publicRooms?server=hs1", nil, false)
	r.Want(t, http.StatusOK, "")
	got := roomIDs(r.Body["chunk"])
	if len(got) != 3 || !has(got, alpha) || !has(got, beta) || !has(got, spaceID) || has(got, secret) || has(got, unlisted) {
		t.Fatalf("hs1's list from hs2: %v (want %s %s %s)", got, alpha, beta, spaceID)
	}
	if r.Body["total_room_count_estimate"] != float64(3) {
		t.Fatalf("total_room_count_estimate: %s", r.Raw)
	}

	// Filtered by POST: a search term (name or topic) and room types.
	r = bob.call("POST", "/_matrix/client/v3/publicRooms?server=hs1", map[string]any{"filter": map[string]any{"generic_search_term": "ALPHA"}}, false)
	r.Want(t, http.StatusOK, "")
	if got := roomIDs(r.Body["chunk"]); len(got) != 1 || got[0] != alpha {
		t.Fatalf("search for alpha: %v", got)
	}
	if name := fedtest.Get(fedtest.List(r.Body["chunk"])[0], "name"); name != "Alpha lounge" {
		t.Fatalf("alpha's chunk: %s", r.Raw)
	}
	r = bob.call("POST", "/_matrix/client/v3/publicRooms?server=hs1", map[string]any{"filter": map[string]any{"room_types": []string{"m.space"}}}, false)
	if got := roomIDs(r.Body["chunk"]); len(got) != 1 || got[0] != spaceID {
		t.Fatalf("spaces only: %v", got)
	}

	// Pages of one, with hs1's tokens, forwards and back.
	var seen []string
	since := ""
	for range 5 {
		q := url.Values{"server": {"hs1"}, "limit": {"1"}}
		if since != "" {
			q.Set("since", since)
		}
		r := bob.call("GET", "/_matrix/client/v3/publicRooms?"+q.Encode(), nil, false)
		r.Want(t, http.StatusOK, "")
		seen = append(seen, roomIDs(r.Body["chunk"])...)
		next, _ := r.Body["next_batch"].(string)
		if next == "" {
			break
		}
		if len(seen) == 2 {
			prev, _ := r.Body["prev_batch"].(string)
			back := bob.call("GET", "/_matrix/client/v3/publicRooms?"+url.Values{"server": {"hs1"}, "limit": {"1"}, "since": {prev}}.Encode(), nil, false)
			if ids := roomIDs(back.Body["chunk"]); len(ids) != 1 || ids[0] != seen[0] {
				t.Fatalf("back from page 2: %s (first page %v)", back.Raw, seen[:1])
			}
		}
		since = next
	}
	if len(seen) != 3 || !has(seen, alpha) || !has(seen, beta) || !has(seen, spaceID) {
		t.Fatalf("paged list: %v", seen)
	}
	bob.call("POST", "/_matrix/client/v3/publicRooms?server=hs1", map[string]any{"since": "garbage"}, false).Want(t, http.StatusBadRequest, "M_INVALID_PARAM")

	// What hs1 answers other servers directly.
	fr := fed(t, hs2, "GET", "hs1", "/_matrix/federation/v1/publicRooms?limit=2", nil)
	fr.Want(t, http.StatusOK, "")
	if got := roomIDs(fr.Body["chunk"]); len(got) != 2 || fr.Body["next_batch"] == nil {
		t.Fatalf("federation GET limit=2: %s", fr.Raw)
	}
	fr = fed(t, hs2, "POST", "hs1", "/_matrix/federation/v1/publicRooms", map[string]any{"filter": map[string]any{"generic_search_term": "beta"}})
	if got := roomIDs(fr.Body["chunk"]); len(got) != 1 || got[0] != beta {
		t.Fatalf("federation POST search: %s", fr.Raw)
	}
	fr = fed(t, hs2, "POST", "hs1", "/_matrix/federation/v1/publicRooms", map[string]any{"third_party_instance_id": "irc"})
	if fr.Status != http.StatusOK || len(fedtest.List(fr.Body["chunk"])) != 0 {
		t.Fatalf("a third-party network's list: %s", fr.Raw)
	}
	fed(t, hs2, "GET", "hs1", "/_matrix/federation/v1/publicRooms?limit=x", nil).Want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	fed(t, hs2, "POST", "hs1", "/_matrix/federation/v1/publicRooms", map[string]any{"limit": "ten"}).Want(t, http.StatusBadRequest, "M_BAD_JSON")
	fed(t, hs2, "POST", "hs1", "/_matrix/federation/v1/publicRooms",
		map[string]any{"include_all_networks": true, "third_party_instance_id": "irc"}).Want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	// Unsigned requests are not answered.
	anon, err := http.Get(hs1.URL() + "/_matrix/federation/v1/publicRooms")
	if err != nil {
		t.Fatal(err)
	}
	anon.Body.Close()
	if anon.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unsigned federation /publicRooms: %d", anon.StatusCode)
	}

	// Bad input on the client side.
	bob.call("GET", "/_matrix/client/v3/publicRooms?server=hs1", nil, true).Want(t, http.StatusUnauthorized, "M_MISSING_TOKEN")
	bob.call("GET", "/_matrix/client/v3/publicRooms?server="+url.QueryEscape("hs1:notaport"), nil, false).Want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	bob.call("POST", "/_matrix/client/v3/publicRooms?server="+url.QueryEscape("bad name"), map[string]any{}, false).Want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	bob.call("GET", "/_matrix/client/v3/publicRooms?server=hs9", nil, false).Want(t, http.StatusBadGateway, "M_UNKNOWN")
	bob.call("POST", "/_matrix/client/v3/publicRooms?server=hs9", map[string]any{"filter": map[string]any{"generic_search_term": "x"}}, false).
		Want(t, http.StatusBadGateway, "M_UNKNOWN")
	// Its own name is its own list.
	if got := roomIDs(bob.call("GET", "/_matrix/client/v3/publicRooms?server=hs2", nil, false).Body["chunk"]); len(got) != 0 {
		t.Fatalf("hs2's own list: %v", got)
	}
}

// TestRemotePublicRoomListUnfiltered: a server that does not filter its
// list (POST /publicRooms unrecognised, as before MSC2197) is asked for its
// whole list, which is filtered here, as Synapse does; a server refusing
// to share its list is 502 for filtered requests and its own refusal for
// plain ones.
func TestRemotePublicRoomListUnfiltered(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1 := n.Start("hs1", fedtest.WithFederation(func(o *federationapi.Options) {
		o.ExtraRoutes = func(rt *httputil.Router, api *federationapi.API) {
			rt.Exact("POST", "/_matrix/federation/v1/publicRooms", api.Auth.Handler(func(*http.Request, spec.ServerName) (any, error) {
				return nil, httputil.Unrecognized("Unrecognized request")
			}))
		}
	}))
	hs3 := n.Start("hs3", fedtest.WithFederation(func(o *federationapi.Options) {
		o.ExtraRoutes = func(rt *httputil.Router, api *federationapi.API) {
			rt.Handle("/_matrix/federation/v1/publicRooms", api.Auth.Handler(func(*http.Request, spec.ServerName) (any, error) {
				return nil, httputil.Forbidden("You are not allowed to view the public rooms list of hs3")
			}), "GET", "POST")
		}
	}))
	hs2 := n.Start("hs2")
	alice := newUser(t, hs1, "alice")
	bob := newUser(t, hs2, "bob")
	alpha := alice.createRoom(map[string]any{"preset": "public_chat", "visibility": "public", "name": "Alpha lounge"})
	alice.createRoom(map[string]any{"preset": "public_chat", "visibility": "public", "name": "Beta corner"})

	r := bob.call("POST", "/_matrix/client/v3/publicRooms?server=hs1", map[string]any{"limit": 1, "filter": map[string]any{"generic_search_term": "lounge"}}, false)
	r.Want(t, http.StatusOK, "")
	if got := roomIDs(r.Body["chunk"]); len(got) != 1 || got[0] != alpha || r.Body["next_batch"] != nil {
		t.Fatalf("list filtered here: %s", r.Raw)
	}
	if got := roomIDs(bob.call("POST", "/_matrix/client/v3/publicRooms?server=hs1", map[string]any{}, false).Body["chunk"]); len(got) != 2 {
		t.Fatalf("unfiltered list: %v", got)
	}

	bob.call("GET", "/_matrix/client/v3/publicRooms?server="+string(hs3.Name), nil, false).Want(t, http.StatusForbidden, "M_FORBIDDEN")
	bob.call("POST", "/_matrix/client/v3/publicRooms?server="+string(hs3.Name), map[string]any{"filter": map[string]any{"generic_search_term": "x"}}, false).
		Want(t, http.StatusBadGateway, "M_UNKNOWN")
}
