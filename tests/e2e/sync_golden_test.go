package e2e

// Golden tests of the JSON shape of /sync and sliding sync: a small
// deterministic scenario (three users, four rooms, messages, typing, a
// receipt, presence, account data, keys and a to-device message), whose
// responses are normalised (IDs, timestamps and tokens replaced by stable
// names) and compared with testdata/sync_golden/*.json. A change of shape
// (a key appearing or vanishing, an empty list turning into null) shows up
// in review as a diff of those files. After an intended change:
//
//	go test -tags goolm ./tests/e2e -run TestSyncGolden -update-golden

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"matrixhs/tests/testserver"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite the sync golden files from this run")

// goldenUser is a logged-in user with a fixed device ID.
type goldenUser struct {
	id, device, token string
}

func goldenLogin(t *testing.T, s *testserver.Server, name, device string) goldenUser {
	t.Helper()
	createUser(t, s, name, testPassword)
	r := do(t, "POST", v3(s, "login"), "", map[string]any{
		"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": name},
		"password": testPassword, "device_id": device,
	}).want(t, 200, "")
	return goldenUser{id: r.Body["user_id"].(string), device: device, token: r.Body["access_token"].(string)}
}

// goldenRoom creates a room and returns its ID.
func goldenRoom(t *testing.T, s *testserver.Server, u goldenUser, body map[string]any) string {
	t.Helper()
	return do(t, "POST", v3(s, "createRoom"), u.token, body).want(t, 200, "").Body["room_id"].(string)
}

// goldenSend sends a text message with a fixed transaction ID.
func goldenSend(t *testing.T, s *testserver.Server, u goldenUser, roomID, txn, body string) {
	t.Helper()
	do(t, "PUT", v3(s, "rooms", roomID, "send", "m.room.message", txn), u.token,
		map[string]any{"msgtype": "m.text", "body": body}).want(t, 200, "")
}

