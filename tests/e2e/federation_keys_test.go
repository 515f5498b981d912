package e2e

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"

	"matrixhs/tests/testserver"
)

// Other servers fetch our signing key from /_matrix/key/v2/server; the
// answer must be signed by the key it publishes.
func TestServerKeysAreSelfSigned(t *testing.T) {
	s := start(t, nil)
	for _, path := range []string{"/_matrix/key/v2/server", "/_matrix/key/v2/server/ed25519:whatever"} {
		r := do(t, "GET", s.URL()+path, "", nil).want(t, 200, "")
		if r.Body["server_name"] != "hs.test" {
			t.Fatalf("server_name = %v", r.Body["server_name"])
		}
		if until, _ := r.Body["valid_until_ts"].(float64); int64(until) < time.Now().UnixMilli() {
			t.Fatalf("valid_until_ts in the past: %v", until)
		}
		keys, _ := r.Body["verify_keys"].(map[string]any)
		if len(keys) != 1 {
			t.Fatalf("verify_keys = %v", keys)
		}
		for keyID, k := range keys {
			pub, err := base64.RawStdEncoding.DecodeString(k.(map[string]any)["key"].(string))
			if err != nil || len(pub) != ed25519.PublicKeySize {
				t.Fatalf("key %s: %v", keyID, err)
			}
			if err := gomatrixserverlib.VerifyJSON("hs.test", gomatrixserverlib.KeyID(keyID), ed25519.PublicKey(pub), r.Raw); err != nil {
				t.Fatalf("self-signature does not verify: %v", err)
			}
			tampered := []byte(string(r.Raw))
			for i := range tampered {
				if tampered[i] == 'h' { // hs.test -> xs.test in server_name
					tampered[i] = 'x'
					break
				}
			}
			if gomatrixserverlib.VerifyJSON("hs.test", gomatrixserverlib.KeyID(keyID), ed25519.PublicKey(pub), tampered) == nil {
				t.Fatal("a tampered answer verifies")
			}
		}
	}
	if r := do(t, "GET", s.URL()+"/_matrix/federation/v1/version", "", nil).want(t, 200, ""); r.Body["server"].(map[string]any)["name"] != "matrixhs" {
		t.Fatalf("version = %s", r.Raw)
	}
}

// After the signing key changes, the previous key is still published, as
// an old key with the time it stopped being used, so that what it signed
// keeps verifying elsewhere.
func TestServerKeysKeepOldKeys(t *testing.T) {
	s := start(t, nil)
	before := do(t, "GET", s.URL()+"/_matrix/key/v2/server", "", nil).want(t, 200, "")
	oldKeys := before.Body["verify_keys"].(map[string]any)
	if len(before.Body["old_verify_keys"].(map[string]any)) != 0 {
		t.Fatalf("old keys before any change: %s", before.Raw)
	}
	oldID := s.SigningKey.ID
	s.Stop()
	if err := os.Remove(s.Config.Server.SigningKeyPath); err != nil {
		t.Fatal(err)
	}
	changed := time.Now().UnixMilli()
	s = testserver.StartIn(t, s.DataDir, s.Env)
	if s.SigningKey.ID == oldID {
		t.Skip("the new random key ID happens to equal the old one")
	}
	after := do(t, "GET", s.URL()+"/_matrix/key/v2/server", "", nil).want(t, 200, "")
	if _, ok := after.Body["verify_keys"].(map[string]any)[s.SigningKey.ID]; !ok || len(after.Body["verify_keys"].(map[string]any)) != 1 {
		t.Fatalf("verify_keys = %v", after.Body["verify_keys"])
	}
	old, _ := after.Body["old_verify_keys"].(map[string]any)[oldID].(map[string]any)
	if old == nil || old["key"] != oldKeys[oldID].(map[string]any)["key"] {
		t.Fatalf("old_verify_keys = %v", after.Body["old_verify_keys"])
	}
	if exp, _ := old["expired_ts"].(float64); int64(exp) < changed-60_000 || int64(exp) > time.Now().UnixMilli() {
		t.Fatalf("expired_ts = %v", old["expired_ts"])
	}
	pub, _ := base64.RawStdEncoding.DecodeString(after.Body["verify_keys"].(map[string]any)[s.SigningKey.ID].(map[string]any)["key"].(string))
	if err := gomatrixserverlib.VerifyJSON("hs.test", gomatrixserverlib.KeyID(s.SigningKey.ID), ed25519.PublicKey(pub), after.Raw); err != nil {
		t.Fatalf("not signed by the new key: %v", err)
	}
	// Another restart with the same key changes nothing.
	s = s.Restart()
	again := do(t, "GET", s.URL()+"/_matrix/key/v2/server", "", nil).want(t, 200, "")
	if fmt.Sprint(again.Body["old_verify_keys"]) != fmt.Sprint(after.Body["old_verify_keys"]) {
		t.Fatalf("old keys changed on a plain restart: %v", again.Body["old_verify_keys"])
	}
}

