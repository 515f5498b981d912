package filter

import "testing"

func TestMatchType(t *testing.T) {
	for _, tc := range []struct {
		pattern, typ string
		want         bool
	}{
		{"m.room.message", "m.room.message", true},
		{"m.room.*", "m.room.message", true},
		{"m.room.*", "m.reaction", false},
		{"*", "anything", true},
		{"m.*.member", "m.room.member", true},
		{"m.*.member", "m.room.members", false},
	} {
		if got := matchType(tc.pattern, tc.typ); got != tc.want {
			t.Errorf("matchType(%q, %q) = %v", tc.pattern, tc.typ, got)
		}
	}
}

func TestRoomEventFilter(t *testing.T) {
	types := []string{"m.room.*"}
	senders := []string{"@a:x"}
	yes := true
	f := &RoomEventFilter{EventFilter: EventFilter{Types: &types, NotTypes: []string{"m.room.member"}, Senders: &senders}, ContainsURL: &yes}
	if !f.Matches("!r", "m.room.message", "@a:x", []byte(`{"url":"mxc://a/b"}`)) {
		t.Error("matching event refused")
	}
	for _, c := range []struct{ typ, sender, content string }{
		{"m.room.member", "@a:x", `{"url":"u"}`},
		{"m.reaction", "@a:x", `{"url":"u"}`},
		{"m.room.message", "@b:x", `{"url":"u"}`},
		{"m.room.message", "@a:x", `{}`},
	} {
		if f.Matches("!r", c.typ, c.sender, []byte(c.content)) {
			t.Errorf("%+v passed", c)
		}
	}
	var nilFilter *RoomEventFilter
	if !nilFilter.Matches("!r", "x", "y", nil) || nilFilter.LimitOr(7) != 7 {
		t.Error("nil filter must match everything")
	}
}