func TestSyncGolden(t *testing.T) {
	s := start(t, nil)
	alice := goldenLogin(t, s, "alice", "ALICEDEV")
	bob := goldenLogin(t, s, "bob", "BOBDEV")
	carol := goldenLogin(t, s, "carol", "CAROLDEV")
	ok := func(r *resp) { r.want(t, 200, "") }

	// Rooms: one bob is in with alice, one he is invited to, one he knocks
	// on, and one he will leave.
	golden := goldenRoom(t, s, alice, map[string]any{"preset": "private_chat", "name": "Golden", "topic": "Shapes",
		"invite": []string{bob.id}})
	ok(do(t, "POST", v3(s, "join", golden), bob.token, map[string]any{}))
	invite := goldenRoom(t, s, alice, map[string]any{"preset": "private_chat", "name": "Invite", "invite": []string{bob.id}})
	knock := goldenRoom(t, s, carol, map[string]any{"preset": "private_chat", "name": "Knock",
		"initial_state": []any{map[string]any{"type": "m.room.join_rules", "state_key": "", "content": map[string]any{"join_rule": "knock"}}}})
	ok(do(t, "POST", v3(s, "knock", knock), bob.token, map[string]any{"reason": "let me in"}))
	leaving := goldenRoom(t, s, carol, map[string]any{"preset": "public_chat", "name": "Leaving"})
	ok(do(t, "POST", v3(s, "join", leaving), bob.token, map[string]any{}))
	rooms := map[string]string{golden: "golden", invite: "invite", knock: "knock", leaving: "leaving"}
	creators := map[string]goldenUser{golden: alice, invite: alice, knock: carol, leaving: carol}

	// Messages, a receipt, typing, presence, account data, keys.
	goldenSend(t, s, alice, golden, "t1", "hello bob")
	goldenSend(t, s, bob, golden, "t2", "hello alice")
	goldenSend(t, s, alice, golden, "t3", "how are you?")
	goldenSend(t, s, carol, leaving, "t4", "welcome")
	lastGolden := do(t, "GET", v3(s, "rooms", golden, "messages")+"?dir=b&limit=1", bob.token, nil).want(t, 200, "").
		Body["chunk"].([]any)[0].(map[string]any)["event_id"].(string)
	ok(do(t, "POST", v3(s, "rooms", golden, "receipt", "m.read", lastGolden), bob.token, map[string]any{}))
	ok(do(t, "PUT", v3(s, "rooms", golden, "typing", alice.id), alice.token, map[string]any{"typing": true, "timeout": 120000}))
	ok(do(t, "PUT", v3(s, "presence", alice.id, "status"), alice.token, map[string]any{"presence": "online", "status_msg": "around"}))
	ok(do(t, "PUT", v3(s, "user", bob.id, "account_data", "m.direct"), bob.token, map[string]any{alice.id: []string{golden}}))
	ok(do(t, "PUT", v3(s, "user", bob.id, "rooms", golden, "tags", "m.favourite"), bob.token, map[string]any{"order": 0.5}))
	ok(do(t, "POST", v3(s, "keys", "upload"), bob.token, map[string]any{
		"one_time_keys": map[string]any{"curve25519:AAAA": "otk-1", "curve25519:AAAB": "otk-2"},
		"fallback_keys": map[string]any{"curve25519:FFFF": "fallback-1"},
	}))

	syncURL := func(since string) string {
		q := url.Values{"timeout": {"0"}}
		if since != "" {
			q.Set("since", since)
		}
		return v3(s, "sync") + "?" + q.Encode()
	}
	initial := do(t, "GET", syncURL(""), bob.token, nil).want(t, 200, "")
	ssURL := s.URL() + "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync?timeout=0"
	ssReq := map[string]any{
		"conn_id": "golden",
		"lists": map[string]any{"all": map[string]any{
			"ranges": [][]int{{0, 9}}, "timeline_limit": 2,
			"required_state": [][]string{{"m.room.name", ""}, {"m.room.create", ""}, {"m.room.member", "$LAZY"}},
		}},
		"extensions": map[string]any{
			"to_device": map[string]any{"enabled": true}, "e2ee": map[string]any{"enabled": true},
			"account_data": map[string]any{"enabled": true}, "receipts": map[string]any{"enabled": true},
			"typing": map[string]any{"enabled": true},
		},
	}
	ssInitial := do(t, "POST", ssURL, bob.token, ssReq).want(t, 200, "")

	// What changes before the incremental syncs: a message and a stopped
	// typing notification in Golden, bob leaves Leaving, alice goes away,
	// uploads device keys (a device-list change) and sends bob a to-device
	// message.
	goldenSend(t, s, alice, golden, "t5", "still there?")
	ok(do(t, "PUT", v3(s, "rooms", golden, "typing", alice.id), alice.token, map[string]any{"typing": false}))
	ok(do(t, "POST", v3(s, "rooms", leaving, "leave"), bob.token, map[string]any{}))
	ok(do(t, "PUT", v3(s, "presence", alice.id, "status"), alice.token, map[string]any{"presence": "unavailable", "status_msg": "away"}))
	ok(do(t, "POST", v3(s, "keys", "upload"), alice.token, map[string]any{"device_keys": map[string]any{
		"user_id": alice.id, "device_id": alice.device, "algorithms": []string{"m.olm.v1.curve25519-aes-sha2"},
		"keys": map[string]string{"curve25519:" + alice.device: "alice-curve"}, "signatures": map[string]any{},
	}}))
	ok(do(t, "PUT", v3(s, "sendToDevice", "m.golden", "td1"), alice.token, map[string]any{
		"messages": map[string]any{bob.id: map[string]any{bob.device: map[string]any{"secret": "to bob"}}},
	}))

	incremental := do(t, "GET", syncURL(initial.Body["next_batch"].(string)), bob.token, nil).want(t, 200, "")
	ssReq["pos"] = ssInitial.Body["pos"]
	ssIncremental := do(t, "POST", ssURL+"&pos="+url.QueryEscape(ssInitial.Body["pos"].(string)), bob.token,
		map[string]any{"conn_id": "golden"}).want(t, 200, "")

	n := newGoldenNames(t, s, rooms, creators)
	for name, r := range map[string]*resp{
		"initial_sync": initial, "incremental_sync": incremental,
		"sliding_sync_initial": ssInitial, "sliding_sync_incremental": ssIncremental,
	} {
		checkGolden(t, name, n.normalise(t, r.Raw))
	}
}

