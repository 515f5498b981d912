package e2e

import (
	"crypto/ed25519"
	"encoding/base64"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
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
