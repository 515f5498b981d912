package fede2ee

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"matrixhs/tests/fedtest"
)

// The inbound endpoints answer other servers about local users: device
// keys with display names and public cross-signing keys (/user/keys/query,
// /user/devices), one-time keys claimed once then the fallback key
// (/user/keys/claim).
func TestInboundKeyEndpoints(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	alice := newUser(t, hs1, "alice", "ALICE1")
	alice.uploadKeys(1)
	alice.must("POST", "/keys/upload", map[string]any{"fallback_keys": map[string]any{
		"signed_curve25519:FB": signObj(t, map[string]any{"key": "fallback", "fallback": true}, alice.ID, alice.keyID(), alice.key),
	}})
	master, ssk := newEdKey(t), newEdKey(t)
	alice.must("POST", "/keys/device_signing/upload", crossSigningBody(t, alice, master, ssk, newEdKey(t)))

	r := fed(t, hs2, "POST", "hs1", "/_matrix/federation/v1/user/keys/query",
		map[string]any{"device_keys": map[string]any{alice.ID: []string{}, "@nobody:hs1": []string{}}})
	r.want(t, http.StatusOK, "")
	if fedtest.Get(r.Body, "device_keys", alice.ID, "ALICE1", "keys", alice.keyID()) != alice.key.pub ||
		fedtest.Get(r.Body, "device_keys", alice.ID, "ALICE1", "unsigned", "device_display_name") != "Device ALICE1" {
		t.Fatalf("/user/keys/query: %s", r.Raw)
	}
	if fedtest.Get(r.Body, "master_keys", alice.ID, "keys", "ed25519:"+master.pub) != master.pub ||
		fedtest.Get(r.Body, "self_signing_keys", alice.ID, "keys", "ed25519:"+ssk.pub) != ssk.pub {
		t.Fatalf("/user/keys/query cross-signing keys: %s", r.Raw)
	}
	if fedtest.Get(r.Body, "user_signing_keys") != nil || len(asMap(fedtest.Get(r.Body, "device_keys", "@nobody:hs1"))) != 0 {
		t.Fatalf("/user/keys/query: user-signing keys or an unknown user's devices: %s", r.Raw)
	}

	// A device without keys yet is listed without them (as Synapse).
	alice.login("ALICE2")
	r = fed(t, hs2, "GET", "hs1", "/_matrix/federation/v1/user/devices/"+url.PathEscape(alice.ID), nil)
	r.want(t, http.StatusOK, "")
	devices, _ := r.Body["devices"].([]any)
	if r.Body["user_id"] != alice.ID || len(devices) != 2 || fedtest.Get(devices[0], "device_id") != "ALICE1" ||
		fedtest.Get(devices[0], "device_display_name") != "Device ALICE1" || fedtest.Get(devices[0], "keys", "keys", alice.keyID()) != alice.key.pub {
		t.Fatalf("/user/devices: %s", r.Raw)
	}
	if fedtest.Get(devices[1], "device_id") != "ALICE2" || fedtest.Get(devices[1], "keys") != nil {
		t.Fatalf("/user/devices, a device without keys: %s", r.Raw)
	}
	if id, ok := r.Body["stream_id"].(float64); !ok || id <= 0 {
		t.Fatalf("/user/devices stream_id: %s", r.Raw)
	}
	if fedtest.Get(r.Body, "master_key", "keys", "ed25519:"+master.pub) != master.pub ||
		fedtest.Get(r.Body, "self_signing_key", "keys", "ed25519:"+ssk.pub) != ssk.pub || r.Body["user_signing_key"] != nil {
		t.Fatalf("/user/devices cross-signing keys: %s", r.Raw)
	}

	claim := map[string]any{"one_time_keys": map[string]any{alice.ID: map[string]string{"ALICE1": "signed_curve25519"}}}
	for i, want := range []string{"signed_curve25519:K0", "signed_curve25519:FB", "signed_curve25519:FB"} {
		r = fed(t, hs2, "POST", "hs1", "/_matrix/federation/v1/user/keys/claim", claim)
		r.want(t, http.StatusOK, "")
		if fedtest.Get(r.Body, "one_time_keys", alice.ID, "ALICE1", want) == nil {
			t.Fatalf("claim %d: want %s: %s", i, want, r.Raw)
		}
	}
}

