package e2e

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/pushrules"

	"matrixhs/tests/testserver"
)

var defaultRuleIDs = map[string][]string{
	"override": {
		".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me", ".m.rule.member_event",
		".m.rule.is_user_mention", ".m.rule.contains_display_name", ".m.rule.is_room_mention",
		".m.rule.roomnotif", ".m.rule.tombstone", ".m.rule.reaction", ".m.rule.room.server_acl",
		".m.rule.suppress_edits",
	},
	"content": {".m.rule.contains_user_name"},
	"postcontent": {
		".io.element.msc4306.rule.unsubscribed_thread", ".io.element.msc4306.rule.subscribed_thread",
	},
	"room":   {},
	"sender": {},
	"underride": {
		".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one",
		".m.rule.message", ".m.rule.encrypted",
	},
}

var ruleKinds = []string{"override", "content", "postcontent", "room", "sender", "underride"}

type rawRule struct {
	RuleID     string           `json:"rule_id"`
	Default    *bool            `json:"default"`
	Enabled    *bool            `json:"enabled"`
	Actions    []any            `json:"actions"`
	Conditions []map[string]any `json:"conditions"`
	Pattern    *string          `json:"pattern"`
}

// getRules fetches GET /pushrules/ and checks the envelope: exactly the
// global scope with one array per kind.
func getRules(t *testing.T, s *testserver.Server, token string) map[string][]rawRule {
	t.Helper()
	r := do(t, "GET", v3(s, "pushrules")+"/", token, nil).want(t, 200, "")
	var env map[string]map[string]json.RawMessage
	if err := json.Unmarshal(r.Raw, &env); err != nil {
		t.Fatalf("push rules: %v: %s", err, r.Raw)
	}
	if len(env) != 1 || env["global"] == nil {
		t.Fatalf("push rules scopes = %s", r.Raw)
	}
	out := map[string][]rawRule{}
	for _, kind := range ruleKinds {
		raw, ok := env["global"][kind]
		if !ok || raw[0] != '[' {
			t.Fatalf("global.%s is not an array: %s", kind, raw)
		}
		var rules []rawRule
		if err := json.Unmarshal(raw, &rules); err != nil {
			t.Fatalf("global.%s: %v", kind, err)
		}
		out[kind] = rules
	}
	if len(env["global"]) != len(ruleKinds) {
		t.Fatalf("global has extra keys: %s", r.Raw)
	}
	return out
}

func ids(rules []rawRule) []string {
	out := []string{}
	for _, r := range rules {
		out = append(out, r.RuleID)
	}
	return out
}

func findRule(t *testing.T, rules []rawRule, id string) rawRule {
	t.Helper()
	for _, r := range rules {
		if r.RuleID == id {
			return r
		}
	}
	t.Fatalf("rule %s not found in %v", id, ids(rules))
	return rawRule{}
}

