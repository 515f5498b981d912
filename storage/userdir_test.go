package storage

import (
	"context"
	"slices"
	"testing"
)

func userIDs(users []DirectoryUser) []string {
	var out []string
	for _, u := range users {
		out = append(out, u.UserID)
	}
	return out
}

func TestUserDirSearch(t *testing.T) {
	ctx := context.Background()
	f := newSearchFixture(t)
	empty := ""
	account := func(local, name, avatar string, deactivated bool) {
		mustWrite(t, f.db, func(tx *Tx) error {
			uid := "@" + local + ":x"
			if err := tx.InsertAccount(ctx, Account{UserID: uid, Localpart: local, CreatedTS: 1, DisplayName: name}); err != nil {
				return err
			}
			if avatar != "" {
				if err := tx.SetAvatarURL(ctx, uid, avatar); err != nil {
					return err
				}
			}
			if deactivated {
				return tx.Deactivate(ctx, uid, false)
			}
			return nil
		})
	}
	joinRule := func(room, rule string) {
		f.add(room, "$jr"+room+rule, "m.room.join_rules", "@x:x", &empty, map[string]any{"join_rule": rule}, "")
	}
	account("searcher", "Searcher", "", false)
	account("bob", "Robert Tables", "mxc://x/bob", false)
	account("carol", "Carol Public", "", false)
	account("dave", "Dave Hidden", "", false)
	account("erin", "Erin Left", "", false)
	account("frank", "Frank Invited", "", false)
	account("gone", "Gone Deactivated", "", true)
	account("robin", "", "", false)

	// !shared: a private room of the searcher with bob, a deactivated user
	// and a remote user; erin left it and frank is only invited.
	joinRule("!shared", "invite")
	f.member("!shared", "@searcher:x", "join")
	f.member("!shared", "@bob:x", "join")
	f.member("!shared", "@gone:x", "join")
	f.member("!shared", "@erin:x", "join")
	f.member("!shared", "@erin:x", "leave")
	f.member("!shared", "@frank:x", "invite")
	remote := "@remote:other"
	f.add("!shared", "$remote", "m.room.member", remote, &remote, map[string]any{"membership": "join", "displayname": "Remote Robbie", "avatar_url": "mxc://other/r"}, "")
	// !public: carol and robin, not the searcher.
	joinRule("!public", "invite")
	joinRule("!public", "public")
	f.member("!public", "@carol:x", "join")
	f.member("!public", "@robin:x", "join")
	// !private: dave alone; the searcher left it.
	joinRule("!private", "invite")
	f.member("!private", "@dave:x", "join")
	f.member("!private", "@searcher:x", "join")
	f.member("!private", "@searcher:x", "leave")
	// !readable: invite-only but world_readable: its members are public.
	account("wendy", "Wendy Reader", "", false)
	joinRule("!readable", "invite")
	f.add("!readable", "$hvr", "m.room.history_visibility", "@x:x", &empty, map[string]any{"history_visibility": "world_readable"}, "")
	f.member("!readable", "@wendy:x", "join")
	// !was-public: now invite-only.
	joinRule("!was-public", "public")
	joinRule("!was-public", "invite")
	f.member("!was-public", "@erin:x", "join")

	search := func(term string, limit int) ([]string, bool) {
		t.Helper()
		users, limited, err := f.db.SearchUserDirectory(ctx, "@searcher:x", term, limit)
		if err != nil {
			t.Fatal(err)
		}
		return userIDs(users), limited
	}
	for term, want := range map[string][]string{
		"bob": {"@bob:x"},
		// Prefixes of a whole name or ID first (those with a profile
		// first), then prefixes of a word.
		"ROB":             {"@bob:x", "@robin:x", "@remote:other"},
		"tables":          {"@bob:x"},
		"robert tab":      {"@bob:x"},
		"tab rob":         {"@bob:x"},
		"@bo":             {"@bob:x"},
		"bob:x":           {"@bob:x"},
		"carol":           {"@carol:x"},
		"public":          {"@carol:x"},
		"dave":            nil, // shares no room any more, not in a public room
		"hidden":          nil,
		"erin":            nil, // left the shared room; her other room is no longer public
		"frank":           nil, // only invited
		"gone":            nil, // deactivated
		"robbie":          {"@remote:other"},
		"wendy":           {"@wendy:x"},
		"searcher":        nil, // oneself only through a public room (Synapse)
		"":                nil,
		"   ":             nil,
		"zzz":             nil,
		"robert tablesxx": nil,
	} {
		got, _ := search(term, 10)
		if !slices.Equal(got, want) {
			t.Errorf("search %q = %v, want %v", term, got, want)
		}
	}
	users, _, _ := f.db.SearchUserDirectory(ctx, "@searcher:x", "robert", 10)
	if len(users) != 1 || users[0].DisplayName != "Robert Tables" || users[0].AvatarURL != "mxc://x/bob" {
		t.Fatalf("profile = %+v", users)
	}
	users, _, _ = f.db.SearchUserDirectory(ctx, "@searcher:x", "robbie", 10)
	if len(users) != 1 || users[0].DisplayName != "Remote Robbie" || users[0].AvatarURL != "mxc://other/r" {
		t.Fatalf("remote profile from the member event = %+v", users)
	}
	// Limit and limited.
	got, limited := search("r", 10)
	if !slices.Equal(got, []string{"@remote:other", "@bob:x", "@robin:x", "@wendy:x"}) || limited {
		t.Fatalf("r: %v limited %v", got, limited)
	}
	got, limited = search("r", 2)
	if len(got) != 2 || !limited {
		t.Fatalf("r, limit 2: %v limited %v", got, limited)
	}
	got, _ = search("robin", 10)
	if !slices.Equal(got, []string{"@robin:x"}) {
		t.Fatalf("robin: %v", got)
	}
	// Dave sees the searcher? No: the searcher left their only shared room.
	users, _, _ = f.db.SearchUserDirectory(ctx, "@dave:x", "searcher", 10)
	if len(users) != 0 {
		t.Fatalf("dave found %v", userIDs(users))
	}
}
