package pushrules

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

const (
	evMe      = "@carol:example.org"
	evMeLocal = "carol"
	evMeName  = "Carol Jones"
	evOther   = "@dave:example.org"
	evRoom    = "!room:example.org"
)

// mkEvent builds an event JSON with sensible defaults; fields in extra
// override or add top-level keys.
func mkEvent(t testing.TB, typ string, content map[string]any, extra map[string]any) *Event {
	t.Helper()
	m := map[string]any{
		"type":     typ,
		"room_id":  evRoom,
		"sender":   evOther,
		"event_id": "$ev:example.org",
		"content":  content,
	}
	for k, v := range extra {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := NewEvent(b)
	if err != nil {
		t.Fatalf("NewEvent(%s): %v", b, err)
	}
	return ev
}

func text(body string) map[string]any { return map[string]any{"msgtype": "m.text", "body": body} }

func with(m map[string]any, k string, v any) map[string]any {
	out := map[string]any{}
	for kk, vv := range m {
		out[kk] = vv
	}
	out[k] = v
	return out
}

func baseCtx(members int) EvalContext {
	return EvalContext{
		UserID:      evMe,
		DisplayName: evMeName,
		MemberCount: members,
		// SenderPowerLevel 0, NotificationPowerLevels nil => "room" needs 50.
	}
}

func mustPutRule(t *testing.T, u *UserRules, kind, id, body string) {
	t.Helper()
	if err := u.Put(kind, id, []byte(body), "", ""); err != nil {
		t.Fatalf("Put %s/%s: %v", kind, id, err)
	}
}

type want struct {
	notify, highlight bool
	sound, rule       string
}

func checkResult(t *testing.T, got Result, w want) {
	t.Helper()
	if got.Notify != w.notify || got.Highlight != w.highlight || got.Sound != w.sound || got.RuleID != w.rule {
		t.Errorf("got {notify:%v highlight:%v sound:%q rule:%q}, want {notify:%v highlight:%v sound:%q rule:%q}",
			got.Notify, got.Highlight, got.Sound, got.RuleID, w.notify, w.highlight, w.sound, w.rule)
	}
}

func TestEvaluateDefaultRules(t *testing.T) {
	rs := Effective(UserRules{}, evMe, evMeLocal)
	mentions := func(users []string, room bool) map[string]any {
		m := map[string]any{}
		if users != nil {
			m["user_ids"] = users
		}
		if room {
			m["room"] = true
		}
		return m
	}
	member := func(membership, stateKey string) *Event {
		return mkEvent(t, "m.room.member", map[string]any{"membership": membership},
			map[string]any{"state_key": stateKey})
	}
	cases := []struct {
		name string
		ev   *Event
		ctx  func(*EvalContext)
		want want
	}{
		{"plain message 1:1", mkEvent(t, "m.room.message", text("hi there"), nil),
			func(c *EvalContext) { c.MemberCount = 2 },
			want{true, false, "default", RuleRoomOneToOne}},
		{"plain message group", mkEvent(t, "m.room.message", text("hi there"), nil), nil,
			want{true, false, "", RuleMessage}},
		{"notice suppressed", mkEvent(t, "m.room.message", map[string]any{"msgtype": "m.notice", "body": "bot says carol"}, nil),
			func(c *EvalContext) { c.MemberCount = 2 },
			want{false, false, "", RuleSuppressNotices}},
		{"user mention via m.mentions", mkEvent(t, "m.room.message", with(text("hey"), "m.mentions", mentions([]string{evOther, evMe}, false)), nil), nil,
			want{true, true, "default", RuleIsUserMention}},
		{"m.mentions for someone else, display name in body ignored",
			mkEvent(t, "m.room.message", with(text("Carol Jones and carol"), "m.mentions", mentions([]string{evOther}, false)), nil), nil,
			want{true, false, "", RuleMessage}},
		{"display name in body without m.mentions", mkEvent(t, "m.room.message", text("ping carol jones!"), nil), nil,
			want{true, true, "default", RuleContainsDisplayName}},
		{"display name in body with empty m.mentions", mkEvent(t, "m.room.message", with(text("ping Carol Jones"), "m.mentions", map[string]any{}), nil), nil,
			want{true, false, "", RuleMessage}},
		{"display name only as part of a word", mkEvent(t, "m.room.message", text("MaryCarol Jonesy"), nil),
			func(c *EvalContext) { c.DisplayName = "Carol Jones" },
			want{true, false, "", RuleMessage}},
		{"no display name never matches", mkEvent(t, "m.room.message", text("hello"), nil),
			func(c *EvalContext) { c.DisplayName = "" },
			want{true, false, "", RuleMessage}},
		{"localpart in body (contains_user_name)", mkEvent(t, "m.room.message", text("is CAROL around?"), nil),
			func(c *EvalContext) { c.DisplayName = "" },
			want{true, true, "default", RuleContainsUserName}},
		{"localpart in body with m.mentions", mkEvent(t, "m.room.message", with(text("is carol around?"), "m.mentions", map[string]any{}), nil),
			func(c *EvalContext) { c.DisplayName = "" },
			want{true, false, "", RuleMessage}},
		{"m.mentions.room with power", mkEvent(t, "m.room.message", with(text("everyone"), "m.mentions", mentions(nil, true)), nil),
			func(c *EvalContext) { c.SenderPowerLevel = 50 },
			want{true, true, "", RuleIsRoomMention}},
		{"m.mentions.room without power", mkEvent(t, "m.room.message", with(text("@room everyone"), "m.mentions", mentions(nil, true)), nil),
			func(c *EvalContext) { c.SenderPowerLevel = 49 },
			want{true, false, "", RuleMessage}},
		{"m.mentions.room with lowered notifications level", mkEvent(t, "m.room.message", with(text("all"), "m.mentions", mentions(nil, true)), nil),
			func(c *EvalContext) { c.NotificationPowerLevels = map[string]int64{"room": 0} },
			want{true, true, "", RuleIsRoomMention}},
		{"m.mentions.room as string is not true", mkEvent(t, "m.room.message", with(text("all"), "m.mentions", map[string]any{"room": "true"}), nil),
			func(c *EvalContext) { c.SenderPowerLevel = 100 },
			want{true, false, "", RuleMessage}},
		{"legacy @room body with power", mkEvent(t, "m.room.message", text("hey @room, lunch"), nil),
			func(c *EvalContext) { c.SenderPowerLevel = 100 },
			want{true, true, "", RuleRoomNotif}},
		{"legacy @room body, raised notifications level", mkEvent(t, "m.room.message", text("hey @room"), nil),
			func(c *EvalContext) {
				c.SenderPowerLevel = 100
				c.NotificationPowerLevels = map[string]int64{"room": 101}
			},
			want{true, false, "", RuleMessage}},
		{"legacy @room body ignored with m.mentions", mkEvent(t, "m.room.message", with(text("hey @room"), "m.mentions", map[string]any{}), nil),
			func(c *EvalContext) { c.SenderPowerLevel = 100 },
			want{true, false, "", RuleMessage}},
		{"edit does not notify", mkEvent(t, "m.room.message", with(text("* fixed carol"), "m.relates_to", map[string]any{"rel_type": "m.replace", "event_id": "$x"}), nil),
			func(c *EvalContext) { c.MemberCount = 2 },
			want{false, false, "", RuleSuppressEdits}},
		{"reply (m.in_reply_to) still notifies", mkEvent(t, "m.room.message", with(text("ok"), "m.relates_to", map[string]any{"m.in_reply_to": map[string]any{"event_id": "$x"}}), nil), nil,
			want{true, false, "", RuleMessage}},
		{"reaction does not notify", mkEvent(t, "m.reaction", map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": "$x", "key": "👍"}}, nil),
			func(c *EvalContext) { c.MemberCount = 2 },
			want{false, false, "", RuleReaction}},
		{"invite for me", member("invite", evMe), nil, want{true, false, "default", RuleInviteForMe}},
		{"invite for someone else", member("invite", "@erin:example.org"), nil, want{false, false, "", RuleMemberEvent}},
		{"join", member("join", evOther), func(c *EvalContext) { c.MemberCount = 2 }, want{false, false, "", RuleMemberEvent}},
		{"encrypted 1:1", mkEvent(t, "m.room.encrypted", map[string]any{"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x"}, nil),
			func(c *EvalContext) { c.MemberCount = 2 },
			want{true, false, "default", RuleEncryptedRoomOneToOne}},
		{"encrypted group", mkEvent(t, "m.room.encrypted", map[string]any{"ciphertext": "x"}, nil), nil,
			want{true, false, "", RuleEncrypted}},
		{"call invite rings", mkEvent(t, "m.call.invite", map[string]any{"call_id": "1"}, nil), nil,
			want{true, false, "ring", RuleCall}},
		{"tombstone state event", mkEvent(t, "m.room.tombstone", map[string]any{"body": "moved"}, map[string]any{"state_key": ""}), nil,
			want{true, true, "", RuleTombstone}},
		{"tombstone without state_key matches nothing", mkEvent(t, "m.room.tombstone", map[string]any{"body": "moved"}, nil), nil,
			want{false, false, "", ""}},
		{"server ACL suppressed", mkEvent(t, "m.room.server_acl", map[string]any{}, map[string]any{"state_key": ""}), nil,
			want{false, false, "", RuleServerACL}},
		{"unknown event type matches nothing", mkEvent(t, "com.example.thing", map[string]any{"body": "x"}, nil), nil,
			want{false, false, "", ""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := baseCtx(10)
			if tc.ctx != nil {
				tc.ctx(&ctx)
			}
			checkResult(t, Evaluate(rs, tc.ev, ctx), tc.want)
		})
	}
}

func TestEvaluateUserRules(t *testing.T) {
	msgIn := func(room, sender, body string) *Event {
		return mkEvent(t, "m.room.message", text(body), map[string]any{"room_id": room, "sender": sender})
	}
	cases := []struct {
		name  string
		setup func(t *testing.T, u *UserRules)
		ev    *Event
		ctx   func(*EvalContext)
		want  want
	}{
		{"master enabled silences a mention",
			func(t *testing.T, u *UserRules) {
				if err := u.SetEnabled(KindOverride, RuleMaster, true); err != nil {
					t.Fatal(err)
				}
			},
			mkEvent(t, "m.room.message", with(text("hi"), "m.mentions", map[string]any{"user_ids": []string{evMe}}), nil),
			func(c *EvalContext) { c.MemberCount = 2 },
			want{false, false, "", RuleMaster}},
		{"master enabled beats user override",
			func(t *testing.T, u *UserRules) {
				mustPutRule(t, u, KindOverride, "all", `{"actions":["notify"],"conditions":[]}`)
				if err := u.SetEnabled(KindOverride, RuleMaster, true); err != nil {
					t.Fatal(err)
				}
			},
			msgIn(evRoom, evOther, "x"), nil,
			want{false, false, "", RuleMaster}},
		{"room rule dont_notify mutes the room",
			func(t *testing.T, u *UserRules) { mustPutRule(t, u, KindRoom, evRoom, `{"actions":["dont_notify"]}`) },
			msgIn(evRoom, evOther, "hello"), func(c *EvalContext) { c.MemberCount = 2 },
			want{false, false, "", evRoom}},
		{"room rule leaves other rooms alone",
			func(t *testing.T, u *UserRules) { mustPutRule(t, u, KindRoom, evRoom, `{"actions":["dont_notify"]}`) },
			msgIn("!other:example.org", evOther, "hello"), func(c *EvalContext) { c.MemberCount = 2 },
			want{true, false, "default", RuleRoomOneToOne}},
		{"muted room still highlights on mention (override first)",
			func(t *testing.T, u *UserRules) { mustPutRule(t, u, KindRoom, evRoom, `{"actions":[]}`) },
			mkEvent(t, "m.room.message", with(text("hi"), "m.mentions", map[string]any{"user_ids": []string{evMe}}), nil), nil,
			want{true, true, "default", RuleIsUserMention}},
		{"disabled room rule is skipped",
			func(t *testing.T, u *UserRules) {
				mustPutRule(t, u, KindRoom, evRoom, `{"actions":[]}`)
				if err := u.SetEnabled(KindRoom, evRoom, false); err != nil {
					t.Fatal(err)
				}
			},
			msgIn(evRoom, evOther, "hello"), nil,
			want{true, false, "", RuleMessage}},
		{"sender rule",
			func(t *testing.T, u *UserRules) {
				mustPutRule(t, u, KindSender, evOther, `{"actions":["notify",{"set_tweak":"sound","value":"dave.wav"}]}`)
			},
			msgIn(evRoom, evOther, "hello"), nil,
			want{true, false, "dave.wav", evOther}},
		{"sender rule for another sender",
			func(t *testing.T, u *UserRules) { mustPutRule(t, u, KindSender, "@spam:example.org", `{"actions":[]}`) },
			msgIn(evRoom, evOther, "hello"), nil,
			want{true, false, "", RuleMessage}},
		{"room rule beats sender rule",
			func(t *testing.T, u *UserRules) {
				mustPutRule(t, u, KindSender, evOther, `{"actions":["notify"]}`)
				mustPutRule(t, u, KindRoom, evRoom, `{"actions":[]}`)
			},
			msgIn(evRoom, evOther, "hello"), nil,
			want{false, false, "", evRoom}},
		{"content rule with glob pattern",
			func(t *testing.T, u *UserRules) {
				mustPutRule(t, u, KindContent, "cake", `{"pattern":"cake*lie","actions":["notify",{"set_tweak":"sound","value":"cakealarm.wav"}]}`)
			},
			msgIn(evRoom, evOther, "The CAKE is a lie."), nil,
			want{true, false, "cakealarm.wav", "cake"}},
		{"content rule must end at a word boundary",
			func(t *testing.T, u *UserRules) {
				mustPutRule(t, u, KindContent, "cake", `{"pattern":"cake*lie","actions":["notify",{"set_tweak":"sound","value":"cakealarm.wav"}]}`)
			},
			msgIn(evRoom, evOther, "cakes are lies"), nil,
			want{true, false, "", RuleMessage}},
		{"content rule beats room rule",
			func(t *testing.T, u *UserRules) {
				mustPutRule(t, u, KindRoom, evRoom, `{"actions":[]}`)
				mustPutRule(t, u, KindContent, "beer", `{"pattern":"beer","actions":["notify"]}`)
			},
			msgIn(evRoom, evOther, "beer o'clock"), nil,
			want{true, false, "", "beer"}},
		{"user override with escaped dotted key",
			func(t *testing.T, u *UserRules) {
				mustPutRule(t, u, KindOverride, "threads", `{"actions":["notify",{"set_tweak":"sound","value":"thread"}],
					"conditions":[{"kind":"event_property_is","key":"content.m\\.relates_to.rel_type","value":"m.thread"}]}`)
			},
			mkEvent(t, "m.room.message", with(text("in thread"), "m.relates_to", map[string]any{"rel_type": "m.thread", "event_id": "$root"}), nil), nil,
			want{true, false, "thread", "threads"}},
		{"escaped key does not match nested m.relates_to objects",
			func(t *testing.T, u *UserRules) {
				mustPutRule(t, u, KindOverride, "threads", `{"actions":["notify",{"set_tweak":"sound","value":"thread"}],
					"conditions":[{"kind":"event_property_is","key":"content.m\\.relates_to.rel_type","value":"m.thread"}]}`)
			},
			mkEvent(t, "m.room.message", with(text("nested"), "m", map[string]any{"relates_to": map[string]any{"rel_type": "m.thread"}}), nil), nil,
			want{true, false, "", RuleMessage}},
		{"unescaped key matches nested objects only",
			func(t *testing.T, u *UserRules) {
				mustPutRule(t, u, KindOverride, "nested", `{"actions":["notify",{"set_tweak":"sound","value":"nested"}],
					"conditions":[{"kind":"event_match","key":"content.m.relates_to.rel_type","pattern":"m.thread"}]}`)
			},
			mkEvent(t, "m.room.message", with(text("nested"), "m", map[string]any{"relates_to": map[string]any{"rel_type": "m.thread"}}), nil), nil,
			want{true, false, "nested", "nested"}},
		{"glob ? matches exactly one character",
			func(t *testing.T, u *UserRules) {
				mustPutRule(t, u, KindOverride, "q", `{"actions":["notify",{"set_tweak":"highlight"}],
					"conditions":[{"kind":"event_match","key":"content.msgtype","pattern":"M.?MAGE"}]}`)
			},
			mkEvent(t, "m.room.message", map[string]any{"msgtype": "m.image", "body": "pic"}, nil), nil,
			want{true, true, "", "q"}},
		{"glob ? does not match two characters",
			func(t *testing.T, u *UserRules) {
				mustPutRule(t, u, KindOverride, "q", `{"actions":["notify",{"set_tweak":"highlight"}],
					"conditions":[{"kind":"event_match","key":"content.msgtype","pattern":"m.?mage"}]}`)
			},
			mkEvent(t, "m.room.message", map[string]any{"msgtype": "m.iimage", "body": "pic"}, nil), nil,
			want{true, false, "", RuleMessage}},
		{"glob * on a non-body key must match the whole value",
			func(t *testing.T, u *UserRules) {
				mustPutRule(t, u, KindOverride, "star", `{"actions":["notify",{"set_tweak":"sound","value":"s"}],
					"conditions":[{"kind":"event_match","key":"content.topic","pattern":"lunc?*"}]}`)
			},
			mkEvent(t, "m.room.topic", map[string]any{"topic": "Lunch plans"}, map[string]any{"state_key": ""}), nil,
			want{true, false, "s", "star"}},
		{"glob on a non-body key is anchored",
			func(t *testing.T, u *UserRules) {
				mustPutRule(t, u, KindOverride, "star", `{"actions":["notify"],
					"conditions":[{"kind":"event_match","key":"content.topic","pattern":"lunc?*"}]}`)
			},
			mkEvent(t, "m.room.topic", map[string]any{"topic": " lunch"}, map[string]any{"state_key": ""}), nil,
			want{false, false, "", ""}},
		{"unknown condition kind disables the rule",
			func(t *testing.T, u *UserRules) {
				mustPutRule(t, u, KindOverride, "unk", `{"actions":["notify",{"set_tweak":"highlight"}],
					"conditions":[{"kind":"org.example.future"}]}`)
			},
			msgIn(evRoom, evOther, "hello"), nil,
			want{true, false, "", RuleMessage}},
		{"override with no conditions matches everything",
			func(t *testing.T, u *UserRules) {
				mustPutRule(t, u, KindOverride, "all", `{"actions":["notify",{"set_tweak":"sound","value":"all"}]}`)
			},
			mkEvent(t, "com.example.thing", map[string]any{}, nil), nil,
			want{true, false, "all", "all"}},
		{"user underride before default underride",
			func(t *testing.T, u *UserRules) {
				mustPutRule(t, u, KindUnderride, "small", `{"actions":["notify",{"set_tweak":"sound","value":"small"}],
					"conditions":[{"kind":"room_member_count","is":"<=3"}]}`)
			},
			msgIn(evRoom, evOther, "hello"), func(c *EvalContext) { c.MemberCount = 2 },
			want{true, false, "small", "small"}},
		{"disabled default rule falls through",
			func(t *testing.T, u *UserRules) {
				if err := u.SetEnabled(KindUnderride, RuleRoomOneToOne, false); err != nil {
					t.Fatal(err)
				}
			},
			msgIn(evRoom, evOther, "hello"), func(c *EvalContext) { c.MemberCount = 2 },
			want{true, false, "", RuleMessage}},
		{"changed actions of a default rule",
			func(t *testing.T, u *UserRules) {
				if err := u.SetActions(KindUnderride, RuleMessage, Actions{"dont_notify"}); err != nil {
					t.Fatal(err)
				}
			},
			msgIn(evRoom, evOther, "hello"), nil,
			want{false, false, "", RuleMessage}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var u UserRules
			tc.setup(t, &u)
			ctx := baseCtx(10)
			if tc.ctx != nil {
				tc.ctx(&ctx)
			}
			checkResult(t, Evaluate(Effective(u, evMe, evMeLocal), tc.ev, ctx), tc.want)
		})
	}
}

func TestConditions(t *testing.T) {
	ev := mkEvent(t, "m.room.message", map[string]any{
		"body":        "An exciting triple-whammy",
		"msgtype":     "m.text",
		"m.federate":  true,
		"count":       42,
		"neg":         -7,
		"ratio":       1.5,
		"nothing":     nil,
		"quote":       `say "hi"\`,
		"alt_aliases": []any{"#a:example.org", "#myroom:example.com", 3, true, nil, map[string]any{"x": 1}, []any{"nested"}},
		"obj":         map[string]any{"k": "v"},
		`back\slash`:  "bs",
		"dot.ted":     map[string]any{"x.y": "deep"},
	}, map[string]any{"state_key": ""})
	ctx := baseCtx(5)
	cond := func(s string) Condition {
		var c Condition
		if err := json.Unmarshal([]byte(s), &c); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		return c
	}
	cases := []struct {
		cond string
		want bool
	}{
		// event_match
		{`{"kind":"event_match","key":"content.body","pattern":"ex*ple"}`, true},
		{`{"kind":"event_match","key":"content.body","pattern":"EXCITING"}`, true},
		{`{"kind":"event_match","key":"content.body","pattern":"excit"}`, false},
		{`{"kind":"event_match","key":"content.body","pattern":"whammy"}`, true},
		{`{"kind":"event_match","key":"content.body","pattern":"triple"}`, true},
		{`{"kind":"event_match","key":"content.msgtype","pattern":"m.*"}`, true},
		{`{"kind":"event_match","key":"content.msgtype","pattern":"text"}`, false},
		{`{"kind":"event_match","key":"content.count","pattern":"*"}`, false},       // integer, not a string
		{`{"kind":"event_match","key":"content.nothing","pattern":"*"}`, false},     // null
		{`{"kind":"event_match","key":"content.obj","pattern":"*"}`, false},         // object
		{`{"kind":"event_match","key":"content.alt_aliases","pattern":"*"}`, false}, // array
		{`{"kind":"event_match","key":"content.missing","pattern":"*"}`, false},
		{`{"kind":"event_match","key":"state_key","pattern":""}`, true},
		{`{"kind":"event_match","key":"content.back\\\\slash","pattern":"bs"}`, true},
		{`{"kind":"event_match","key":"content.back\\slash","pattern":"bs"}`, true}, // lone \s is literal
		{`{"kind":"event_match","key":"content.dot\\.ted.x\\.y","pattern":"deep"}`, true},
		{`{"kind":"event_match","key":"content.dot.ted.x.y","pattern":"deep"}`, false},
		// event_property_is
		{`{"kind":"event_property_is","key":"content.m\\.federate","value":true}`, true},
		{`{"kind":"event_property_is","key":"content.m\\.federate","value":"true"}`, false},
		{`{"kind":"event_property_is","key":"content.m\\.federate","value":1}`, false},
		{`{"kind":"event_property_is","key":"content.count","value":42}`, true},
		{`{"kind":"event_property_is","key":"content.count","value":"42"}`, false},
		{`{"kind":"event_property_is","key":"content.neg","value":-7}`, true},
		{`{"kind":"event_property_is","key":"content.ratio","value":1}`, false}, // floats are not flattened
		{`{"kind":"event_property_is","key":"content.nothing","value":null}`, true},
		{`{"kind":"event_property_is","key":"content.missing","value":null}`, false},
		{`{"kind":"event_property_is","key":"content.msgtype","value":"m.text"}`, true},
		{`{"kind":"event_property_is","key":"content.msgtype","value":"M.TEXT"}`, false}, // exact, case-sensitive
		{`{"kind":"event_property_is","key":"content.quote","value":"say \"hi\"\\"}`, true},
		{`{"kind":"event_property_is","key":"content.alt_aliases","value":"#a:example.org"}`, false},
		{`{"kind":"event_property_is","key":"content.msgtype"}`, false}, // no value
		// event_property_contains
		{`{"kind":"event_property_contains","key":"content.alt_aliases","value":"#myroom:example.com"}`, true},
		{`{"kind":"event_property_contains","key":"content.alt_aliases","value":":example.com"}`, false},
		{`{"kind":"event_property_contains","key":"content.alt_aliases","value":3}`, true},
		{`{"kind":"event_property_contains","key":"content.alt_aliases","value":true}`, true},
		{`{"kind":"event_property_contains","key":"content.alt_aliases","value":null}`, true},
		{`{"kind":"event_property_contains","key":"content.alt_aliases","value":"nested"}`, false},
		{`{"kind":"event_property_contains","key":"content.msgtype","value":"m.text"}`, false}, // not an array
		// contains_display_name (display name "Carol Jones" not in body)
		{`{"kind":"contains_display_name"}`, false},
		// room_member_count, 5 members
		{`{"kind":"room_member_count","is":"5"}`, true},
		{`{"kind":"room_member_count","is":"==5"}`, true},
		{`{"kind":"room_member_count","is":"2"}`, false},
		{`{"kind":"room_member_count","is":"<5"}`, false},
		{`{"kind":"room_member_count","is":"<6"}`, true},
		{`{"kind":"room_member_count","is":">4"}`, true},
		{`{"kind":"room_member_count","is":">5"}`, false},
		{`{"kind":"room_member_count","is":"<=5"}`, true},
		{`{"kind":"room_member_count","is":"<=4"}`, false},
		{`{"kind":"room_member_count","is":">=5"}`, true},
		{`{"kind":"room_member_count","is":">=6"}`, false},
		{`{"kind":"room_member_count","is":"=5"}`, false},
		{`{"kind":"room_member_count","is":"five"}`, false},
		{`{"kind":"room_member_count","is":">="}`, false},
		{`{"kind":"room_member_count"}`, false},
		// sender_notification_permission: sender PL 0, default requirement 50
		{`{"kind":"sender_notification_permission","key":"room"}`, false},
		{`{"kind":"unknown_kind","key":"content.body","pattern":"*"}`, false},
	}
	for _, tc := range cases {
		c := cond(tc.cond)
		if got := matchCondition(&c, ev, &ctx); got != tc.want {
			t.Errorf("%s = %v, want %v", tc.cond, got, tc.want)
		}
	}

	perm := cond(`{"kind":"sender_notification_permission","key":"room"}`)
	for _, tc := range []struct {
		pl     int64
		levels map[string]int64
		want   bool
	}{
		{50, nil, true},
		{49, nil, false},
		{10, map[string]int64{"room": 10}, true},
		{9, map[string]int64{"room": 10}, false},
		{50, map[string]int64{"other": 0}, true},
		{-1, map[string]int64{"room": 0}, false},
	} {
		c := ctx
		c.SenderPowerLevel, c.NotificationPowerLevels = tc.pl, tc.levels
		if got := matchCondition(&perm, ev, &c); got != tc.want {
			t.Errorf("sender_notification_permission pl=%d levels=%v = %v, want %v", tc.pl, tc.levels, got, tc.want)
		}
	}
}

func TestContainsDisplayName(t *testing.T) {
	c := Condition{Kind: CondContainsDisplayName}
	cases := []struct {
		name, body string
		want       bool
	}{
		{"Carol", "hi carol", true},
		{"Carol", "Carol: ping", true},
		{"Carol", "carols", false},
		{"Carol", "xcarol", false},
		{"Carol", "hello_carol", false}, // '_' is a word character
		{"Carol", "hello-carol", true},
		{"Carol", "", false},
		{"", "anything", false},
		{"C*l", "cool", false},    // display names are literal, not globs
		{"C*l", "hey c*l!", true}, // ...and match literally
		{"Ünïcode", "hi üNÏCODE", true},
		{"@bob", "hi @bob", true},
		{"a.b", "axb", false},
	}
	for _, tc := range cases {
		ev := mkEvent(t, "m.room.message", text(tc.body), nil)
		ctx := baseCtx(3)
		ctx.DisplayName = tc.name
		if got := matchCondition(&c, ev, &ctx); got != tc.want {
			t.Errorf("display name %q in %q = %v, want %v", tc.name, tc.body, got, tc.want)
		}
	}
	// No body at all.
	ev := mkEvent(t, "m.room.message", map[string]any{"msgtype": "m.text"}, nil)
	ctx := baseCtx(3)
	if matchCondition(&c, ev, &ctx) {
		t.Error("contains_display_name matched an event without a body")
	}
}

func TestGlobMatch(t *testing.T) {
	cases := []struct {
		pattern, s string
		word       bool
		want       bool
	}{
		// Spec examples (whole value).
		{"lunc?*", "Lunch plans", false, true},
		{"lunc?*", "LUNCH", false, true},
		{"lunc?*", " lunch", false, false},
		{"lunc?*", "lunc", false, false},
		// Spec examples (content.body, word boundaries).
		{"ex*ple", "An example event.", true, true},
		{"ex*ple", "exple", true, true},
		{"ex*ple", "An exciting triple-whammy", true, true},
		{"ex*ple", "examples", true, false},
		{"ex*ple", "reexample", true, false},
		{"", "", false, true},
		{"", "x", false, false},
		{"*", "", false, true},
		{"*", "anything at all", false, true},
		{"?", "", false, false},
		{"?", "é", false, true}, // one character, two bytes
		{"??", "é", false, false},
		{"caf?", "CAFÉ", false, true},
		{"ÉCOLE", "école", false, true},
		{"a*b*c", "aXXbYYc", false, true},
		{"a*b*c", "aXXbYYcd", false, false},
		{"a*b*c", "abc", false, true},
		{"*a", "bbbba", false, true},
		{"*a*", "bbb", false, false},
		{"a?c", "abc", false, true},
		{"a?c", "ac", false, false},
		{"foo", "FOO", false, true},
		{"foo", "foobar", false, false},
		// Word mode.
		{"foo", "a foo b", true, true},
		{"foo", "a foobar b", true, false},
		{"foo", "a barfoo b", true, false},
		{"foo", "foo", true, true},
		{"foo", "(foo)", true, true},
		{"foo", "über-foo", true, true},
		{"foo", "éfoo", true, true}, // non-ASCII letters are boundaries per spec
		{"foo bar", "x foo bar y", true, true},
		{"foo*", "a foobar b", true, true},
		{"*foo", "a barfoo b", true, true},
		{"f?o", "a fxo b", true, true},
		{"@room", "hey @room!", true, true},
		{"@room", "x@room", true, true}, // '@' is itself a boundary character
		{"@room", "@roomy", true, false},
		{"cake*lie", "the cake is a lie", true, true},
		{"cake*lie", "cake is a lie, a lie", true, true},
		{"cake*lie", "cakes are lies", true, false},
	}
	for _, tc := range cases {
		if got := globMatch(tc.pattern, tc.s, tc.word, false); got != tc.want {
			t.Errorf("globMatch(%q, %q, word=%v) = %v, want %v", tc.pattern, tc.s, tc.word, got, tc.want)
		}
	}
	// A long pattern takes the allocating path and must still work.
	long := strings.Repeat("ab", 100) + "*"
	if !globMatch(long, strings.Repeat("AB", 100)+"tail", false, false) {
		t.Error("long pattern did not match")
	}
	if globMatch(long, strings.Repeat("AB", 99), false, false) {
		t.Error("long pattern matched a too-short value")
	}
}

// A hostile body and pattern must not cause exponential backtracking.
func TestGlobMatchLinear(t *testing.T) {
	body := strings.Repeat("a", 65536)
	pattern := strings.Repeat("*a", 30) + "*b"
	start := time.Now()
	if globMatch(pattern, body, true, false) || globMatch(pattern, body, false, false) {
		t.Fatal("unexpected match")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("globMatch took %v", d)
	}
}

func TestCanonicalPath(t *testing.T) {
	cases := map[string]string{
		"content.body":                      "content.body",
		`content.m\.relates_to.rel_type`:    `content.m\.relates_to.rel_type`,
		`content.m\\foo`:                    `content.m\\foo`,
		`content.m\xfoo`:                    `content.m\\xfoo`,
		`content.a\.b\x`:                    `content.a\.b\\x`,
		`trailing\`:                         `trailing\\`,
		`\\\.`:                              `\\\.`,
		`a\`:                                `a\\`,
		`content.m\.mentions.user_ids`:      `content.m\.mentions.user_ids`,
		`content.m\\\xfoo`:                  `content.m\\\\xfoo`,
		`content.m\\.relates_to`:            `content.m\\.relates_to`,
		`content.a\\\\b`:                    `content.a\\\\b`,
		`content.a\\b\yc`:                   `content.a\\b\\yc`,
		`content.only.a.dot\.at\.the\.end.`: `content.only.a.dot\.at\.the\.end.`,
	}
	for in, want := range cases {
		if got := canonicalPath(in); got != want {
			t.Errorf("canonicalPath(%q) = %q, want %q", in, got, want)
		}
	}
	if got := EscapeKey(`m.a\b`); got != `m\.a\\b` {
		t.Errorf("EscapeKey = %q", got)
	}
}

func TestNewEvent(t *testing.T) {
	for _, bad := range []string{``, `null`, `[]`, `"x"`, `{"type":`, `{} {}`} {
		if _, err := NewEvent([]byte(bad)); err == nil {
			t.Errorf("NewEvent(%q) succeeded", bad)
		}
	}
	ev, err := NewEvent([]byte(`{"type":"m.room.message","room_id":"!r:x","sender":"@s:x",
		"content":{"body":"b","m.mentions":{}},"unsigned":{"age":5}}`))
	if err != nil {
		t.Fatal(err)
	}
	if ev.RoomID() != "!r:x" || ev.Sender() != "@s:x" || ev.Type() != "m.room.message" || !ev.HasMentions() {
		t.Errorf("accessors: %q %q %q %v", ev.RoomID(), ev.Sender(), ev.Type(), ev.HasMentions())
	}
	if v, ok := ev.lookup("unsigned.age"); !ok || v.kind != valInt || v.i != 5 {
		t.Errorf("unsigned.age = %+v %v", v, ok)
	}
	// Malformed m.mentions still counts as present (legacy rules off).
	ev, _ = NewEvent([]byte(`{"type":"m.room.message","content":{"body":"b","m.mentions":null}}`))
	if !ev.HasMentions() {
		t.Error("m.mentions: null not detected")
	}
	// m.mentions outside content does not count.
	ev, _ = NewEvent([]byte(`{"type":"m.room.message","m.mentions":{},"content":{"body":"b"}}`))
	if ev.HasMentions() {
		t.Error("top-level m.mentions counted")
	}
	// Non-string room_id/sender never match room or sender rules.
	ev, _ = NewEvent([]byte(`{"type":"m.room.message","room_id":1,"content":{"body":"b"}}`))
	rs := Ruleset{Room: []Rule{{RuleID: "", Enabled: true, Actions: Actions{"notify"}}}}
	if r := Evaluate(rs, ev, baseCtx(2)); r.RuleID != "" || r.Notify {
		t.Errorf("room rule matched a non-string room_id: %+v", r)
	}
}

func TestResultActions(t *testing.T) {
	ev := mkEvent(t, "m.room.message", text("x"), nil)
	rule := func(actions ...any) Ruleset {
		return Ruleset{Override: []Rule{{RuleID: "r", Enabled: true, Actions: actions, Conditions: []Condition{}}}}
	}
	hl := func(v any) any { return map[string]any{"set_tweak": "highlight", "value": v} }
	cases := []struct {
		name    string
		rs      Ruleset
		notify  bool
		high    bool
		sound   string
		actions Actions
	}{
		{"empty", rule(), false, false, "", Actions{}},
		{"dont_notify stripped", rule("dont_notify"), false, false, "", Actions{}},
		{"coalesce stripped, notify kept", rule("coalesce", "notify"), true, false, "", Actions{"notify"}},
		{"highlight default true", rule("notify", map[string]any{"set_tweak": "highlight"}), true, true, "", nil},
		{"highlight false", rule("notify", hl(false)), true, false, "", nil},
		{"highlight true", rule(hl(true)), false, true, "", nil},
		{"highlight null", rule(hl(nil)), false, false, "", nil},
		{"sound", rule("notify", map[string]any{"set_tweak": "sound", "value": "bell"}), true, false, "bell", nil},
		{"sound non-string", rule("notify", map[string]any{"set_tweak": "sound", "value": json.Number("3")}), true, false, "", nil},
		{"other tweak", rule("notify", map[string]any{"set_tweak": "led", "value": "red"}), true, false, "", nil},
	}
	for _, tc := range cases {
		r := Evaluate(tc.rs, ev, baseCtx(3))
		if r.RuleID != "r" || r.Kind != KindOverride || r.Notify != tc.notify || r.Highlight != tc.high || r.Sound != tc.sound {
			t.Errorf("%s: %+v", tc.name, r)
		}
		if tc.actions != nil && len(tc.actions)+len(r.Actions) > 0 && !reflect.DeepEqual(r.Actions, tc.actions) {
			t.Errorf("%s: actions %#v, want %#v", tc.name, r.Actions, tc.actions)
		}
		for _, a := range r.Actions {
			if a == "dont_notify" || a == "coalesce" {
				t.Errorf("%s: legacy action not stripped: %v", tc.name, r.Actions)
			}
		}
	}
	// Stripping must not modify the ruleset.
	rs := rule("dont_notify", "notify")
	Evaluate(rs, ev, baseCtx(3))
	if rs.Override[0].Actions[0] != "dont_notify" {
		t.Error("Evaluate modified the rule's actions")
	}
	if r := Evaluate(Ruleset{}, ev, baseCtx(3)); !reflect.DeepEqual(r, Result{}) {
		t.Errorf("empty ruleset: %+v", r)
	}
}

// Rule kinds are consulted in spec order whatever the slice contents.
func TestKindOrder(t *testing.T) {
	ev := mkEvent(t, "m.room.message", text("word"), nil)
	all := func(id string) Rule {
		return Rule{RuleID: id, Enabled: true, Actions: Actions{"notify"}, Conditions: []Condition{}}
	}
	rs := Ruleset{
		Override:    []Rule{all("o")},
		Content:     []Rule{{RuleID: "c", Enabled: true, Pattern: "word", Actions: Actions{"notify"}}},
		PostContent: []Rule{all("p")},
		Room:        []Rule{{RuleID: evRoom, Enabled: true, Actions: Actions{"notify"}}},
		Sender:      []Rule{{RuleID: evOther, Enabled: true, Actions: Actions{"notify"}}},
		Underride:   []Rule{all("u")},
	}
	order := []struct {
		id, kind string
		drop     func(*Ruleset)
	}{
		{"o", KindOverride, func(r *Ruleset) { r.Override = nil }},
		{"c", KindContent, func(r *Ruleset) { r.Content = nil }},
		{"p", KindPostContent, func(r *Ruleset) { r.PostContent = nil }},
		{evRoom, KindRoom, func(r *Ruleset) { r.Room = nil }},
		{evOther, KindSender, func(r *Ruleset) { r.Sender = nil }},
		{"u", KindUnderride, func(r *Ruleset) { r.Underride = nil }},
		{"", "", nil},
	}
	for _, step := range order {
		got := Evaluate(rs, ev, baseCtx(3))
		if got.RuleID != step.id || got.Kind != step.kind {
			t.Fatalf("got %q/%q, want %q/%q", got.Kind, got.RuleID, step.kind, step.id)
		}
		if step.drop != nil {
			step.drop(&rs)
		}
	}
}

// MSC4306: replies in unsubscribed threads do not notify unless a mention
// rule matched first; replies in subscribed threads notify even in a room
// the user set to mentions only; events outside threads are untouched.
func TestThreadSubscriptionRules(t *testing.T) {
	var u UserRules
	// "Mentions only" for the room, as clients set it; the MSC4306 rules
	// are off by default and turned on here.
	mustPutRule(t, &u, KindRoom, evRoom, `{"actions":[]}`)
	for _, id := range []string{RuleUnsubscribedThread, RuleSubscribedThread} {
		if err := u.SetEnabled(KindPostContent, id, true); err != nil {
			t.Fatal(err)
		}
	}
	rs := Effective(u, evMe, evMeLocal)
	reply := func(body string) *Event {
		return mkEvent(t, "m.room.message", with(text(body), "m.relates_to",
			map[string]any{"rel_type": "m.thread", "event_id": "$root:example.org"}), nil)
	}
	ctx := func(inThread, subscribed bool) EvalContext {
		c := baseCtx(5)
		c.InThread, c.ThreadSubscribed = inThread, subscribed
		return c
	}
	checkResult(t, Evaluate(rs, reply("hi"), ctx(true, false)), want{rule: RuleUnsubscribedThread})
	checkResult(t, Evaluate(rs, reply("hi"), ctx(true, true)), want{notify: true, sound: "default", rule: RuleSubscribedThread})
	checkResult(t, Evaluate(rs, reply("hi "+evMeLocal), ctx(true, false)),
		want{notify: true, highlight: true, sound: "default", rule: RuleContainsUserName})
	checkResult(t, Evaluate(rs, mkEvent(t, "m.room.message", text("hi"), nil), ctx(false, false)), want{rule: evRoom})

	// Disabled, the rules step aside for the room and underride rules.
	if err := u.SetEnabled(KindPostContent, RuleUnsubscribedThread, false); err != nil {
		t.Fatal(err)
	}
	if err := u.SetEnabled(KindPostContent, RuleSubscribedThread, false); err != nil {
		t.Fatal(err)
	}
	if err := u.Delete(KindRoom, evRoom); err != nil {
		t.Fatal(err)
	}
	rs = Effective(u, evMe, evMeLocal)
	checkResult(t, Evaluate(rs, reply("hi"), ctx(true, false)), want{notify: true, rule: RuleMessage})
}

func benchEvent(b *testing.B) *Event {
	ev, err := NewEvent([]byte(`{"type":"m.room.message","room_id":"!room:example.org",
		"sender":"@dave:example.org","event_id":"$abc:example.org","origin_server_ts":1700000000000,
		"content":{"msgtype":"m.text","body":"Hey folks, does anyone know when the meeting tomorrow starts? I think it was 10am.",
		"m.mentions":{}},"unsigned":{"age":12}}`))
	if err != nil {
		b.Fatal(err)
	}
	return ev
}

func BenchmarkEvaluate(b *testing.B) {
	rs := Effective(UserRules{}, evMe, evMeLocal)
	ev := benchEvent(b)
	ctx := EvalContext{UserID: evMe, DisplayName: evMeName, MemberCount: 12,
		SenderPowerLevel: 0, NotificationPowerLevels: map[string]int64{"room": 50}}
	b.ReportAllocs()
	for b.Loop() {
		if r := Evaluate(rs, ev, ctx); r.RuleID != RuleMessage {
			b.Fatal(r.RuleID)
		}
	}
}

// Legacy rules active (no m.mentions): three word scans of the body.
func BenchmarkEvaluateLegacyMentions(b *testing.B) {
	rs := Effective(UserRules{}, evMe, evMeLocal)
	ev, err := NewEvent([]byte(`{"type":"m.room.message","room_id":"!room:example.org",
		"sender":"@dave:example.org","content":{"msgtype":"m.text",
		"body":"Hey folks, does anyone know when the meeting tomorrow starts? I think it was 10am."}}`))
	if err != nil {
		b.Fatal(err)
	}
	ctx := EvalContext{UserID: evMe, DisplayName: evMeName, MemberCount: 12}
	b.ReportAllocs()
	for b.Loop() {
		if r := Evaluate(rs, ev, ctx); r.RuleID != RuleMessage {
			b.Fatal(r.RuleID)
		}
	}
}

func BenchmarkNewEvent(b *testing.B) {
	raw := []byte(`{"type":"m.room.message","room_id":"!room:example.org",
		"sender":"@dave:example.org","event_id":"$abc:example.org","origin_server_ts":1700000000000,
		"content":{"msgtype":"m.text","body":"Hey folks, does anyone know when the meeting tomorrow starts?",
		"m.mentions":{}},"unsigned":{"age":12}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewEvent(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// refGlob is a naive reference: backtracking whole-value glob match, and for
// word mode every substring whose ends are word boundaries.
func refGlob(pattern, s string, word bool) bool {
	p, r := []rune(pattern), []rune(s)
	var whole func(p, r []rune) bool
	whole = func(p, r []rune) bool {
		if len(p) == 0 {
			return len(r) == 0
		}
		switch p[0] {
		case '*':
			for i := 0; i <= len(r); i++ {
				if whole(p[1:], r[i:]) {
					return true
				}
			}
			return false
		case '?':
			return len(r) > 0 && whole(p[1:], r[1:])
		}
		return len(r) > 0 && strings.EqualFold(string(p[0]), string(r[0])) && whole(p[1:], r[1:])
	}
	if !word {
		return whole(p, r)
	}
	isWord := func(c rune) bool { return c < 128 && isWordByte(byte(c)) }
	boundary := func(i int) bool { return i == 0 || i == len(r) || !isWord(r[i-1]) || !isWord(r[i]) }
	for i := 0; i <= len(r); i++ {
		for j := i; j <= len(r); j++ {
			if boundary(i) && boundary(j) && whole(p, r[i:j]) {
				return true
			}
		}
	}
	return false
}

func TestGlobMatchAgainstReference(t *testing.T) {
	alphabet := []rune{'a', 'A', 'b', ' ', '-', '_', 'é', 'É', '1'}
	palphabet := append([]rune{'*', '?', '*'}, alphabet...)
	rnd := uint64(0x9e3779b97f4a7c15)
	next := func(n int) int {
		rnd ^= rnd << 13
		rnd ^= rnd >> 7
		rnd ^= rnd << 17
		return int(rnd % uint64(n))
	}
	gen := func(al []rune, max int) string {
		n := next(max + 1)
		out := make([]rune, n)
		for i := range out {
			out[i] = al[next(len(al))]
		}
		return string(out)
	}
	for iter := 0; iter < 20000; iter++ {
		p, s := gen(palphabet, 5), gen(alphabet, 9)
		for _, word := range []bool{false, true} {
			want := refGlob(p, s, word)
			if got := globMatch(p, s, word, false); got != want {
				t.Fatalf("globMatch(%q, %q, word=%v) = %v, reference %v", p, s, word, got, want)
			}
			// The NFA must agree on wildcard-free patterns too.
			if got := nfaMatch(p, s, word); got != want {
				t.Fatalf("nfaMatch(%q, %q, word=%v) = %v, reference %v", p, s, word, got, want)
			}
		}
	}
}