// TestPushRulesDefaults checks the complete default ruleset and its shape.
func TestPushRulesDefaults(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	rules := getRules(t, s, alice.AccessToken)
	for _, kind := range ruleKinds {
		if got := ids(rules[kind]); !reflect.DeepEqual(got, defaultRuleIDs[kind]) {
			t.Errorf("%s rule IDs = %v\nwant %v", kind, got, defaultRuleIDs[kind])
		}
		for _, r := range rules[kind] {
			if r.Default == nil || !*r.Default || r.Enabled == nil || r.Actions == nil {
				t.Errorf("%s rule %s lacks default/enabled/actions: %+v", kind, r.RuleID, r)
			}
			if kind == "override" || kind == "postcontent" || kind == "underride" {
				if r.Conditions == nil {
					t.Errorf("%s rule %s has no conditions array", kind, r.RuleID)
				}
			}
		}
	}
	master := findRule(t, rules["override"], ".m.rule.master")
	if *master.Enabled || len(master.Actions) != 0 || len(master.Conditions) != 0 {
		t.Errorf("master = %+v, want disabled with no conditions or actions", master)
	}
	for _, id := range []string{".m.rule.suppress_notices", ".m.rule.message", ".m.rule.encrypted", ".m.rule.tombstone"} {
		kind := "override"
		if id == ".m.rule.message" || id == ".m.rule.encrypted" {
			kind = "underride"
		}
		if r := findRule(t, rules[kind], id); !*r.Enabled {
			t.Errorf("%s is disabled by default", id)
		}
	}
	mention := findRule(t, rules["override"], ".m.rule.is_user_mention")
	if len(mention.Conditions) != 1 || mention.Conditions[0]["kind"] != "event_property_contains" ||
		mention.Conditions[0]["key"] != `content.m\.mentions.user_ids` || mention.Conditions[0]["value"] != string(alice.UserID) {
		t.Errorf("is_user_mention conditions = %v", mention.Conditions)
	}
	wantActions := []any{"notify", map[string]any{"set_tweak": "sound", "value": "default"}, map[string]any{"set_tweak": "highlight"}}
	if !reflect.DeepEqual(mention.Actions, wantActions) {
		t.Errorf("is_user_mention actions = %v", mention.Actions)
	}
	invite := findRule(t, rules["override"], ".m.rule.invite_for_me")
	if len(invite.Conditions) != 3 || invite.Conditions[2]["key"] != "state_key" || invite.Conditions[2]["pattern"] != string(alice.UserID) {
		t.Errorf("invite_for_me conditions = %v", invite.Conditions)
	}
	roomMention := findRule(t, rules["override"], ".m.rule.is_room_mention")
	if len(roomMention.Conditions) != 2 || roomMention.Conditions[0]["kind"] != "event_property_is" ||
		roomMention.Conditions[0]["value"] != true || roomMention.Conditions[1]["kind"] != "sender_notification_permission" {
		t.Errorf("is_room_mention conditions = %v", roomMention.Conditions)
	}
	contains := findRule(t, rules["content"], ".m.rule.contains_user_name")
	if contains.Pattern == nil || *contains.Pattern != "alice" || contains.Conditions != nil {
		t.Errorf("contains_user_name = %+v", contains)
	}
	oneToOne := findRule(t, rules["underride"], ".m.rule.room_one_to_one")
	if len(oneToOne.Conditions) != 2 || oneToOne.Conditions[0]["kind"] != "room_member_count" || oneToOne.Conditions[0]["is"] != "2" {
		t.Errorf("room_one_to_one conditions = %v", oneToOne.Conditions)
	}
	call := findRule(t, rules["underride"], ".m.rule.call")
	if !reflect.DeepEqual(call.Actions, []any{"notify", map[string]any{"set_tweak": "sound", "value": "ring"}}) {
		t.Errorf("call actions = %v", call.Actions)
	}

	// mautrix parses the same ruleset.
	rs, err := alice.GetPushRules(ctxT(t))
	if err != nil {
		t.Fatalf("GetPushRules: %v", err)
	}
	if len(rs.Override) != 12 || len(rs.Content) != 1 || len(rs.Underride) != 5 || rs.Override[0].RuleID != ".m.rule.master" {
		t.Fatalf("mautrix ruleset: %d override, %d content, %d underride", len(rs.Override), len(rs.Content), len(rs.Underride))
	}
	// Scoped and single-rule reads.
	g := do(t, "GET", v3(s, "pushrules", "global")+"/", alice.AccessToken, nil).want(t, 200, "")
	whole := do(t, "GET", v3(s, "pushrules")+"/", alice.AccessToken, nil)
	var env map[string]json.RawMessage
	json.Unmarshal(whole.Raw, &env)
	jsonEqual(t, g.Raw, env["global"])
	rule, err := alice.GetPushRule(ctxT(t), "global", pushrules.UnderrideRule, ".m.rule.message")
	if err != nil || rule.RuleID != ".m.rule.message" || !rule.Default || !rule.Enabled {
		t.Fatalf("GetPushRule = %+v, %v", rule, err)
	}
	// Another user's rules are personalised to them.
	bob := newUser(t, s, "bob")
	bobRules := getRules(t, s, bob.AccessToken)
	if p := findRule(t, bobRules["content"], ".m.rule.contains_user_name").Pattern; p == nil || *p != "bob" {
		t.Errorf("bob's contains_user_name pattern = %v", p)
	}
}

