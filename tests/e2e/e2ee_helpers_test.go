package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"maunium.net/go/mautrix"

	"matrixhs/tests/testserver"
)

// edKey is an ed25519 key pair as clients hold them (public key in
// unpadded base64).
type edKey struct {
	priv ed25519.PrivateKey
	pub  string
}

func newEdKey(t *testing.T) edKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("generating key: %v", err)
	}
	return edKey{priv: priv, pub: base64.RawStdEncoding.EncodeToString(pub)}
}

// signObj signs obj (a JSON-marshallable object) as signer with keyID and
// returns the signed object.
func signObj(t *testing.T, obj any, signer, keyID string, k edKey) map[string]any {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	signed, err := gomatrixserverlib.SignJSON(signer, gomatrixserverlib.KeyID(keyID), k.priv, raw)
	if err != nil {
		t.Fatalf("signing: %v", err)
	}
	var out map[string]any
	if err := json.Unmarshal(signed, &out); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	return out
}

// verifyObj checks a signature on a JSON object.
func verifyObj(obj any, signer, keyID, pub string) bool {
	raw, _ := json.Marshal(obj)
	key, err := base64.RawStdEncoding.DecodeString(pub)
	if err != nil {
		return false
	}
	return gomatrixserverlib.VerifyJSON(signer, gomatrixserverlib.KeyID(keyID), ed25519.PublicKey(key), raw) == nil
}

// e2eeDevice is a logged-in device with an ed25519 identity key.
type e2eeDevice struct {
	s        *testserver.Server
	cli      *mautrix.Client
	userID   string
	deviceID string
	token    string
	key      edKey
	curve    string
}

// e2eeLogin logs in a new device of an existing user.
func e2eeLogin(t *testing.T, s *testserver.Server, localpart, deviceID string) *e2eeDevice {
	t.Helper()
	cli := login(t, s, localpart, testPassword, deviceID, "Device "+deviceID)
	return &e2eeDevice{s: s, cli: cli, userID: string(cli.UserID), deviceID: string(cli.DeviceID), token: cli.AccessToken,
		key: newEdKey(t), curve: newEdKey(t).pub}
}

// e2eeUser creates a user and logs in its first device.
func e2eeUser(t *testing.T, s *testserver.Server, localpart, deviceID string) *e2eeDevice {
	t.Helper()
	createUser(t, s, localpart, testPassword)
	return e2eeLogin(t, s, localpart, deviceID)
}

func (d *e2eeDevice) keyID() string { return "ed25519:" + d.deviceID }

// deviceKeys returns the device's signed device_keys object.
func (d *e2eeDevice) deviceKeys(t *testing.T) map[string]any {
	t.Helper()
	return signObj(t, map[string]any{
		"user_id":    d.userID,
		"device_id":  d.deviceID,
		"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys":       map[string]string{"curve25519:" + d.deviceID: d.curve, d.keyID(): d.key.pub},
	}, d.userID, d.keyID(), d.key)
}

// otk returns a signed curve25519 key object (a fallback key if fallback).
func (d *e2eeDevice) otk(t *testing.T, n int, fallback bool) map[string]any {
	t.Helper()
	obj := map[string]any{"key": fmt.Sprintf("otk-%s-%d-%s", d.deviceID, n, newEdKey(t).pub[:8])}
	if fallback {
		obj["fallback"] = true
	}
	return signObj(t, obj, d.userID, d.keyID(), d.key)
}

// otks returns n signed one-time keys named signed_curve25519:AAAA<i>.
func (d *e2eeDevice) otks(t *testing.T, from, n int) map[string]any {
	t.Helper()
	out := map[string]any{}
	for i := from; i < from+n; i++ {
		out[fmt.Sprintf("signed_curve25519:AAAA%03d", i)] = d.otk(t, i, false)
	}
	return out
}

// upload posts /keys/upload and returns the response.
func (d *e2eeDevice) upload(t *testing.T, body map[string]any) *resp {
	t.Helper()
	return do(t, "POST", v3(d.s, "keys", "upload"), d.token, body)
}

// query posts /keys/query for the given users (all devices).
func (d *e2eeDevice) query(t *testing.T, users ...string) *resp {
	t.Helper()
	req := map[string][]string{}
	for _, u := range users {
		req[u] = []string{}
	}
	return do(t, "POST", v3(d.s, "keys", "query"), d.token, map[string]any{"device_keys": req}).want(t, 200, "")
}

// sync runs /sync with a since token ("" initial) and timeout; it returns
// the decoded body.
func (d *e2eeDevice) sync(t *testing.T, since string, timeoutMS int) map[string]any {
	t.Helper()
	u := v3(d.s, "sync") + fmt.Sprintf("?timeout=%d", timeoutMS)
	if since != "" {
		u += "&since=" + since
	}
	return do(t, "GET", u, d.token, nil).want(t, 200, "").Body
}

// crossKeys is a user's three cross-signing key pairs.
type crossKeys struct{ master, ssk, usk edKey }

func newCrossKeys(t *testing.T) crossKeys {
	return crossKeys{master: newEdKey(t), ssk: newEdKey(t), usk: newEdKey(t)}
}

// upload bodies for /keys/device_signing/upload: the master key signed by
// the device, the other two by the master key.
func (c crossKeys) body(t *testing.T, d *e2eeDevice) map[string]any {
	t.Helper()
	key := func(usage string, k edKey) map[string]any {
		return map[string]any{"user_id": d.userID, "usage": []string{usage}, "keys": map[string]string{"ed25519:" + k.pub: k.pub}}
	}
	return map[string]any{
		"master_key":       signObj(t, key("master", c.master), d.userID, d.keyID(), d.key),
		"self_signing_key": signObj(t, key("self_signing", c.ssk), d.userID, "ed25519:"+c.master.pub, c.master),
		"user_signing_key": signObj(t, key("user_signing", c.usk), d.userID, "ed25519:"+c.master.pub, c.master),
	}
}

// jget walks a decoded JSON document by keys.
func jget(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// jstrs converts a decoded JSON array to strings.
func jstrs(v any) []string {
	list, _ := v.([]any)
	out := []string{}
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
