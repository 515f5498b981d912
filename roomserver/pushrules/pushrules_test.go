package pushrules

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

const (
	alice      = "@alice:example.org"
	aliceLocal = "alice"
)

// jsonEq compares two JSON documents semantically.
func jsonEq(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("got invalid JSON %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want JSON %s: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("JSON mismatch\n got: %s\nwant: %s", got, want)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ids(rules []Rule) []string {
	out := []string{}
	for _, r := range rules {
		out = append(out, r.RuleID)
	}
	return out
}

func TestValidKind(t *testing.T) {
	for _, k := range Kinds {
		if !ValidKind(k) {
			t.Errorf("ValidKind(%q) = false", k)
		}
	}
	for _, k := range []string{"", "Override", "global", "post_content", "device"} {
		if ValidKind(k) {
			t.Errorf("ValidKind(%q) = true", k)
		}
	}
	if want := []string{"override", "content", "postcontent", "room", "sender", "underride"}; !reflect.DeepEqual(Kinds, want) {
		t.Errorf("Kinds = %v, want %v", Kinds, want)
	}
}

func TestDefaultRuleIDsInOrder(t *testing.T) {
	want := map[string][]string{
		KindOverride: {
			".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me",
			".m.rule.member_event", ".m.rule.is_user_mention", ".m.rule.contains_display_name",
			".m.rule.is_room_mention", ".m.rule.roomnotif", ".m.rule.tombstone",
			".m.rule.reaction", ".m.rule.room.server_acl", ".m.rule.suppress_edits",
		},
		KindContent:     {".m.rule.contains_user_name"},
		KindPostContent: {".io.element.msc4306.rule.unsubscribed_thread", ".io.element.msc4306.rule.subscribed_thread"},
		KindRoom:        {},
		KindSender:      {},
		KindUnderride: {
			".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one",
			".m.rule.message", ".m.rule.encrypted",
		},
	}
	d := Defaults(alice, aliceLocal)
	e := Effective(UserRules{}, alice, aliceLocal)
	for _, kind := range Kinds {
		for name, rs := range map[string]Ruleset{"Defaults": d, "Effective": e} {
			rules, err := rs.Rules(kind)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(rules); !reflect.DeepEqual(got, want[kind]) {
				t.Errorf("%s %s = %v\nwant %v", name, kind, got, want[kind])
			}
			for _, r := range rules {
				if !r.Default {
					t.Errorf("%s %s: default=false", name, r.RuleID)
				}
				offByDefault := r.RuleID == RuleMaster || r.RuleID == RuleSubscribedThread || r.RuleID == RuleUnsubscribedThread
				if wantEnabled := !offByDefault; r.Enabled != wantEnabled {
					t.Errorf("%s %s: enabled=%v", name, r.RuleID, r.Enabled)
				}
			}
		}
	}
}

// Each default rule must marshal exactly to the spec's definition (push.md).
func TestDefaultRuleJSON(t *testing.T) {
	const snd = `{"set_tweak":"sound","value":"default"}`
	const hl = `{"set_tweak":"highlight"}`
	cases := []struct {
		kind, id, want string
	}{
		{KindOverride, RuleMaster, `{"rule_id":".m.rule.master","default":true,"enabled":false,"conditions":[],"actions":[]}`},
		{KindOverride, RuleSuppressNotices, `{"rule_id":".m.rule.suppress_notices","default":true,"enabled":true,
			"conditions":[{"kind":"event_match","key":"content.msgtype","pattern":"m.notice"}],"actions":[]}`},
		{KindOverride, RuleInviteForMe, `{"rule_id":".m.rule.invite_for_me","default":true,"enabled":true,
			"conditions":[{"kind":"event_match","key":"type","pattern":"m.room.member"},
			{"kind":"event_match","key":"content.membership","pattern":"invite"},
			{"kind":"event_match","key":"state_key","pattern":"@alice:example.org"}],
			"actions":["notify",` + snd + `]}`},
		{KindOverride, RuleMemberEvent, `{"rule_id":".m.rule.member_event","default":true,"enabled":true,
			"conditions":[{"kind":"event_match","key":"type","pattern":"m.room.member"}],"actions":[]}`},
		{KindOverride, RuleIsUserMention, `{"rule_id":".m.rule.is_user_mention","default":true,"enabled":true,
			"conditions":[{"kind":"event_property_contains","key":"content.m\\.mentions.user_ids","value":"@alice:example.org"}],
			"actions":["notify",` + snd + `,` + hl + `]}`},
		{KindOverride, RuleContainsDisplayName, `{"rule_id":".m.rule.contains_display_name","default":true,"enabled":true,
			"conditions":[{"kind":"contains_display_name"}],"actions":["notify",` + snd + `,` + hl + `]}`},
		{KindOverride, RuleIsRoomMention, `{"rule_id":".m.rule.is_room_mention","default":true,"enabled":true,
			"conditions":[{"kind":"event_property_is","key":"content.m\\.mentions.room","value":true},
			{"kind":"sender_notification_permission","key":"room"}],"actions":["notify",` + hl + `]}`},
		{KindOverride, RuleRoomNotif, `{"rule_id":".m.rule.roomnotif","default":true,"enabled":true,
			"conditions":[{"kind":"event_match","key":"content.body","pattern":"@room"},
			{"kind":"sender_notification_permission","key":"room"}],"actions":["notify",` + hl + `]}`},
		{KindOverride, RuleTombstone, `{"rule_id":".m.rule.tombstone","default":true,"enabled":true,
			"conditions":[{"kind":"event_match","key":"type","pattern":"m.room.tombstone"},
			{"kind":"event_match","key":"state_key","pattern":""}],"actions":["notify",` + hl + `]}`},
		{KindOverride, RuleReaction, `{"rule_id":".m.rule.reaction","default":true,"enabled":true,
			"conditions":[{"kind":"event_match","key":"type","pattern":"m.reaction"}],"actions":[]}`},
		{KindOverride, RuleServerACL, `{"rule_id":".m.rule.room.server_acl","default":true,"enabled":true,
			"conditions":[{"kind":"event_match","key":"type","pattern":"m.room.server_acl"},
			{"kind":"event_match","key":"state_key","pattern":""}],"actions":[]}`},
		{KindOverride, RuleSuppressEdits, `{"rule_id":".m.rule.suppress_edits","default":true,"enabled":true,
			"conditions":[{"kind":"event_property_is","key":"content.m\\.relates_to.rel_type","value":"m.replace"}],"actions":[]}`},
		{KindContent, RuleContainsUserName, `{"rule_id":".m.rule.contains_user_name","default":true,"enabled":true,
			"pattern":"alice","actions":["notify",` + snd + `,` + hl + `]}`},
		{KindPostContent, RuleUnsubscribedThread, `{"rule_id":".io.element.msc4306.rule.unsubscribed_thread","default":true,"enabled":false,
			"conditions":[{"kind":"io.element.msc4306.thread_subscription","subscribed":false}],"actions":[]}`},
		{KindPostContent, RuleSubscribedThread, `{"rule_id":".io.element.msc4306.rule.subscribed_thread","default":true,"enabled":false,
			"conditions":[{"kind":"io.element.msc4306.thread_subscription","subscribed":true}],"actions":["notify",` + snd + `]}`},
		{KindUnderride, RuleCall, `{"rule_id":".m.rule.call","default":true,"enabled":true,
			"conditions":[{"kind":"event_match","key":"type","pattern":"m.call.invite"}],
			"actions":["notify",{"set_tweak":"sound","value":"ring"}]}`},
		{KindUnderride, RuleEncryptedRoomOneToOne, `{"rule_id":".m.rule.encrypted_room_one_to_one","default":true,"enabled":true,
			"conditions":[{"kind":"room_member_count","is":"2"},{"kind":"event_match","key":"type","pattern":"m.room.encrypted"}],
			"actions":["notify",` + snd + `]}`},
		{KindUnderride, RuleRoomOneToOne, `{"rule_id":".m.rule.room_one_to_one","default":true,"enabled":true,
			"conditions":[{"kind":"room_member_count","is":"2"},{"kind":"event_match","key":"type","pattern":"m.room.message"}],
			"actions":["notify",` + snd + `]}`},
		{KindUnderride, RuleMessage, `{"rule_id":".m.rule.message","default":true,"enabled":true,
			"conditions":[{"kind":"event_match","key":"type","pattern":"m.room.message"}],"actions":["notify"]}`},
		{KindUnderride, RuleEncrypted, `{"rule_id":".m.rule.encrypted","default":true,"enabled":true,
			"conditions":[{"kind":"event_match","key":"type","pattern":"m.room.encrypted"}],"actions":["notify"]}`},
	}
	d := Defaults(alice, aliceLocal)
	n := 0
	for _, kind := range Kinds {
		rules, _ := d.Rules(kind)
		n += len(rules)
	}
	if n != len(cases) {
		t.Errorf("Defaults has %d rules, table has %d", n, len(cases))
	}
	for _, c := range cases {
		t.Run(c.id, func(t *testing.T) {
			r, err := d.Get(c.kind, c.id)
			if err != nil {
				t.Fatal(err)
			}
			jsonEq(t, mustJSON(t, r), c.want)
			if !IsDefault(c.kind, c.id) {
				t.Errorf("IsDefault(%s, %s) = false", c.kind, c.id)
			}
		})
	}
}

func TestDefaultsAreFresh(t *testing.T) {
	a := Defaults(alice, aliceLocal)
	a.Override[1].Actions = append(a.Override[1].Actions, "notify")
	a.Underride[0].Actions[1].(map[string]any)["value"] = "changed"
	b := Defaults(alice, aliceLocal)
	if len(b.Override[1].Actions) != 0 || b.Underride[0].Actions[1].(map[string]any)["value"] != "ring" {
		t.Error("Defaults shares state between calls")
	}
}

func TestRulesetJSONShape(t *testing.T) {
	jsonEq(t, mustJSON(t, Ruleset{}), `{"override":[],"content":[],"postcontent":[],"room":[],"sender":[],"underride":[]}`)

	var u UserRules
	mustPut(t, &u, KindRoom, "!r:example.org", `{"actions":["notify"],"conditions":[{"kind":"x"}],"pattern":"p"}`, "", "")
	mustPut(t, &u, KindSender, "@bob:example.org", `{"actions":[]}`, "", "")
	mustPut(t, &u, KindOverride, "mine", `{"actions":["notify"]}`, "", "")
	mustPut(t, &u, KindContent, "kw", `{"actions":["notify"],"pattern":"cake","conditions":[]}`, "", "")
	b := mustJSON(t, Effective(u, alice, aliceLocal))
	if strings.Contains(string(b), "null") {
		t.Errorf("effective ruleset contains null: %s", b)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	if len(top) != 6 {
		t.Errorf("ruleset keys = %d, want 6", len(top))
	}

	e := Effective(u, alice, aliceLocal)
	room, _ := e.Get(KindRoom, "!r:example.org")
	jsonEq(t, mustJSON(t, room), `{"rule_id":"!r:example.org","default":false,"enabled":true,"actions":["notify"]}`)
	sender, _ := e.Get(KindSender, "@bob:example.org")
	jsonEq(t, mustJSON(t, sender), `{"rule_id":"@bob:example.org","default":false,"enabled":true,"actions":[]}`)
	ov, _ := e.Get(KindOverride, "mine")
	jsonEq(t, mustJSON(t, ov), `{"rule_id":"mine","default":false,"enabled":true,"conditions":[],"actions":["notify"]}`)
	kw, _ := e.Get(KindContent, "kw")
	jsonEq(t, mustJSON(t, kw), `{"rule_id":"kw","default":false,"enabled":true,"pattern":"cake","actions":["notify"]}`)
}

func mustPut(t *testing.T, u *UserRules, kind, id, body, before, after string) {
	t.Helper()
	if err := u.Put(kind, id, []byte(body), before, after); err != nil {
		t.Fatalf("Put(%s, %s, before=%q after=%q): %v", kind, id, before, after, err)
	}
}

func TestEffectiveOrdering(t *testing.T) {
	var u UserRules
	mustPut(t, &u, KindOverride, "o1", `{"actions":[]}`, "", "")
	mustPut(t, &u, KindUnderride, "u1", `{"actions":[]}`, "", "")
	mustPut(t, &u, KindContent, "c1", `{"actions":[],"pattern":"x"}`, "", "")
	e := Effective(u, alice, aliceLocal)
	if got := ids(e.Override)[:3]; !reflect.DeepEqual(got, []string{RuleMaster, "o1", RuleSuppressNotices}) {
		t.Errorf("override head = %v", got)
	}
	if got := ids(e.Underride)[:2]; !reflect.DeepEqual(got, []string{"u1", RuleCall}) {
		t.Errorf("underride head = %v", got)
	}
	if got := ids(e.Content); !reflect.DeepEqual(got, []string{"c1", RuleContainsUserName}) {
		t.Errorf("content = %v", got)
	}
}

func TestPutOrdering(t *testing.T) {
	type put struct{ id, before, after string }
	cases := []struct {
		name string
		puts []put
		want []string
	}{
		{"new rules go first", []put{{"a", "", ""}, {"b", "", ""}, {"c", "", ""}}, []string{"c", "b", "a"}},
		{"before", []put{{"a", "", ""}, {"b", "", ""}, {"c", "a", ""}}, []string{"b", "c", "a"}},
		{"before first", []put{{"a", "", ""}, {"b", "", ""}, {"c", "b", ""}}, []string{"c", "b", "a"}},
		{"after", []put{{"a", "", ""}, {"b", "", ""}, {"c", "", "b"}}, []string{"b", "c", "a"}},
		{"after last", []put{{"a", "", ""}, {"b", "", ""}, {"c", "", "a"}}, []string{"b", "a", "c"}},
		{"before wins over after", []put{{"a", "", ""}, {"b", "", ""}, {"c", "a", "b"}}, []string{"b", "c", "a"}},
		{"replace keeps position", []put{{"a", "", ""}, {"b", "", ""}, {"c", "", ""}, {"b", "", ""}}, []string{"c", "b", "a"}},
		{"replace moves with before", []put{{"a", "", ""}, {"b", "", ""}, {"c", "", ""}, {"a", "c", ""}}, []string{"a", "c", "b"}},
		{"replace moves with after", []put{{"a", "", ""}, {"b", "", ""}, {"c", "", ""}, {"c", "", "a"}}, []string{"b", "a", "c"}},
		{"relative to itself keeps position", []put{{"a", "", ""}, {"b", "", ""}, {"b", "b", ""}}, []string{"b", "a"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, kind := range Kinds {
				if kind == KindPostContent {
					continue // no user rules (TestPostContentRulesAreServerOnly)
				}
				var u UserRules
				for _, p := range c.puts {
					mustPut(t, &u, kind, p.id, `{"actions":["notify"],"pattern":"x"}`, p.before, p.after)
				}
				if got := ids(*u.list(kind)); !reflect.DeepEqual(got, c.want) {
					t.Errorf("%s: order = %v, want %v", kind, got, c.want)
				}
			}
		})
	}
}

func TestPutReplace(t *testing.T) {
	var u UserRules
	mustPut(t, &u, KindOverride, "a", `{"actions":["notify"],"conditions":[{"kind":"event_match","key":"room_id","pattern":"!x:y"}]}`, "", "")
	mustPut(t, &u, KindOverride, "b", `{"actions":["notify"]}`, "", "")
	if err := u.SetEnabled(KindOverride, "a", false); err != nil {
		t.Fatal(err)
	}
	mustPut(t, &u, KindOverride, "a", `{"actions":["dont_notify"],"conditions":[{"kind":"room_member_count","is":"<=10"}]}`, "", "")
	e := Effective(u, alice, aliceLocal)
	r, err := e.Get(KindOverride, "a")
	if err != nil {
		t.Fatal(err)
	}
	jsonEq(t, mustJSON(t, r), `{"rule_id":"a","default":false,"enabled":false,
		"conditions":[{"kind":"room_member_count","is":"<=10"}],"actions":["dont_notify"]}`)
	if got := ids(e.Override)[:3]; !reflect.DeepEqual(got, []string{RuleMaster, "b", "a"}) {
		t.Errorf("order after replace = %v", got)
	}
}

func TestDelete(t *testing.T) {
	var u UserRules
	mustPut(t, &u, KindRoom, "!a:x", `{"actions":[]}`, "", "")
	mustPut(t, &u, KindRoom, "!b:x", `{"actions":[]}`, "", "")
	mustPut(t, &u, KindRoom, "!c:x", `{"actions":[]}`, "", "")
	if err := u.Delete(KindRoom, "!b:x"); err != nil {
		t.Fatal(err)
	}
	if got := ids(u.Room); !reflect.DeepEqual(got, []string{"!c:x", "!a:x"}) {
		t.Errorf("after delete = %v", got)
	}
	if _, err := Effective(u, alice, aliceLocal).Get(KindRoom, "!b:x"); !isErr(err, CodeNotFound, 404) {
		t.Errorf("deleted rule still served: %v", err)
	}
	if err := u.Delete(KindRoom, "!b:x"); !isErr(err, CodeNotFound, 404) {
		t.Errorf("second delete: %v", err)
	}
}

func TestDefaultChangesReflected(t *testing.T) {
	var u UserRules
	if err := u.SetEnabled(KindOverride, RuleMaster, true); err != nil {
		t.Fatal(err)
	}
	if err := u.SetEnabled(KindContent, RuleContainsUserName, false); err != nil {
		t.Fatal(err)
	}
	acts, err := ParseActions([]byte(`{"actions":["notify",{"set_tweak":"sound","value":"bing"},{"set_tweak":"x","value":1.5e3}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := u.SetActions(KindUnderride, RuleMessage, acts); err != nil {
		t.Fatal(err)
	}
	if err := u.SetActions(KindOverride, RuleSuppressEdits, Actions{"dont_notify"}); err != nil {
		t.Fatal(err)
	}

	e := Effective(u, alice, aliceLocal)
	cases := []struct {
		kind, id    string
		enabled     bool
		wantActions string
	}{
		{KindOverride, RuleMaster, true, `[]`},
		{KindContent, RuleContainsUserName, false, `["notify",{"set_tweak":"sound","value":"default"},{"set_tweak":"highlight"}]`},
		{KindUnderride, RuleMessage, true, `["notify",{"set_tweak":"sound","value":"bing"},{"set_tweak":"x","value":1.5e3}]`},
		{KindOverride, RuleSuppressEdits, true, `["dont_notify"]`},
		{KindOverride, RuleSuppressNotices, true, `[]`},
	}
	for _, c := range cases {
		en, err := e.GetEnabled(c.kind, c.id)
		if err != nil || en != c.enabled {
			t.Errorf("%s enabled = %v, %v; want %v", c.id, en, err, c.enabled)
		}
		a, err := e.GetActions(c.kind, c.id)
		if err != nil {
			t.Fatal(err)
		}
		jsonEq(t, mustJSON(t, a), c.wantActions)
		r, _ := e.Get(c.kind, c.id)
		if !r.Default {
			t.Errorf("%s lost default=true", c.id)
		}
	}
	// The exact number text survives (json.Number), not float formatting.
	if a, _ := e.GetActions(KindUnderride, RuleMessage); !strings.Contains(string(mustJSON(t, a)), "1.5e3") {
		t.Errorf("number not preserved: %s", mustJSON(t, a))
	}

	// Enable/disable user rules too.
	mustPut(t, &u, KindSender, "@bob:x", `{"actions":["notify"]}`, "", "")
	if err := u.SetEnabled(KindSender, "@bob:x", false); err != nil {
		t.Fatal(err)
	}
	if err := u.SetActions(KindSender, "@bob:x", Actions{}); err != nil {
		t.Fatal(err)
	}
	e = Effective(u, alice, aliceLocal)
	if en, _ := e.GetEnabled(KindSender, "@bob:x"); en {
		t.Error("user rule still enabled")
	}
	if a, _ := e.GetActions(KindSender, "@bob:x"); string(mustJSON(t, a)) != "[]" {
		t.Errorf("user rule actions = %s", mustJSON(t, a))
	}
}

func isErr(err error, code string, status int) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code && e.Status == status
}

func TestErrors(t *testing.T) {
	base := func() *UserRules {
		u := &UserRules{}
		if err := u.Put(KindRoom, "!a:x", []byte(`{"actions":[]}`), "", ""); err != nil {
			t.Fatal(err)
		}
		return u
	}
	put := func(kind, id, body, before, after string) func(*UserRules) error {
		return func(u *UserRules) error { return u.Put(kind, id, []byte(body), before, after) }
	}
	ok := `{"actions":["notify"]}`
	cases := []struct {
		name   string
		op     func(*UserRules) error
		code   string
		status int
	}{
		{"put unknown kind", put("global", "x", ok, "", ""), CodeInvalidParam, 400},
		{"put empty rule id", put(KindRoom, "", ok, "", ""), CodeInvalidParam, 400},
		{"put dot rule id", put(KindOverride, ".m.rule.master", ok, "", ""), CodeInvalidParam, 400},
		{"put new dot rule id", put(KindRoom, ".custom", ok, "", ""), CodeInvalidParam, 400},
		{"put slash", put(KindRoom, "a/b", ok, "", ""), CodeInvalidParam, 400},
		{"put backslash", put(KindRoom, `#fo\o:example.com`, ok, "", ""), CodeInvalidParam, 400},
		{"put not json", put(KindRoom, "!b:x", `{"actions":`, "", ""), CodeNotJSON, 400},
		{"put empty body", put(KindRoom, "!b:x", ``, "", ""), CodeNotJSON, 400},
		{"put array body", put(KindRoom, "!b:x", `["notify"]`, "", ""), CodeBadJSON, 400},
		{"put null body", put(KindRoom, "!b:x", `null`, "", ""), CodeBadJSON, 400},
		{"put no actions", put(KindRoom, "!b:x", `{}`, "", ""), CodeBadJSON, 400},
		{"put null actions", put(KindRoom, "!b:x", `{"actions":null}`, "", ""), CodeBadJSON, 400},
		{"put actions not array", put(KindRoom, "!b:x", `{"actions":"notify"}`, "", ""), CodeBadJSON, 400},
		{"put unknown action", put(KindRoom, "!b:x", `{"actions":["not_an_action"]}`, "", ""), CodeBadJSON, 400},
		{"put numeric action", put(KindRoom, "!b:x", `{"actions":[1]}`, "", ""), CodeBadJSON, 400},
		{"put tweak without name", put(KindRoom, "!b:x", `{"actions":[{"value":"x"}]}`, "", ""), CodeBadJSON, 400},
		{"put tweak name not string", put(KindRoom, "!b:x", `{"actions":[{"set_tweak":true}]}`, "", ""), CodeBadJSON, 400},
		{"content no pattern", put(KindContent, "c", ok, "", ""), CodeBadJSON, 400},
		{"content pattern not string", put(KindContent, "c", `{"actions":[],"pattern":5}`, "", ""), CodeBadJSON, 400},
		{"content empty pattern", put(KindContent, "c", `{"actions":[],"pattern":""}`, "", ""), CodeBadJSON, 400},
		{"conditions not array", put(KindOverride, "o", `{"actions":[],"conditions":{}}`, "", ""), CodeBadJSON, 400},
		{"condition not object", put(KindOverride, "o", `{"actions":[],"conditions":["x"]}`, "", ""), CodeBadJSON, 400},
		{"condition without kind", put(KindUnderride, "o", `{"actions":[],"conditions":[{}]}`, "", ""), CodeBadJSON, 400},
		{"condition kind not string", put(KindUnderride, "o", `{"actions":[],"conditions":[{"kind":1}]}`, "", ""), CodeBadJSON, 400},
		{"event_match no key", put(KindOverride, "o", `{"actions":[],"conditions":[{"kind":"event_match","pattern":"x"}]}`, "", ""), CodeBadJSON, 400},
		{"event_match no pattern", put(KindOverride, "o", `{"actions":[],"conditions":[{"kind":"event_match","key":"type"}]}`, "", ""), CodeBadJSON, 400},
		{"event_match null pattern", put(KindOverride, "o", `{"actions":[],"conditions":[{"kind":"event_match","key":"type","pattern":null}]}`, "", ""), CodeBadJSON, 400},
		{"property_is no value", put(KindOverride, "o", `{"actions":[],"conditions":[{"kind":"event_property_is","key":"a"}]}`, "", ""), CodeBadJSON, 400},
		{"property_is object value", put(KindOverride, "o", `{"actions":[],"conditions":[{"kind":"event_property_is","key":"a","value":{}}]}`, "", ""), CodeBadJSON, 400},
		{"property_contains float", put(KindOverride, "o", `{"actions":[],"conditions":[{"kind":"event_property_contains","key":"a","value":1.5}]}`, "", ""), CodeBadJSON, 400},
		{"property_is too big", put(KindOverride, "o", `{"actions":[],"conditions":[{"kind":"event_property_is","key":"a","value":9007199254740992}]}`, "", ""), CodeBadJSON, 400},
		{"member count bad", put(KindOverride, "o", `{"actions":[],"conditions":[{"kind":"room_member_count","is":"two"}]}`, "", ""), CodeBadJSON, 400},
		{"member count number", put(KindOverride, "o", `{"actions":[],"conditions":[{"kind":"room_member_count","is":2}]}`, "", ""), CodeBadJSON, 400},
		{"sender perm no key", put(KindOverride, "o", `{"actions":[],"conditions":[{"kind":"sender_notification_permission"}]}`, "", ""), CodeBadJSON, 400},
		{"before missing", put(KindRoom, "!b:x", ok, "!nope:x", ""), CodeUnknown, 400},
		{"after missing", put(KindRoom, "!b:x", ok, "", "!nope:x"), CodeUnknown, 400},
		{"before other kind", put(KindSender, "@b:x", ok, "!a:x", ""), CodeUnknown, 400},
		{"before default", put(KindOverride, "o", ok, RuleSuppressNotices, ""), CodeInvalidParam, 400},
		{"after default", put(KindUnderride, "u", ok, "", RuleMessage), CodeInvalidParam, 400},
		{"delete unknown kind", func(u *UserRules) error { return u.Delete("nope", "!a:x") }, CodeInvalidParam, 400},
		{"delete absent", func(u *UserRules) error { return u.Delete(KindRoom, "!zz:x") }, CodeNotFound, 404},
		{"delete default", func(u *UserRules) error { return u.Delete(KindOverride, RuleMaster) }, CodeNotFound, 404},
		{"delete wrong kind", func(u *UserRules) error { return u.Delete(KindSender, "!a:x") }, CodeNotFound, 404},
		{"enable unknown kind", func(u *UserRules) error { return u.SetEnabled("nope", RuleMaster, true) }, CodeInvalidParam, 400},
		{"enable unknown default", func(u *UserRules) error { return u.SetEnabled(KindOverride, ".not.a.default.rule", true) }, CodeNotFound, 404},
		{"enable default wrong kind", func(u *UserRules) error { return u.SetEnabled(KindUnderride, RuleMaster, true) }, CodeNotFound, 404},
		{"enable absent user rule", func(u *UserRules) error { return u.SetEnabled(KindRoom, "!zz:x", true) }, CodeNotFound, 404},
		{"actions unknown kind", func(u *UserRules) error { return u.SetActions("nope", "!a:x", Actions{}) }, CodeInvalidParam, 400},
		{"actions unknown default", func(u *UserRules) error { return u.SetActions(KindOverride, ".not.a.default.rule", Actions{"notify"}) }, CodeNotFound, 404},
		{"actions absent user rule", func(u *UserRules) error { return u.SetActions(KindSender, "@bob:x", Actions{"notify"}) }, CodeNotFound, 404},
		{"actions invalid", func(u *UserRules) error { return u.SetActions(KindRoom, "!a:x", Actions{"bogus"}) }, CodeBadJSON, 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := base()
			before := string(mustJSON(t, u))
			err := c.op(u)
			if !isErr(err, c.code, c.status) {
				t.Fatalf("err = %v, want %s/%d", err, c.code, c.status)
			}
			if after := string(mustJSON(t, u)); after != before {
				t.Errorf("failed op mutated state:\n%s\n%s", before, after)
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	e := Effective(UserRules{}, alice, aliceLocal)
	if _, err := e.Get("nope", RuleMaster); !isErr(err, CodeInvalidParam, 400) {
		t.Errorf("Get unknown kind: %v", err)
	}
	if _, err := e.Rules("nope"); !isErr(err, CodeInvalidParam, 400) {
		t.Errorf("Rules unknown kind: %v", err)
	}
	if _, err := e.Get(KindOverride, "not_a_rule_id"); !isErr(err, CodeNotFound, 404) {
		t.Errorf("Get unknown rule: %v", err)
	}
	if _, err := e.GetEnabled(KindUnderride, RuleMaster); !isErr(err, CodeNotFound, 404) {
		t.Errorf("GetEnabled wrong kind: %v", err)
	}
	if _, err := e.GetActions(KindRoom, "!x:y"); !isErr(err, CodeNotFound, 404) {
		t.Errorf("GetActions unknown: %v", err)
	}
	if r, err := e.Rules(KindRoom); err != nil || r == nil || len(r) != 0 {
		t.Errorf("Rules(room) = %v, %v", r, err)
	}
}

func TestParseEnabled(t *testing.T) {
	cases := []struct {
		body string
		want bool
		code string
	}{
		{`{"enabled":true}`, true, ""},
		{`{"enabled":false}`, false, ""},
		{`true`, true, ""},
		{`{"enabled":"not a boolean"}`, false, CodeBadJSON},
		{`{"enabled":null}`, false, CodeBadJSON},
		{`{}`, false, CodeBadJSON},
		{`null`, false, CodeBadJSON},
		{`[true]`, false, CodeBadJSON},
		{`{`, false, CodeNotJSON},
	}
	for _, c := range cases {
		got, err := ParseEnabled([]byte(c.body))
		if c.code == "" {
			if err != nil || got != c.want {
				t.Errorf("ParseEnabled(%s) = %v, %v", c.body, got, err)
			}
		} else if !isErr(err, c.code, 400) {
			t.Errorf("ParseEnabled(%s) err = %v, want %s", c.body, err, c.code)
		}
	}
}

func TestParseActions(t *testing.T) {
	cases := []struct {
		body, want, code string
	}{
		{`{"actions":["notify",{"set_tweak":"highlight"}]}`, `["notify",{"set_tweak":"highlight"}]`, ""},
		{`{"actions":[]}`, `[]`, ""},
		{`{"actions":["coalesce","dont_notify"]}`, `["coalesce","dont_notify"]`, ""},
		{`{"actions":["nope"]}`, "", CodeBadJSON},
		{`{"actions":{}}`, "", CodeBadJSON},
		{`{}`, "", CodeBadJSON},
		{`[]`, "", CodeBadJSON},
		{`nope`, "", CodeNotJSON},
	}
	for _, c := range cases {
		got, err := ParseActions([]byte(c.body))
		if c.code == "" {
			if err != nil {
				t.Errorf("ParseActions(%s): %v", c.body, err)
				continue
			}
			jsonEq(t, mustJSON(t, got), c.want)
		} else if !isErr(err, c.code, 400) {
			t.Errorf("ParseActions(%s) err = %v, want %s", c.body, err, c.code)
		}
	}
}

func TestConditionJSONRoundTrip(t *testing.T) {
	cases := []string{
		`{"kind":"event_match","key":"state_key","pattern":""}`,
		`{"kind":"event_property_is","key":"content.x","value":null}`,
		`{"kind":"event_property_is","key":"content.x","value":-42}`,
		`{"kind":"event_property_contains","key":"content.x","value":"s"}`,
		`{"kind":"room_member_count","is":">=3"}`,
		`{"kind":"contains_display_name"}`,
		// Unknown kinds keep every key, including empty strings and non-string values.
		`{"kind":"related_event_match","rel_type":"m.in_reply_to","key":"sender","pattern":"","include_fallbacks":false}`,
		`{"kind":"org.example.future","is":2,"value":{"a":[1]}}`,
	}
	for _, in := range cases {
		var c Condition
		if err := json.Unmarshal([]byte(in), &c); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		jsonEq(t, mustJSON(t, c), in)
	}
	// Absent value stays absent (not null).
	var c Condition
	_ = json.Unmarshal([]byte(`{"kind":"event_match","key":"type","pattern":"m.room.message"}`), &c)
	if strings.Contains(string(mustJSON(t, c)), "value") {
		t.Errorf("absent value emitted: %s", mustJSON(t, c))
	}
}

func TestUserRulesJSONRoundTrip(t *testing.T) {
	var u UserRules
	mustPut(t, &u, KindOverride, "mute", `{"actions":[],"conditions":[{"kind":"event_match","key":"room_id","pattern":"!a:x"}]}`, "", "")
	mustPut(t, &u, KindOverride, "nullval", `{"actions":["notify"],"conditions":[{"kind":"event_property_is","key":"content.x","value":null},
		{"kind":"org.example.unstable","rel_type":"m.thread","pattern":""}]}`, "", "mute")
	mustPut(t, &u, KindContent, "cake", `{"actions":["notify",{"set_tweak":"sound","value":"cakealarm.wav"}],"pattern":"cake*lie"}`, "", "")
	mustPut(t, &u, KindRoom, "!r:x", `{"actions":[]}`, "", "")
	mustPut(t, &u, KindSender, "@spam:x", `{"actions":["dont_notify"]}`, "", "")
	mustPut(t, &u, KindUnderride, "all", `{"actions":["notify",{"set_tweak":"v","value":12345678901234567}]}`, "", "")
	if err := u.SetEnabled(KindRoom, "!r:x", false); err != nil {
		t.Fatal(err)
	}
	if err := u.SetEnabled(KindOverride, RuleMaster, true); err != nil {
		t.Fatal(err)
	}
	if err := u.SetActions(KindOverride, RuleMaster, Actions{}); err != nil {
		t.Fatal(err)
	}
	if err := u.SetActions(KindUnderride, RuleCall, Actions{"notify"}); err != nil {
		t.Fatal(err)
	}

	blob := mustJSON(t, u)
	var back UserRules
	if err := json.Unmarshal(blob, &back); err != nil {
		t.Fatal(err)
	}
	if blob2 := mustJSON(t, back); string(blob2) != string(blob) {
		t.Errorf("UserRules JSON not stable:\n%s\n%s", blob, blob2)
	}
	e1 := mustJSON(t, Effective(u, alice, aliceLocal))
	e2 := mustJSON(t, Effective(back, alice, aliceLocal))
	if string(e1) != string(e2) {
		t.Errorf("Effective differs after round trip:\n%s\n%s", e1, e2)
	}
	if !strings.Contains(string(e2), `"value":null`) || !strings.Contains(string(e2), "12345678901234567") {
		t.Errorf("lost null value or exact number: %s", e2)
	}
	// Master override with empty actions must survive as [] not be dropped.
	if !strings.Contains(string(blob), `".m.rule.master":{"enabled":true,"actions":[]}`) {
		t.Errorf("master change not stored as expected: %s", blob)
	}
	var empty UserRules
	if got := string(mustJSON(t, empty)); got != "{}" {
		t.Errorf("empty UserRules = %s", got)
	}
}

func TestEffectiveDoesNotAlias(t *testing.T) {
	var u UserRules
	mustPut(t, &u, KindOverride, "a", `{"actions":["notify"],"conditions":[{"kind":"contains_display_name"}]}`, "", "")
	e := Effective(u, alice, aliceLocal)
	r := &e.Override[1]
	r.Actions[0] = "dont_notify"
	r.Conditions[0].Kind = "changed"
	if u.Override[0].Actions[0] != "notify" || u.Override[0].Conditions[0].Kind != CondContainsDisplayName {
		t.Error("Effective result aliases UserRules")
	}
}

// MSC4306: clients may not create postcontent rules, but may enable,
// disable and change the actions of its server-default rules.
func TestPostContentRulesAreServerOnly(t *testing.T) {
	var u UserRules
	err := u.Put(KindPostContent, "mine", []byte(`{"actions":["notify"],"conditions":[]}`), "", "")
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != CodeInvalidParam || pe.Status != 400 {
		t.Fatalf("Put(postcontent) = %v, want 400 M_INVALID_PARAM", err)
	}
	if err := u.Delete(KindPostContent, RuleSubscribedThread); err == nil {
		t.Fatal("a server-default postcontent rule was deleted")
	}
	if err := u.SetEnabled(KindPostContent, RuleUnsubscribedThread, false); err != nil {
		t.Fatal(err)
	}
	if err := u.SetActions(KindPostContent, RuleSubscribedThread, Actions{"notify"}); err != nil {
		t.Fatal(err)
	}
	e := Effective(u, alice, aliceLocal)
	if got := ids(e.PostContent); !reflect.DeepEqual(got, []string{RuleUnsubscribedThread, RuleSubscribedThread}) {
		t.Fatalf("postcontent = %v", got)
	}
	if e.PostContent[0].Enabled || len(e.PostContent[1].Actions) != 1 {
		t.Fatalf("changes not applied: %+v", e.PostContent)
	}
	// The condition is validated in rules users may create.
	for _, bad := range []string{`{"kind":"io.element.msc4306.thread_subscription"}`,
		`{"kind":"io.element.msc4306.thread_subscription","subscribed":"yes"}`} {
		err := u.Put(KindOverride, "o", []byte(`{"actions":[],"conditions":[`+bad+`]}`), "", "")
		if !errors.As(err, &pe) || pe.Code != CodeBadJSON {
			t.Errorf("condition %s: %v, want M_BAD_JSON", bad, err)
		}
	}
	mustPut(t, &u, KindOverride, "o", `{"actions":[],"conditions":[{"kind":"io.element.msc4306.thread_subscription","subscribed":true}]}`, "", "")
}
