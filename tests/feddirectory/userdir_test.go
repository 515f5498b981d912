package feddirectory

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"matrixhs/tests/fedtest"
)

// TestUserDirectoryRemoteUsers: alice of hs1 finds bob of hs2 in the user
// directory once they share a (private) room, with the display name and
// avatar of his member event; carol of hs2, who shares no room with her
// (only a private room of hs2's), is not found; bob's later profile change
// reaches the directory through his new member event.
func TestUserDirectoryRemoteUsers(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	alice := newUser(t, hs1, "alice")
	bob := newUser(t, hs2, "bob")
	carol := newUser(t, hs2, "carol")
	bob.setName("Bobby Remote")
	bob.Must("PUT", "/profile/"+esc(bob.ID)+"/avatar_url", map[string]any{"avatar_url": "mxc://hs2/bobface"})
	carol.setName("Carol Remote")
	hidden := carol.createRoom(map[string]any{"preset": "private_chat"})
	carol.Must("POST", "/rooms/"+esc(hidden)+"/invite", map[string]any{"user_id": bob.ID})
	bob.call("POST", "/_matrix/client/v3/join/"+esc(hidden), map[string]any{}, false).Want(t, http.StatusOK, "")

	search := func(term string) []any {
		t.Helper()
		r := alice.call("POST", "/_matrix/client/v3/user_directory/search", map[string]any{"search_term": term}, false)
		r.Want(t, http.StatusOK, "")
		return fedtest.List(r.Body["results"])
	}
	if got := search("remote"); len(got) != 0 {
		t.Fatalf("alice finds users she shares no room with: %v", got)
	}

	room := alice.createRoom(map[string]any{"preset": "private_chat"})
	alice.Must("POST", "/rooms/"+esc(room)+"/invite", map[string]any{"user_id": bob.ID})
	bob.call("POST", "/_matrix/client/v3/join/"+esc(room)+"?via=hs1", map[string]any{}, false).Want(t, http.StatusOK, "")
	got := search("remote")
	if len(got) != 1 || fedtest.Get(got[0], "user_id") != bob.ID || fedtest.Get(got[0], "display_name") != "Bobby Remote" ||
		fedtest.Get(got[0], "avatar_url") != "mxc://hs2/bobface" {
		t.Fatalf("search for remote: %v", got)
	}
	if got := search("carol"); len(got) != 0 {
		t.Fatalf("carol found: %v", got)
	}
	if got := search("@bob:hs2"); len(got) != 1 {
		t.Fatalf("search by user ID: %v", got)
	}

	// A new display name comes as a new member event, over federation.
	bob.setName("Robert Remote")
	fedtest.WaitFor(t, 20*time.Second, "bob's new name in hs1's directory", func() error {
		got := search("robert")
		if len(got) != 1 || fedtest.Get(got[0], "display_name") != "Robert Remote" {
			return fmt.Errorf("search for robert: %v", got)
		}
		return nil
	})

	// Bad input.
	alice.call("POST", "/_matrix/client/v3/user_directory/search", map[string]any{}, false).Want(t, http.StatusBadRequest, "M_MISSING_PARAM")
	alice.call("POST", "/_matrix/client/v3/user_directory/search", map[string]any{"search_term": 5}, false).Want(t, http.StatusBadRequest, "M_BAD_JSON")
	alice.call("POST", "/_matrix/client/v3/user_directory/search", map[string]any{"search_term": "bob"}, true).Want(t, http.StatusUnauthorized, "M_MISSING_TOKEN")
}