// The notary endpoints answer for this server itself, refuse bad queries,
// and leave out servers they cannot reach.
func TestKeyQueryEndpoints(t *testing.T) {
	s := start(t, nil)
	check := func(r *resp) {
		t.Helper()
		list, _ := r.Body["server_keys"].([]any)
		if len(list) != 1 || list[0].(map[string]any)["server_name"] != "hs.test" {
			t.Fatalf("server_keys = %s", r.Raw)
		}
		raw, _ := json.Marshal(list[0])
		keys := list[0].(map[string]any)["verify_keys"].(map[string]any)
		pub, _ := base64.RawStdEncoding.DecodeString(keys[s.SigningKey.ID].(map[string]any)["key"].(string))
		if err := gomatrixserverlib.VerifyJSON("hs.test", gomatrixserverlib.KeyID(s.SigningKey.ID), ed25519.PublicKey(pub), raw); err != nil {
			t.Fatalf("own keys not signed: %v", err)
		}
	}
	check(do(t, "GET", s.URL()+"/_matrix/key/v2/query/hs.test", "", nil).want(t, 200, ""))
	check(do(t, "GET", s.URL()+"/_matrix/key/v2/query/hs.test/"+s.SigningKey.ID+"?minimum_valid_until_ts=1", "", nil).want(t, 200, ""))
	check(do(t, "POST", s.URL()+"/_matrix/key/v2/query", "", map[string]any{"server_keys": map[string]any{"hs.test": map[string]any{}}}).want(t, 200, ""))

	// Unreachable (a loopback address, which federation refuses) and
	// invalid names are left out.
	r := do(t, "POST", s.URL()+"/_matrix/key/v2/query", "", `{"server_keys": {"localhost:1": {}, "bad name": {}}}`).want(t, 200, "")
	if list, ok := r.Body["server_keys"].([]any); !ok || len(list) != 0 {
		t.Fatalf("unreachable servers: %s", r.Raw)
	}
	do(t, "GET", s.URL()+"/_matrix/key/v2/query/localhost:1", "", nil).want(t, 200, "")
	if r := do(t, "POST", s.URL()+"/_matrix/key/v2/query", "", `{"server_keys": {}}`).want(t, 200, ""); string(r.Raw) != `{"server_keys":[]}` {
		t.Fatalf("no servers: %s", r.Raw)
	}

	do(t, "GET", s.URL()+"/_matrix/key/v2/query", "", nil).want(t, 405, "M_UNRECOGNIZED")
	do(t, "PUT", s.URL()+"/_matrix/key/v2/query", "", `{}`).want(t, 405, "M_UNRECOGNIZED")
	do(t, "POST", s.URL()+"/_matrix/key/v2/query", "", `{"server_keys":`).want(t, 400, "M_NOT_JSON")
	do(t, "POST", s.URL()+"/_matrix/key/v2/query", "", `{}`).want(t, 400, "M_BAD_JSON")
	do(t, "POST", s.URL()+"/_matrix/key/v2/query", "", `{"server_keys": []}`).want(t, 400, "M_BAD_JSON")
	do(t, "POST", s.URL()+"/_matrix/key/v2/query", "", `{"server_keys": {"hs.test": {"ed25519:x": {"minimum_valid_until_ts": "soon"}}}}`).want(t, 400, "M_BAD_JSON")
	do(t, "GET", s.URL()+"/_matrix/key/v2/query/bad%20name", "", nil).want(t, 400, "M_INVALID_PARAM")
	do(t, "GET", s.URL()+"/_matrix/key/v2/query/hs.test?minimum_valid_until_ts=soon", "", nil).want(t, 400, "M_INVALID_PARAM")
	// Unknown endpoints and methods under the federation prefixes (as
	// Complement's TestUnknownEndpoints checks).
	do(t, "GET", s.URL()+"/_matrix/federation/unknown", "", nil).want(t, 404, "M_UNRECOGNIZED")
	do(t, "GET", s.URL()+"/_matrix/federation/v1/unknown", "", nil).want(t, 404, "M_UNRECOGNIZED")
	do(t, "PUT", s.URL()+"/_matrix/federation/v1/version", "", `{}`).want(t, 405, "M_UNRECOGNIZED")
	do(t, "GET", s.URL()+"/_matrix/key/unknown", "", nil).want(t, 404, "M_UNRECOGNIZED")
	do(t, "GET", s.URL()+"/_matrix/key/v2/unknown", "", nil).want(t, 404, "M_UNRECOGNIZED")
}