// goldenNames replaces the run's random IDs by stable names: rooms by the
// scenario's name for them, events by room and place in the room's order.
type goldenNames struct {
	ids map[string]string
}

var (
	tokenKeys     = map[string]bool{"next_batch": true, "prev_batch": true, "pos": true, "since": true}
	timeKeys      = map[string]bool{"origin_server_ts": true, "age": true, "ts": true, "last_active_ago": true, "bump_stamp": true}
	randomIDShape = regexp.MustCompile(`^[$!][A-Za-z0-9_\-+/=.:]+$`)
)

func newGoldenNames(t *testing.T, s *testserver.Server, rooms map[string]string, creators map[string]goldenUser) *goldenNames {
	t.Helper()
	n := &goldenNames{ids: map[string]string{}}
	for roomID, name := range rooms {
		n.ids[roomID] = "!" + name
		r := do(t, "GET", v3(s, "rooms", roomID, "messages")+"?dir=f&limit=1000", creators[roomID].token, nil).want(t, 200, "")
		for i, ev := range r.Body["chunk"].([]any) {
			n.ids[ev.(map[string]any)["event_id"].(string)] = fmt.Sprintf("$%s-%d", name, i+1)
		}
	}
	return n
}

// normalise decodes a response and rewrites what differs between runs.
func (n *goldenNames) normalise(t *testing.T, raw []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("response is not JSON: %v", err)
	}
	return n.walk(t, "", v)
}

func (n *goldenNames) walk(t *testing.T, key string, v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			if k == "content" && x["type"] == "m.push_rules" {
				out[k] = "<push rules>" // their own tests pin them
				continue
			}
			out[n.id(t, k)] = n.walk(t, k, val)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = n.walk(t, key, val)
		}
		return out
	case string:
		if tokenKeys[key] {
			return "<token>"
		}
		return n.id(t, x)
	case float64:
		if timeKeys[key] {
			return 0
		}
		return x
	}
	return v
}

// id names a room or event ID; other strings stay. An ID the scenario does
// not know fails the test (the golden file would not be stable).
func (n *goldenNames) id(t *testing.T, s string) string {
	if name, ok := n.ids[s]; ok {
		return name
	}
	if randomIDShape.MatchString(s) && strings.Contains(s, ":") == (s[0] == '!') && len(s) > 20 {
		t.Errorf("unnamed ID %q in a sync response", s)
	}
	return s
}

// checkGolden compares a normalised response with its golden file (or
// rewrites the file under -update-golden).
func checkGolden(t *testing.T, name string, got any) {
	t.Helper()
	path := filepath.Join("testdata", "sync_golden", name+".json")
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(got); err != nil {
		t.Fatal(err)
	}
	out := buf.Bytes()
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, out, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update-golden to create it)", err)
	}
	if string(want) != string(out) {
		t.Errorf("%s differs from %s:\n%s", name, path, lineDiff(string(want), string(out)))
	}
}

// lineDiff lists the lines only in want (-) or only in got (+), enough to
// see which keys changed.
func lineDiff(want, got string) string {
	count := func(s string) map[string]int {
		m := map[string]int{}
		for _, l := range strings.Split(s, "\n") {
			m[l]++
		}
		return m
	}
	w, g := count(want), count(got)
	var out []string
	for l, c := range w {
		if g[l] < c {
			out = append(out, "- "+l)
		}
	}
	for l, c := range g {
		if w[l] < c {
			out = append(out, "+ "+l)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}
