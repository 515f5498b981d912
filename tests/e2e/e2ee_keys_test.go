package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

func TestE2EEKeysUploadQueryClaim(t *testing.T) {
	s := start(t, nil)
	alice := e2eeUser(t, s, "alice", "ALICE1")
	bob := e2eeUser(t, s, "bob", "BOB1")

	r := alice.upload(t, map[string]any{
		"device_keys":   alice.deviceKeys(t),
		"one_time_keys": alice.otks(t, 0, 5),
		"fallback_keys": map[string]any{"signed_curve25519:FB1": alice.otk(t, 99, true)},
	}).want(t, 200, "")
	if n := jget(r.Body, "one_time_key_counts", "signed_curve25519"); n != 5.0 {
		t.Fatalf("one_time_key_counts = %s", r.Raw)
	}
	// An upload with nothing in it reports the counts; signed_curve25519 is
	// always listed.
	if r := bob.upload(t, map[string]any{}).want(t, 200, ""); jget(r.Body, "one_time_key_counts", "signed_curve25519") != 0.0 {
		t.Fatalf("empty upload counts = %s", r.Raw)
	}

	// mautrix reads what bob sees of alice.
	qr, err := bob.cli.QueryKeys(ctxT(t), &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{id.UserID(alice.userID): {}}})
	if err != nil {
		t.Fatalf("QueryKeys: %v", err)
	}
	dk, ok := qr.DeviceKeys[id.UserID(alice.userID)]["ALICE1"]
	if !ok || string(dk.Keys.GetEd25519("ALICE1")) != alice.key.pub || dk.Unsigned["device_display_name"] != "Device ALICE1" {
		t.Fatalf("alice's device as bob sees it: %+v", qr.DeviceKeys)
	}
	// The object is served as signed: the signature still verifies.
	raw := bob.query(t, alice.userID)
	obj := jget(raw.Body, "device_keys", alice.userID, "ALICE1")
	if !verifyObj(obj, alice.userID, alice.keyID(), alice.key.pub) {
		t.Fatalf("served device keys do not verify: %s", raw.Raw)
	}
	if f, ok := raw.Body["failures"].(map[string]any); !ok || len(f) != 0 {
		t.Fatalf("failures = %v, want {}", raw.Body["failures"])
	}
	// Named devices: unknown ones are left out; users without keys have an empty map.
	r = do(t, "POST", v3(s, "keys", "query"), bob.token, map[string]any{"device_keys": map[string]any{
		alice.userID: []string{"ALICE1", "NOPE"}, bob.userID: []string{}, "@x:remote.example": []string{},
	}}).want(t, 200, "")
	if devs := jget(r.Body, "device_keys", alice.userID).(map[string]any); len(devs) != 1 {
		t.Fatalf("named query = %s", r.Raw)
	}
	if devs, ok := jget(r.Body, "device_keys", bob.userID).(map[string]any); !ok || len(devs) != 0 {
		t.Fatalf("user without keys = %s", r.Raw)
	}
	if jget(r.Body, "failures", "remote.example") == nil {
		t.Fatalf("remote server not in failures: %s", r.Raw)
	}

	// Claims hand out the oldest key first, through mautrix.
	cr, err := bob.cli.ClaimKeys(ctxT(t), &mautrix.ReqClaimKeys{OneTimeKeys: mautrix.OneTimeKeysRequest{
		id.UserID(alice.userID): {"ALICE1": id.KeyAlgorithmSignedCurve25519},
	}})
	if err != nil {
		t.Fatalf("ClaimKeys: %v", err)
	}
	claimed := cr.OneTimeKeys[id.UserID(alice.userID)]["ALICE1"]
	if len(claimed) != 1 {
		t.Fatalf("claimed %+v", cr.OneTimeKeys)
	}
	for kid, k := range claimed {
		if kid != "signed_curve25519:AAAA000" || !verifyObj(k.RawData, alice.userID, alice.keyID(), alice.key.pub) {
			t.Fatalf("claimed %s %s: want the oldest key, still verifiable", kid, k.RawData)
		}
	}
	body := alice.sync(t, "", 0)
	if n := jget(body, "device_one_time_keys_count", "signed_curve25519"); n != 4.0 {
		t.Fatalf("alice's sync count after one claim = %v", n)
	}
	if fb := jstrs(body["device_unused_fallback_key_types"]); !reflect.DeepEqual(fb, []string{"signed_curve25519"}) {
		t.Fatalf("unused fallback types = %v", fb)
	}
	// More keys later, without device_keys; the same device keys again are fine.
	r = alice.upload(t, map[string]any{"device_keys": alice.deviceKeys(t), "one_time_keys": alice.otks(t, 10, 3)}).want(t, 200, "")
	if n := jget(r.Body, "one_time_key_counts", "signed_curve25519"); n != 7.0 {
		t.Fatalf("counts after more keys = %s", r.Raw)
	}
}