// TestPushRulesEditing covers PUT with before/after, enabled, actions, delete and errors.
func TestPushRulesEditing(t *testing.T) {
	s := start(t, nil)
	ctx := ctxT(t)
	alice := newUser(t, s, "alice")
	tok := alice.AccessToken
	notify := []*pushrules.PushAction{{Action: pushrules.ActionNotify}}
	cond := []*pushrules.PushCondition{{Kind: pushrules.KindEventMatch, Key: "content.body", Pattern: "cake*"}}

	put := func(id, before, after string) {
		t.Helper()
		err := alice.PutPushRule(ctx, "global", pushrules.OverrideRule, id, &mautrix.ReqPutPushRule{
			Before: before, After: after, Actions: notify, Conditions: cond,
		})
		if err != nil {
			t.Fatalf("PutPushRule %s: %v", id, err)
		}
	}
	put("r1", "", "")
	put("r2", "r1", "")
	put("r3", "", "r1")
	put("r0", "", "") // no position: most important user rule
	override := getRules(t, s, tok)["override"]
	want := append([]string{".m.rule.master", "r0", "r2", "r1", "r3"}, defaultRuleIDs["override"][1:]...)
	if got := ids(override); !reflect.DeepEqual(got, want) {
		t.Fatalf("override order = %v\nwant %v", got, want)
	}
	r1 := findRule(t, override, "r1")
	if *r1.Default || !*r1.Enabled || !reflect.DeepEqual(r1.Actions, []any{"notify"}) ||
		!reflect.DeepEqual(r1.Conditions, []map[string]any{{"kind": "event_match", "key": "content.body", "pattern": "cake*"}}) {
		t.Fatalf("r1 = %+v", r1)
	}
	// Single-rule GET.
	r := do(t, "GET", v3(s, "pushrules", "global", "override", "r1"), tok, nil).want(t, 200, "")
	jsonEqual(t, r.Raw, map[string]any{
		"rule_id": "r1", "default": false, "enabled": true, "actions": []any{"notify"},
		"conditions": []any{map[string]any{"kind": "event_match", "key": "content.body", "pattern": "cake*"}},
	})

	// Content and room rules.
	if err := alice.PutPushRule(ctx, "global", pushrules.ContentRule, "cakes", &mautrix.ReqPutPushRule{
		Actions: notify, Pattern: "cake",
	}); err != nil {
		t.Fatalf("content rule: %v", err)
	}
	do(t, "PUT", v3(s, "pushrules", "global", "room", "!room:hs.test"), tok, map[string]any{"actions": []any{}}).want(t, 200, "")
	rules := getRules(t, s, tok)
	if got := ids(rules["content"]); !reflect.DeepEqual(got, []string{"cakes", ".m.rule.contains_user_name"}) {
		t.Fatalf("content rules = %v", got)
	}
	if got := ids(rules["room"]); !reflect.DeepEqual(got, []string{"!room:hs.test"}) {
		t.Fatalf("room rules = %v", got)
	}

	// Enable/disable a default rule and a user rule.
	if err := alice.SetPushRuleEnabled(ctx, "global", pushrules.OverrideRule, ".m.rule.master", true); err != nil {
		t.Fatalf("enable master: %v", err)
	}
	if err := alice.SetPushRuleEnabled(ctx, "global", pushrules.UnderrideRule, ".m.rule.message", false); err != nil {
		t.Fatalf("disable message: %v", err)
	}
	if err := alice.SetPushRuleEnabled(ctx, "global", pushrules.OverrideRule, "r1", false); err != nil {
		t.Fatalf("disable r1: %v", err)
	}
	r = do(t, "GET", v3(s, "pushrules", "global", "override", ".m.rule.master", "enabled"), tok, nil).want(t, 200, "")
	jsonEqual(t, r.Raw, map[string]any{"enabled": true})
	r = do(t, "GET", v3(s, "pushrules", "global", "underride", ".m.rule.message", "enabled"), tok, nil).want(t, 200, "")
	jsonEqual(t, r.Raw, map[string]any{"enabled": false})
	rules = getRules(t, s, tok)
	if !*findRule(t, rules["override"], ".m.rule.master").Enabled || *findRule(t, rules["underride"], ".m.rule.message").Enabled ||
		*findRule(t, rules["override"], "r1").Enabled {
		t.Fatalf("enabled flags not reflected in the ruleset")
	}
	// Replacing a rule keeps its enabled state.
	put("r1", "", "")
	if *findRule(t, getRules(t, s, tok)["override"], "r1").Enabled {
		t.Fatalf("re-PUT re-enabled r1")
	}

	// Actions on a default and a user rule.
	if err := alice.PutPushRuleActions(ctx, "global", pushrules.UnderrideRule, ".m.rule.message", []*pushrules.PushAction{
		{Action: pushrules.ActionNotify}, {Action: pushrules.ActionSetTweak, Tweak: pushrules.TweakSound, Value: "bell"},
	}); err != nil {
		t.Fatalf("set actions: %v", err)
	}
	r = do(t, "GET", v3(s, "pushrules", "global", "underride", ".m.rule.message", "actions"), tok, nil).want(t, 200, "")
	jsonEqual(t, r.Raw, map[string]any{"actions": []any{"notify", map[string]any{"set_tweak": "sound", "value": "bell"}}})
	do(t, "PUT", v3(s, "pushrules", "global", "override", "r2", "actions"), tok, map[string]any{"actions": []any{}}).want(t, 200, "")
	r = do(t, "GET", v3(s, "pushrules", "global", "override", "r2", "actions"), tok, nil).want(t, 200, "")
	jsonEqual(t, r.Raw, map[string]any{"actions": []any{}})
	msg := findRule(t, getRules(t, s, tok)["underride"], ".m.rule.message")
	if !*msg.Default || len(msg.Actions) != 2 {
		t.Fatalf(".m.rule.message after actions change = %+v", msg)
	}

	// Delete.
	if err := alice.DeletePushRule(ctx, "global", pushrules.OverrideRule, "r2"); err != nil {
		t.Fatalf("delete r2: %v", err)
	}
	want = append([]string{".m.rule.master", "r0", "r1", "r3"}, defaultRuleIDs["override"][1:]...)
	if got := ids(getRules(t, s, tok)["override"]); !reflect.DeepEqual(got, want) {
		t.Fatalf("after delete override = %v", got)
	}
	wantMatrixErr(t, alice.DeletePushRule(ctx, "global", pushrules.OverrideRule, "r2"), http.StatusNotFound, "M_NOT_FOUND")
	_, err := alice.GetPushRule(ctx, "global", pushrules.OverrideRule, "r2")
	wantMatrixErr(t, err, http.StatusNotFound, "M_NOT_FOUND")

	// Errors.
	wantMatrixErr(t, alice.DeletePushRule(ctx, "global", pushrules.OverrideRule, ".m.rule.master"), http.StatusNotFound, "M_NOT_FOUND")
	wantMatrixErr(t, alice.SetPushRuleEnabled(ctx, "global", pushrules.OverrideRule, ".m.rule.nonexistent", true), http.StatusNotFound, "M_NOT_FOUND")
	wantMatrixErr(t, alice.SetPushRuleEnabled(ctx, "global", pushrules.OverrideRule, "nope", true), http.StatusNotFound, "M_NOT_FOUND")
	do(t, "GET", v3(s, "pushrules", "global", "bogus", "r1"), tok, nil).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	do(t, "PUT", v3(s, "pushrules", "global", "bogus", "r1"), tok, map[string]any{"actions": []any{}}).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	do(t, "DELETE", v3(s, "pushrules", "global", "bogus", "r1"), tok, nil).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	do(t, "GET", v3(s, "pushrules", "device", "override", "r1"), tok, nil).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	do(t, "PUT", v3(s, "pushrules", "global", "override", ".m.rule.mine"), tok, map[string]any{"actions": []any{}}).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	do(t, "PUT", v3(s, "pushrules", "global", "override", "r9")+"?before=missing", tok, map[string]any{"actions": []any{}}).want(t, http.StatusBadRequest, "M_UNKNOWN")
	do(t, "PUT", v3(s, "pushrules", "global", "override", "r9"), tok, map[string]any{}).want(t, http.StatusBadRequest, "M_BAD_JSON")
	do(t, "PUT", v3(s, "pushrules", "global", "override", "r9"), tok, map[string]any{"actions": []any{"explode"}}).want(t, http.StatusBadRequest, "M_BAD_JSON")
	do(t, "PUT", v3(s, "pushrules", "global", "content", "r9"), tok, map[string]any{"actions": []any{}}).want(t, http.StatusBadRequest, "M_BAD_JSON")
	do(t, "PUT", v3(s, "pushrules", "global", "override", "r9"), tok, "{nope").want(t, http.StatusBadRequest, "M_NOT_JSON")
	do(t, "PUT", v3(s, "pushrules", "global", "override", ".m.rule.master", "enabled"), tok, map[string]any{"enabled": "yes"}).want(t, http.StatusBadRequest, "M_BAD_JSON")
	do(t, "GET", v3(s, "pushrules")+"/", "", nil).want(t, http.StatusUnauthorized, "M_MISSING_TOKEN")
	// None of the failures changed anything.
	if got := ids(getRules(t, s, tok)["override"]); !reflect.DeepEqual(got, want) {
		t.Fatalf("after errors override = %v", got)
	}
}
