package e2e

import (
	"fmt"
	"net/http"
	"testing"

	"maunium.net/go/mautrix"

	"matrixhs/tests/testserver"
)

type userDirRes struct {
	Limited bool `json:"limited"`
	Results []struct {
		UserID      string `json:"user_id"`
		DisplayName string `json:"display_name"`
		AvatarURL   string `json:"avatar_url"`
	} `json:"results"`
}

func (r userDirRes) ids() []string {
	out := []string{}
	for _, u := range r.Results {
		out = append(out, u.UserID)
	}
	return out
}

func userDirSearch(t *testing.T, s *testserver.Server, token string, body map[string]any) userDirRes {
	t.Helper()
	r := do(t, "POST", v3(s, "user_directory", "search"), token, body).want(t, http.StatusOK, "")
	var out userDirRes
	decodeInto(t, r.Raw, &out)
	if out.Results == nil {
		t.Fatalf("no results array: %s", r.Raw)
	}
	return out
}

// TestUserDirVisibility: the directory shows users one shares a room with
// and users in public rooms, never anyone else.
func TestUserDirVisibility(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	carol := newUser(t, s, "carol")
	dave := newUser(t, s, "dave")
	if err := bob.SetDisplayName(ctxT(t), "Robert Tables"); err != nil {
		t.Fatal(err)
	}
	private := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: nil})
	do(t, "POST", roomURL(s, private, "invite"), alice.AccessToken, map[string]any{"user_id": bob.UserID}).want(t, 200, "")
	join(t, bob, private)
	mkRoom(t, carol, &mautrix.ReqCreateRoom{Preset: "public_chat"})              // carol alone, in public
	davesRoom := mkRoom(t, dave, &mautrix.ReqCreateRoom{Preset: "private_chat"}) // dave alone, private
	do(t, "POST", roomURL(s, davesRoom, "invite"), dave.AccessToken, map[string]any{"user_id": alice.UserID}).want(t, 200, "")

	search := func(term string) []string {
		t.Helper()
		return userDirSearch(t, s, alice.AccessToken, map[string]any{"search_term": term}).ids()
	}
	wantSearchSet(t, "bob by localpart", search("bob"), string(bob.UserID))
	wantSearchSet(t, "bob by display name word", search("tab"), string(bob.UserID))
	wantSearchSet(t, "bob by display name, any case", search("ROBERT t"), string(bob.UserID))
	wantSearchSet(t, "bob by user ID prefix", search("@bo"), string(bob.UserID))
	wantSearchSet(t, "bob by full user ID", search(string(bob.UserID)), string(bob.UserID))
	wantSearchSet(t, "carol in a public room", search("carol"), string(carol.UserID))
	wantSearchSet(t, "dave shares no room (an invite is not sharing)", search("dave"))
	wantSearchSet(t, "no match", search("zzz"))
	wantSearchSet(t, "oneself, through private rooms only (as Synapse)", search("alice"))

	r := userDirSearch(t, s, alice.AccessToken, map[string]any{"search_term": "robert"})
	if len(r.Results) != 1 || r.Results[0].DisplayName != "Robert Tables" || r.Limited {
		t.Fatalf("bob's entry = %+v", r)
	}
	// Through mautrix, as clients call it. The spec's field is display_name;
	// mautrix reads a profile's displayname, so the name is in Extra.
	res, err := alice.SearchUserDirectory(ctxT(t), "tables", 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Results) != 1 || res.Results[0].UserID != bob.UserID || res.Results[0].Extra["display_name"] != "Robert Tables" {
		t.Fatalf("mautrix result = %+v", res)
	}

	// Dave sees carol (public) but not alice or bob.
	for term, want := range map[string][]string{"carol": {string(carol.UserID)}, "alice": nil, "bob": nil, "robert": nil} {
		wantSearchSet(t, "dave searching "+term, userDirSearch(t, s, dave.AccessToken, map[string]any{"search_term": term}).ids(), want...)
	}
	// Once bob leaves the only room he shared with alice, he is gone from her directory.
	if _, err := bob.LeaveRoom(ctxT(t), private); err != nil {
		t.Fatal(err)
	}
	wantSearchSet(t, "bob after leaving", search("bob"))

	do(t, "POST", v3(s, "user_directory", "search"), alice.AccessToken, map[string]any{}).want(t, http.StatusBadRequest, "M_MISSING_PARAM")
	do(t, "POST", v3(s, "user_directory", "search"), alice.AccessToken, map[string]any{"search_term": 1}).want(t, http.StatusBadRequest, "M_BAD_JSON")
	do(t, "POST", v3(s, "user_directory", "search"), "", map[string]any{"search_term": "x"}).want(t, http.StatusUnauthorized, "M_MISSING_TOKEN")
}

// TestUserDirLimit: limit (default 10) and limited.
func TestUserDirLimit(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	for i := 0; i < 12; i++ {
		u := newUser(t, s, fmt.Sprintf("member%02d", i))
		join(t, u, room)
	}
	r := userDirSearch(t, s, alice.AccessToken, map[string]any{"search_term": "member", "limit": 3})
	if len(r.Results) != 3 || !r.Limited {
		t.Fatalf("limit 3: %d results, limited %v", len(r.Results), r.Limited)
	}
	r = userDirSearch(t, s, alice.AccessToken, map[string]any{"search_term": "member"})
	if len(r.Results) != 10 || !r.Limited {
		t.Fatalf("default limit: %d results, limited %v", len(r.Results), r.Limited)
	}
	r = userDirSearch(t, s, alice.AccessToken, map[string]any{"search_term": "member", "limit": 50})
	if len(r.Results) != 12 || r.Limited {
		t.Fatalf("limit 50: %d results, limited %v", len(r.Results), r.Limited)
	}
	seen := map[string]bool{}
	for _, id := range r.ids() {
		if seen[id] {
			t.Fatalf("%s listed twice", id)
		}
		seen[id] = true
	}
	r = userDirSearch(t, s, alice.AccessToken, map[string]any{"search_term": "member07"})
	if len(r.Results) != 1 || r.Results[0].UserID != s.UserID("member07") {
		t.Fatalf("exact localpart: %v", r.ids())
	}
}