func TestE2EEKeysConcurrentClaims(t *testing.T) {
	s := start(t, nil)
	alice := e2eeUser(t, s, "alice", "ALICE1")
	alice.upload(t, map[string]any{
		"device_keys":   alice.deviceKeys(t),
		"one_time_keys": alice.otks(t, 0, 10),
		"fallback_keys": map[string]any{"signed_curve25519:FALLBACK": alice.otk(t, 99, true)},
	}).want(t, 200, "")
	claimers := make([]*e2eeDevice, 4)
	for i := range claimers {
		claimers[i] = e2eeUser(t, s, fmt.Sprintf("claimer%d", i), "")
	}
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := claimers[i%len(claimers)]
			r := do(t, "POST", v3(s, "keys", "claim"), c.token, map[string]any{
				"one_time_keys": map[string]any{alice.userID: map[string]string{"ALICE1": "signed_curve25519"}},
			})
			if r.Status != 200 {
				t.Errorf("claim: %d %s", r.Status, r.Raw)
				return
			}
			keys, _ := jget(r.Body, "one_time_keys", alice.userID, "ALICE1").(map[string]any)
			mu.Lock()
			defer mu.Unlock()
			for kid := range keys {
				got[kid]++
			}
			if len(keys) != 1 {
				t.Errorf("claim returned %d keys: %s", len(keys), r.Raw)
			}
		}()
	}
	wg.Wait()
	if len(got) != 11 || got["signed_curve25519:FALLBACK"] != 10 {
		t.Fatalf("claimed %v: want each of 10 one-time keys once and the fallback key 10 times", got)
	}
	for kid, n := range got {
		if kid != "signed_curve25519:FALLBACK" && n != 1 {
			t.Fatalf("one-time key %s handed out %d times", kid, n)
		}
	}
	body := alice.sync(t, "", 0)
	if n := jget(body, "device_one_time_keys_count", "signed_curve25519"); n != 0.0 {
		t.Fatalf("count after claims = %v", n)
	}
	if fb := jstrs(body["device_unused_fallback_key_types"]); len(fb) != 0 {
		t.Fatalf("fallback still unused after being handed out: %v", fb)
	}
}

