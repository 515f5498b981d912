package ids

import (
	"strings"
	"testing"
)

func TestIdentifierGrammar(t *testing.T) {
	hash := strings.Repeat("a", 20) + "-_" + strings.Repeat("B", 21)
	cases := []struct {
		check func(string) error
		id    string
		ok    bool
	}{
		{UserID, "@alice:example.org", true},
		{UserID, "@Alice.Old+Style!:example.org:8448", true}, // historical localpart
		{UserID, "@bob:[::1]:8448", true},
		{UserID, "@A B:x", false},
		{UserID, "@tab\t:x", false},
		{UserID, "@é:x", false},
		{UserID, "alice:example.org", false},
		{UserID, "@alice", false},
		{UserID, "@:example.org", false},
		{UserID, "@alice:", false},
		{UserID, "@invalid:dom$ain$.com", false},
		{UserID, "@" + strings.Repeat("a", 250) + ":x.org", false},
		{RoomAlias, "#room:example.org", true},
		{RoomAlias, "#räum with space:example.org", true},
		{RoomAlias, "#room", false},
		{RoomAlias, "room:example.org", false},
		{RoomAlias, "#:example.org", false},
		{RoomID, "!abc:example.org", true},
		{RoomID, "!" + hash, true},
		{RoomID, "!" + hash[:42], false},
		{RoomID, "!" + strings.Replace(hash, "a", "+", 1), false},
		{RoomID, "!a b:example.org", false},
		{RoomID, "abc:example.org", false},
		{RoomID, "!abc:bad$server", false},
		{EventID, "$abc:example.org", true},
		{EventID, "$" + hash, true},
		{EventID, "$" + strings.Replace(hash, "a", "+", 1), true}, // v3 alphabet
		{EventID, "$notanid", false},
		{EventID, "notanevent", false},
		{EventID, "$", false},
		{EventID, "$x y:example.org", false},
	}
	for _, c := range cases {
		if err := c.check(c.id); (err == nil) != c.ok {
			t.Errorf("%q: err = %v, want ok=%v", c.id, err, c.ok)
		}
	}
}