// Requests about users of other servers, malformed bodies and IDs, and
// unauthenticated requests are refused.
func TestInboundKeyEndpointsRefuse(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	alice := newUser(t, hs1, "alice", "ALICE1")
	alice.uploadKeys(1)
	const (
		query   = "/_matrix/federation/v1/user/keys/query"
		claim   = "/_matrix/federation/v1/user/keys/claim"
		devices = "/_matrix/federation/v1/user/devices/"
	)
	cases := []struct {
		name, method, path string
		body               any
		status             int
		errcode            string
	}{
		{"query: a user of another server", "POST", query, map[string]any{"device_keys": map[string]any{alice.ID: []string{}, "@bob:hs2": []string{}}}, 400, "M_INVALID_PARAM"},
		{"query: not a user ID", "POST", query, map[string]any{"device_keys": map[string]any{"alice": []string{}}}, 400, "M_INVALID_PARAM"},
		{"query: devices not a list", "POST", query, map[string]any{"device_keys": map[string]any{alice.ID: "ALICE1"}}, 400, "M_BAD_JSON"},
		{"query: device_keys not an object", "POST", query, map[string]any{"device_keys": []string{alice.ID}}, 400, "M_BAD_JSON"},
		{"claim: a user of another server", "POST", claim, map[string]any{"one_time_keys": map[string]any{"@bob:hs2": map[string]string{"D": "signed_curve25519"}}}, 400, "M_INVALID_PARAM"},
		{"claim: without one_time_keys", "POST", claim, map[string]any{}, 400, "M_MISSING_PARAM"},
		{"claim: algorithm not a string", "POST", claim, map[string]any{"one_time_keys": map[string]any{alice.ID: map[string]any{"ALICE1": 1}}}, 400, "M_BAD_JSON"},
		{"devices: a user of another server", "GET", devices + url.PathEscape("@bob:hs2"), nil, 400, "M_INVALID_PARAM"},
		{"devices: not a user ID", "GET", devices + "alice", nil, 400, "M_INVALID_PARAM"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fed(t, hs2, c.method, "hs1", c.path, c.body).want(t, c.status, c.errcode)
		})
	}
	// The claim above did not take the key.
	r := fed(t, hs2, "POST", "hs1", claim, map[string]any{"one_time_keys": map[string]any{alice.ID: map[string]string{"ALICE1": "signed_curve25519"}}})
	if fedtest.Get(r.Body, "one_time_keys", alice.ID, "ALICE1", "signed_curve25519:K0") == nil {
		t.Fatalf("the one-time key is gone: %s", r.Raw)
	}

	// Bodies that are not JSON objects.
	for _, path := range []string{query, claim} {
		fed(t, hs2, "POST", "hs1", path, []string{}).want(t, http.StatusBadRequest, "M_BAD_JSON")
		req := hs2.SignedRequest(t, "POST", "hs1", path, map[string]any{})
		req.Body, req.ContentLength, req.GetBody = io.NopCloser(strings.NewReader("{not json")), 9, nil
		status, raw := hs2.Send(t, req)
		if status != http.StatusBadRequest || !strings.Contains(string(raw), "M_NOT_JSON") {
			t.Fatalf("%s with a body that is not JSON: %d %s", path, status, raw)
		}
	}

	// Unauthenticated, and signed with a key that is not hs2's.
	for _, c := range []struct{ method, path, body string }{
		{"POST", query, `{"device_keys":{}}`}, {"POST", claim, `{"one_time_keys":{}}`}, {"GET", devices + url.PathEscape(alice.ID), ""},
	} {
		rawFed(t, hs1, c.method, c.path, c.body, "").want(t, http.StatusUnauthorized, "M_UNAUTHORIZED")
		forged := fedtest.SignedAs(t, "hs2", hs2.Federation.Own.KeyID, newEdKey(t).priv, c.method, "hs1", c.path, rawOrNil(c.body))
		status, raw := hs2.Send(t, forged)
		if status != http.StatusUnauthorized {
			t.Fatalf("%s %s signed with another key: %d %s", c.method, c.path, status, raw)
		}
	}
}

func rawOrNil(body string) any {
	if body == "" {
		return nil
	}
	return json.RawMessage(body)
}

// crossSigningBody is a /keys/device_signing/upload body for u: the master
// key signed by u's device, the others by the master key.
func crossSigningBody(t testing.TB, u *user, master, ssk, usk edKey) map[string]any {
	t.Helper()
	key := func(usage string, k edKey) map[string]any {
		return map[string]any{"user_id": u.ID, "usage": []string{usage}, "keys": map[string]string{"ed25519:" + k.pub: k.pub}}
	}
	return map[string]any{
		"master_key":       signObj(t, key("master", master), u.ID, u.keyID(), u.key),
		"self_signing_key": signObj(t, key("self_signing", ssk), u.ID, "ed25519:"+master.pub, master),
		"user_signing_key": signObj(t, key("user_signing", usk), u.ID, "ed25519:"+master.pub, master),
	}
}