func TestE2EEKeysBadInputRefused(t *testing.T) {
	s := start(t, nil)
	alice := e2eeUser(t, s, "alice", "ALICE1")
	other := e2eeLogin(t, s, "alice", "ALICE2")
	bob := e2eeUser(t, s, "bob", "BOB1")
	nothingStored := func(t *testing.T) {
		t.Helper()
		r := bob.query(t, alice.userID)
		if devs, _ := jget(r.Body, "device_keys", alice.userID).(map[string]any); len(devs) != 0 {
			t.Fatalf("keys were stored: %s", r.Raw)
		}
		if n := jget(alice.sync(t, "", 0), "device_one_time_keys_count", "signed_curve25519"); n != 0.0 {
			t.Fatalf("one-time keys were stored: %v", n)
		}
	}
	cases := []struct {
		name string
		body func() map[string]any
	}{
		// Invalid device keys are M_BAD_JSON (the cases up to "key IDs of
		// another device"), other invalid keys M_INVALID_PARAM.
		{"signed by another key", func() map[string]any {
			dk := alice.deviceKeys(t)
			wrong := *alice
			wrong.key = newEdKey(t)
			dk["signatures"] = wrong.deviceKeys(t)["signatures"]
			return map[string]any{"device_keys": dk}
		}},
		{"tampered after signing", func() map[string]any {
			dk := alice.deviceKeys(t)
			dk["algorithms"] = []string{"m.olm.v1.curve25519-aes-sha2"}
			return map[string]any{"device_keys": dk}
		}},
		{"without signatures", func() map[string]any {
			dk := alice.deviceKeys(t)
			delete(dk, "signatures")
			return map[string]any{"device_keys": dk}
		}},
		{"without algorithms", func() map[string]any {
			dk := alice.deviceKeys(t)
			delete(dk, "algorithms")
			return map[string]any{"device_keys": dk}
		}},
		{"without keys", func() map[string]any {
			dk := alice.deviceKeys(t)
			delete(dk, "keys")
			return map[string]any{"device_keys": dk}
		}},
		{"without user and device", func() map[string]any {
			return map[string]any{"device_keys": map[string]any{"algorithms": []string{}, "keys": map[string]string{"ed25519:ALICE1": alice.key.pub}, "signatures": map[string]any{}}}
		}},
		{"algorithms not a list", func() map[string]any {
			dk := alice.deviceKeys(t)
			dk["algorithms"] = "m.megolm.v1.aes-sha2"
			return map[string]any{"device_keys": dk}
		}},
		{"a key that is not a string", func() map[string]any {
			dk := alice.deviceKeys(t)
			dk["keys"] = map[string]any{"ed25519:ALICE1": 5}
			return map[string]any{"device_keys": dk}
		}},
		{"signatures not an object of objects", func() map[string]any {
			dk := alice.deviceKeys(t)
			dk["signatures"] = map[string]any{alice.userID: "sig"}
			return map[string]any{"device_keys": dk}
		}},
		{"device_id not a string", func() map[string]any {
			dk := alice.deviceKeys(t)
			dk["device_id"] = 1
			return map[string]any{"device_keys": dk}
		}},
		{"device keys not an object", func() map[string]any { return map[string]any{"device_keys": "keys"} }},
		{"for another device", func() map[string]any { return map[string]any{"device_keys": other.deviceKeys(t)} }},
		{"for another user", func() map[string]any {
			forged := *bob
			forged.key = alice.key
			return map[string]any{"device_keys": forged.deviceKeys(t)}
		}},
		{"key IDs of another device", func() map[string]any {
			return map[string]any{"device_keys": signObj(t, map[string]any{
				"user_id": alice.userID, "device_id": alice.deviceID, "algorithms": []string{},
				"keys": map[string]string{"ed25519:ALICE1": alice.key.pub, "curve25519:ALICE2": "x"},
			}, alice.userID, alice.keyID(), alice.key)}
		}},
		{"one-time key ID without colon", func() map[string]any {
			return map[string]any{"device_keys": alice.deviceKeys(t), "one_time_keys": map[string]any{"signed_curve25519": alice.otk(t, 1, false)}}
		}},
		{"one-time key ID without algorithm", func() map[string]any {
			return map[string]any{"device_keys": alice.deviceKeys(t), "one_time_keys": map[string]any{":AAAA": alice.otk(t, 1, false)}}
		}},
		{"one-time key ID without key ID", func() map[string]any {
			return map[string]any{"device_keys": alice.deviceKeys(t), "one_time_keys": map[string]any{"signed_curve25519:": alice.otk(t, 1, false)}}
		}},
		{"one-time key signed by another key", func() map[string]any {
			wrong := *alice
			wrong.key = newEdKey(t)
			keys := alice.otks(t, 0, 3)
			keys["signed_curve25519:BAD"] = wrong.otk(t, 9, false)
			return map[string]any{"device_keys": alice.deviceKeys(t), "one_time_keys": keys}
		}},
		{"signed key as a bare string", func() map[string]any {
			return map[string]any{"device_keys": alice.deviceKeys(t), "one_time_keys": map[string]any{"signed_curve25519:A": "abc"}}
		}},
		{"two fallback keys of one algorithm", func() map[string]any {
			return map[string]any{"device_keys": alice.deviceKeys(t), "fallback_keys": map[string]any{
				"signed_curve25519:F1": alice.otk(t, 1, true), "signed_curve25519:F2": alice.otk(t, 2, true)}}
		}},
	}
	badJSON := true
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			code := "M_INVALID_PARAM"
			if badJSON {
				code = "M_BAD_JSON"
			}
			alice.upload(t, c.body()).want(t, http.StatusBadRequest, code)
			nothingStored(t)
		})
		if c.name == "key IDs of another device" {
			badJSON = false
		}
	}
	// Signed one-time keys need device keys to check them against.
	alice.upload(t, map[string]any{"one_time_keys": alice.otks(t, 0, 2)}).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	nothingStored(t)

	// Oversized bodies are refused with 413 before anything is parsed.
	big := alice.otks(t, 0, 1)
	big["curve25519:PAD"] = strings.Repeat("A", int(s.Config.Server.MaxRequestBodyBytes))
	alice.upload(t, map[string]any{"device_keys": alice.deviceKeys(t), "one_time_keys": big}).want(t, http.StatusRequestEntityTooLarge, "M_TOO_LARGE")
	nothingStored(t)

	// A one-time key ID reused with other content: the whole upload is refused.
	firstKeys := alice.otks(t, 0, 2)
	alice.upload(t, map[string]any{"device_keys": alice.deviceKeys(t), "one_time_keys": firstKeys}).want(t, 200, "")
	// The identical keys again are accepted and not counted twice.
	if r := alice.upload(t, map[string]any{"one_time_keys": firstKeys}).want(t, 200, ""); jget(r.Body, "one_time_key_counts", "signed_curve25519") != 2.0 {
		t.Fatalf("identical re-upload counts = %s", r.Raw)
	}
	dup := alice.otks(t, 5, 2)
	dup["signed_curve25519:AAAA001"] = alice.otk(t, 42, false)
	alice.upload(t, map[string]any{"one_time_keys": dup}).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	if n := jget(alice.sync(t, "", 0), "device_one_time_keys_count", "signed_curve25519"); n != 2.0 {
		t.Fatalf("count after refused duplicate = %v, want 2", n)
	}
	// Claims and queries need a token, and claim bodies their field.
	do(t, "POST", v3(s, "keys", "claim"), "", map[string]any{"one_time_keys": map[string]any{}}).want(t, http.StatusUnauthorized, "M_MISSING_TOKEN")
	do(t, "POST", v3(s, "keys", "claim"), bob.token, map[string]any{}).want(t, http.StatusBadRequest, "M_MISSING_PARAM")
	do(t, "POST", v3(s, "keys", "query"), bob.token, map[string]any{}).want(t, http.StatusBadRequest, "M_MISSING_PARAM")
}

