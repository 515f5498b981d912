package e2e

import (
	"encoding/json"
	"net/http"
	"testing"
)

// /versions advertises the unstable features clients switch on, each one
// something the server does.
func TestVersionsUnstableFeatures(t *testing.T) {
	s := start(t, nil)
	r := do(t, "GET", s.URL()+"/_matrix/client/versions", "", nil).want(t, 200, "")
	features, err := json.Marshal(r.Body["unstable_features"])
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, features, map[string]any{
		"org.matrix.e2e_cross_signing":  true,
		"org.matrix.simplified_msc3575": true,
		"org.matrix.msc4140":            true,
		"org.matrix.msc2285.stable":     true,
		"org.matrix.msc3440.stable":     true,
		"org.matrix.msc3771":            true,
		"org.matrix.msc3773":            true,
		"org.matrix.msc3827.stable":     true,
		"org.matrix.msc3916.stable":     true,
		"org.matrix.msc3266":            true,
	})
}

// matrix-js-sdk's uploadDeviceSigningKeys (and older crypto's signature
// upload) use the unstable prefix: the server answers there as under v3.
func TestUnstableKeyUploadAliases(t *testing.T) {
	s := start(t, nil)
	alice := e2eeUser(t, s, "alice", "ALICE1")
	alice.upload(t, map[string]any{"device_keys": alice.deviceKeys(t)}).want(t, 200, "")
	unstable := func(path ...string) string {
		return cs(s, "unstable", path...)
	}
	// js-sdk first sends {} to learn the flows; with nothing to change it is a no-op.
	do(t, "POST", unstable("keys", "device_signing", "upload"), alice.token, map[string]any{}).want(t, 200, "")
	do(t, "POST", unstable("keys", "device_signing", "upload"), alice.token, newCrossKeys(t).body(t, alice)).want(t, 200, "")
	// Replacing the master key asks for the password, on the same path.
	r := do(t, "POST", unstable("keys", "device_signing", "upload"), alice.token, newCrossKeys(t).body(t, alice))
	sess := wantUIA(t, r, passwordFlows)
	body := newCrossKeys(t).body(t, alice)
	body["auth"] = passwordAuth(sess, alice.userID, testPassword)
	do(t, "POST", unstable("keys", "device_signing", "upload"), alice.token, body).want(t, 200, "")

	r = do(t, "POST", unstable("keys", "signatures", "upload"), alice.token, map[string]any{}).want(t, 200, "")
	if _, ok := r.Body["failures"].(map[string]any); !ok {
		t.Fatalf("signatures upload without failures: %s", r.Raw)
	}
	do(t, "POST", unstable("keys", "device_signing", "upload"), "", map[string]any{}).want(t, http.StatusUnauthorized, "M_MISSING_TOKEN")
}
