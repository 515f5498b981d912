package e2e

import (
	"fmt"
	"net/http"
	"reflect"
	"sync"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/pushrules"
)

// TestRestartKeepsState: everything a user set survives a restart.
func TestRestartKeepsState(t *testing.T) {
	s := start(t, nil)
	ctx := ctxT(t)
	reg, err := anon(t, s).RegisterDummy(ctx, &mautrix.ReqRegister[any]{
		Username: "alice", Password: testPassword, DeviceID: "FIRST", InitialDeviceDisplayName: "First",
	})
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	alice := withToken(t, s, string(reg.UserID), reg.AccessToken)
	second := login(t, s, "alice", testPassword, "SECOND", "Second")
	if err := alice.SetDisplayName(ctx, "Alice Before Restart"); err != nil {
		t.Fatal(err)
	}
	if err := alice.SetAccountData(ctx, "org.example.persist", map[string]any{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	if err := alice.SetRoomAccountData(ctx, "!room:hs.test", "org.example.persist", map[string]any{"room": 1}); err != nil {
		t.Fatal(err)
	}
	filterJSON := map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 3}}}
	fr := do(t, "POST", v3(s, "user", string(alice.UserID), "filter"), alice.AccessToken, filterJSON).want(t, 200, "")
	filterID := fr.Body["filter_id"].(string)
	if err := alice.PutPushRule(ctx, "global", pushrules.OverrideRule, "persisted", &mautrix.ReqPutPushRule{
		Actions:    []*pushrules.PushAction{{Action: pushrules.ActionNotify}},
		Conditions: []*pushrules.PushCondition{{Kind: pushrules.KindEventMatch, Key: "type", Pattern: "m.room.message"}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := alice.SetPushRuleEnabled(ctx, "global", pushrules.UnderrideRule, ".m.rule.message", false); err != nil {
		t.Fatal(err)
	}
	rulesBefore := do(t, "GET", v3(s, "pushrules")+"/", alice.AccessToken, nil).want(t, 200, "").Raw
	devsBefore := deviceIDs(t, alice)

	s2 := s.Restart()
	if s2.URL() == "" {
		t.Fatal("restarted server has no URL")
	}
	alice2 := withToken(t, s2, string(reg.UserID), reg.AccessToken)
	wantTokenValid(t, s2, reg.AccessToken, string(reg.UserID), "FIRST")
	wantTokenValid(t, s2, second.AccessToken, string(reg.UserID), "SECOND")
	if devs := deviceIDs(t, alice2); !reflect.DeepEqual(devs, devsBefore) || devs["FIRST"] != "First" {
		t.Fatalf("devices after restart = %v, before %v", devs, devsBefore)
	}
	dn, err := alice2.GetDisplayName(ctx, alice2.UserID)
	if err != nil || dn.DisplayName != "Alice Before Restart" {
		t.Fatalf("displayname after restart = %+v, %v", dn, err)
	}
	r := do(t, "GET", v3(s2, "user", string(alice2.UserID), "account_data", "org.example.persist"), alice2.AccessToken, nil).want(t, 200, "")
	jsonEqual(t, r.Raw, map[string]any{"k": "v"})
	r = do(t, "GET", v3(s2, "user", string(alice2.UserID), "rooms", "!room:hs.test", "account_data", "org.example.persist"), alice2.AccessToken, nil).want(t, 200, "")
	jsonEqual(t, r.Raw, map[string]any{"room": 1})
	r = do(t, "GET", v3(s2, "user", string(alice2.UserID), "filter", filterID), alice2.AccessToken, nil).want(t, 200, "")
	jsonEqual(t, r.Raw, filterJSON)
	rulesAfter := do(t, "GET", v3(s2, "pushrules")+"/", alice2.AccessToken, nil).want(t, 200, "").Raw
	if string(rulesAfter) != string(rulesBefore) {
		t.Fatalf("push rules changed across restart:\nbefore %s\nafter  %s", rulesBefore, rulesAfter)
	}
	rule, err := alice2.GetPushRule(ctx, "global", pushrules.OverrideRule, "persisted")
	if err != nil || rule.RuleID != "persisted" {
		t.Fatalf("custom rule after restart = %+v, %v", rule, err)
	}
	login(t, s2, "alice", testPassword, "", "")
	// New filters do not reuse IDs handed out before the restart.
	fr = do(t, "POST", v3(s2, "user", string(alice2.UserID), "filter"), alice2.AccessToken, map[string]any{}).want(t, 200, "")
	if fr.Body["filter_id"] == filterID {
		t.Fatalf("filter ID %s reused after restart", filterID)
	}
	// The old server is gone.
	if _, err := http.Get(s.URL() + "/_matrix/client/versions"); err == nil && s.URL() != s2.URL() {
		t.Fatalf("old server still answers after restart")
	}
}

// TestConcurrentRegistrations: parallel registrations and logins all succeed.
func TestConcurrentRegistrations(t *testing.T) {
	s := start(t, nil)
	ctx := ctxT(t)
	const n = 20
	type result struct {
		user, regToken, loginToken, loginDevice string
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprintf("user%02d", i)
			cli, err := mautrix.NewClient(s.URL(), "", "")
			if err != nil {
				t.Errorf("client: %v", err)
				return
			}
			reg, err := cli.RegisterDummy(ctx, &mautrix.ReqRegister[any]{Username: user, Password: "pw-" + user})
			if err != nil {
				t.Errorf("register %s: %v", user, err)
				return
			}
			lr, err := cli.Login(ctx, &mautrix.ReqLogin{
				Type:       mautrix.AuthTypePassword,
				Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: user},
				Password:   "pw-" + user,
			})
			if err != nil {
				t.Errorf("login %s: %v", user, err)
				return
			}
			results[i] = result{user, reg.AccessToken, lr.AccessToken, string(lr.DeviceID)}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	seen := map[string]bool{}
	for _, r := range results {
		for _, tok := range []string{r.regToken, r.loginToken} {
			if seen[tok] {
				t.Fatalf("token handed out twice")
			}
			seen[tok] = true
		}
		wantTokenValid(t, s, r.regToken, s.UserID(r.user), "")
		wantTokenValid(t, s, r.loginToken, s.UserID(r.user), r.loginDevice)
		if devs := deviceIDs(t, withToken(t, s, s.UserID(r.user), r.loginToken)); len(devs) != 2 {
			t.Fatalf("%s has devices %v, want 2", r.user, devs)
		}
	}
}