// keyChanges calls GET /keys/changes.
func keyChanges(t *testing.T, d *e2eeDevice, from, to string) (changed, left []string) {
	t.Helper()
	q := url.Values{"from": {from}}
	if to != "" {
		q.Set("to", to)
	}
	r := do(t, "GET", v3(d.s, "keys", "changes")+"?"+q.Encode(), d.token, nil).want(t, 200, "")
	return jstrs(r.Body["changed"]), jstrs(r.Body["left"])
}

func deviceLists(body map[string]any) (changed, left []string) {
	return jstrs(jget(body, "device_lists", "changed")), jstrs(jget(body, "device_lists", "left"))
}

func TestE2EEDeviceListTracking(t *testing.T) {
	s := start(t, nil)
	alice := e2eeUser(t, s, "alice", "ALICE1")
	bob := e2eeUser(t, s, "bob", "BOB1")
	carol := e2eeUser(t, s, "carol", "CAROL1")
	room := mkRoom(t, alice.cli, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{id.UserID(bob.userID)}})
	join(t, bob.cli, room)
	first := bob.sync(t, "", 0)
	if ch, left := deviceLists(first); len(ch)+len(left) != 0 {
		t.Fatalf("initial sync device_lists = %v %v, want empty", ch, left)
	}
	since := first["next_batch"].(string)

	// alice uploads keys while bob long-polls: the sync wakes with alice.
	done := make(chan map[string]any, 1)
	go func() { done <- bob.sync(t, since, 20000) }()
	time.Sleep(200 * time.Millisecond)
	alice.upload(t, map[string]any{"device_keys": alice.deviceKeys(t)}).want(t, 200, "")
	var body map[string]any
	select {
	case body = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("long-polling sync did not wake on a key upload")
	}
	if ch, _ := deviceLists(body); !slices.Contains(ch, alice.userID) {
		t.Fatalf("bob's device_lists.changed = %v, want alice", ch)
	}
	if ch, _ := keyChanges(t, bob, since, body["next_batch"].(string)); !reflect.DeepEqual(ch, []string{alice.userID}) {
		t.Fatalf("/keys/changes = %v, want [alice]", ch)
	}
	since = body["next_batch"].(string)

	// carol shares no room with bob: her keys are none of his business.
	carol.upload(t, map[string]any{"device_keys": carol.deviceKeys(t)}).want(t, 200, "")
	body = bob.sync(t, since, 0)
	if ch, _ := deviceLists(body); slices.Contains(ch, carol.userID) {
		t.Fatalf("bob told about carol without a shared room: %v", ch)
	}
	since = body["next_batch"].(string)

	// A new device of alice, then its deletion: both are changes.
	alice2 := e2eeLogin(t, s, "alice", "ALICE2")
	alice2.upload(t, map[string]any{"device_keys": alice2.deviceKeys(t), "one_time_keys": alice2.otks(t, 0, 2)}).want(t, 200, "")
	body = bob.sync(t, since, 5000)
	if ch, _ := deviceLists(body); !slices.Contains(ch, alice.userID) {
		t.Fatalf("new device not reported: %v", ch)
	}
	since = body["next_batch"].(string)
	if devs := jget(bob.query(t, alice.userID).Body, "device_keys", alice.userID).(map[string]any); len(devs) != 2 {
		t.Fatalf("alice has %d devices with keys, want 2", len(devs))
	}
	r := do(t, "DELETE", v3(s, "devices", "ALICE2"), alice.token, map[string]any{})
	sess := wantUIA(t, r, [][]string{{"m.login.password"}})
	do(t, "DELETE", v3(s, "devices", "ALICE2"), alice.token, map[string]any{"auth": passwordAuth(sess, alice.userID, testPassword)}).want(t, 200, "")
	body = bob.sync(t, since, 5000)
	if ch, _ := deviceLists(body); !slices.Contains(ch, alice.userID) {
		t.Fatalf("deleted device not reported: %v", ch)
	}
	since = body["next_batch"].(string)
	if devs := jget(bob.query(t, alice.userID).Body, "device_keys", alice.userID).(map[string]any); len(devs) != 1 || devs["ALICE2"] != nil {
		t.Fatalf("deleted device's keys still served: %v", devs)
	}
	cr := do(t, "POST", v3(s, "keys", "claim"), bob.token, map[string]any{
		"one_time_keys": map[string]any{alice.userID: map[string]string{"ALICE2": "signed_curve25519"}},
	}).want(t, 200, "")
	if k := jget(cr.Body, "one_time_keys", alice.userID); k != nil {
		t.Fatalf("deleted device's one-time keys still claimable: %s", cr.Raw)
	}

	// carol joins: bob must fetch her keys; she leaves: bob may forget them.
	invite := do(t, "POST", v3(s, "rooms", string(room), "invite"), alice.token, map[string]any{"user_id": carol.userID})
	invite.want(t, 200, "")
	join(t, carol.cli, room)
	body = bob.sync(t, since, 5000)
	if ch, _ := deviceLists(body); !slices.Contains(ch, carol.userID) {
		t.Fatalf("joined member not in changed: %v", ch)
	}
	mid := since
	since = body["next_batch"].(string)
	// A profile change (join -> join) is no reason to refetch keys.
	if err := alice.cli.SetDisplayName(ctxT(t), "Alice Renamed"); err != nil {
		t.Fatalf("SetDisplayName: %v", err)
	}
	body = bob.sync(t, since, 0)
	if ch, left := deviceLists(body); len(ch)+len(left) != 0 {
		t.Fatalf("after a display name change: changed %v left %v, want nothing", ch, left)
	}
	since = body["next_batch"].(string)
	do(t, "POST", v3(s, "rooms", string(room), "leave"), carol.token, map[string]any{}).want(t, 200, "")
	body = bob.sync(t, since, 5000)
	if ch, left := deviceLists(body); !reflect.DeepEqual(left, []string{carol.userID}) || slices.Contains(ch, carol.userID) {
		t.Fatalf("after carol left: changed %v left %v, want left [carol]", ch, left)
	}
	if _, left := keyChanges(t, bob, mid, ""); !reflect.DeepEqual(left, []string{carol.userID}) {
		t.Fatalf("/keys/changes left = %v", left)
	}
	// A token that is not a token is refused.
	do(t, "GET", v3(s, "keys", "changes")+"?from=bogus", bob.token, nil).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	do(t, "GET", v3(s, "keys", "changes"), bob.token, nil).want(t, http.StatusBadRequest, "M_MISSING_PARAM")
}

// Device keys without the device's self-signature are stored and served as
// uploaded, as on Synapse (Complement's device list tests upload such keys);
// uploading new ones replaces them and is a device list change.
func TestE2EEKeysUnsignedDeviceKeysAccepted(t *testing.T) {
	s := start(t, nil)
	alice := e2eeUser(t, s, "alice", "ALICE1")
	bob := e2eeUser(t, s, "bob", "BOB1")
	room := mkRoom(t, alice.cli, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{id.UserID(bob.userID)}})
	join(t, bob.cli, room)
	since := bob.sync(t, "", 0)["next_batch"].(string)

	unsigned := func(ed, curve string) map[string]any {
		return map[string]any{
			"user_id": alice.userID, "device_id": alice.deviceID,
			"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
			"keys":       map[string]string{"ed25519:ALICE1": ed, "curve25519:ALICE1": curve},
			"signatures": map[string]any{},
		}
	}
	for i, keys := range []map[string]any{
		unsigned(newEdKey(t).pub, newEdKey(t).pub),
		unsigned(newEdKey(t).pub, newEdKey(t).pub),
		// An ed25519 "key" that is no key at all is stored too.
		unsigned("not-a-key", "also-not-a-key"),
	} {
		alice.upload(t, map[string]any{"device_keys": keys}).want(t, 200, "")
		got := jget(bob.query(t, alice.userID).Body, "device_keys", alice.userID, "ALICE1")
		for _, f := range []string{"keys", "algorithms", "signatures"} {
			if !reflect.DeepEqual(jget(got, f), jsonRoundTrip(t, keys[f])) {
				t.Fatalf("upload %d: served %s = %v, want %v", i, f, jget(got, f), keys[f])
			}
		}
		body := bob.sync(t, since, 3000)
		if ch, _ := deviceLists(body); !slices.Contains(ch, alice.userID) {
			t.Fatalf("upload %d: bob's device_lists.changed = %v, want alice", i, ch)
		}
		since = body["next_batch"].(string)
	}
	// Signed one-time keys cannot be checked against a key that is no key.
	alice.upload(t, map[string]any{"one_time_keys": alice.otks(t, 0, 1)}).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
}

// jsonRoundTrip returns v as encoding/json decodes it into an any.
func jsonRoundTrip(t *testing.T, v any) any {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
