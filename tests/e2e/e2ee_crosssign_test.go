package e2e

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

func uploadCrossSigning(t *testing.T, d *e2eeDevice, body map[string]any) *resp {
	t.Helper()
	return do(t, "POST", v3(d.s, "keys", "device_signing", "upload"), d.token, body)
}

func uploadSigs(t *testing.T, d *e2eeDevice, body map[string]any) map[string]any {
	t.Helper()
	r := do(t, "POST", v3(d.s, "keys", "signatures", "upload"), d.token, body).want(t, 200, "")
	f, ok := r.Body["failures"].(map[string]any)
	if !ok {
		t.Fatalf("signatures upload without failures object: %s", r.Raw)
	}
	return f
}

func TestE2EECrossSigningUpload(t *testing.T) {
	s := start(t, nil)
	alice := e2eeUser(t, s, "alice", "ALICE1")
	bob := e2eeUser(t, s, "bob", "BOB1")
	for _, d := range []*e2eeDevice{alice, bob} {
		d.upload(t, map[string]any{"device_keys": d.deviceKeys(t)}).want(t, 200, "")
	}
	room := mkRoom(t, alice.cli, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{id.UserID(bob.userID)}})
	join(t, bob.cli, room)
	bobSince := bob.sync(t, "", 0)["next_batch"].(string)

	// The first keys need no UIA (MSC3967), nor does the same upload again.
	ak := newCrossKeys(t)
	first := ak.body(t, alice)
	uploadCrossSigning(t, alice, first).want(t, 200, "")
	uploadCrossSigning(t, alice, first).want(t, 200, "")
	body := bob.sync(t, bobSince, 5000)
	if ch, _ := deviceLists(body); !slices.Contains(ch, alice.userID) {
		t.Fatalf("bob not told about alice's cross-signing keys: %v", ch)
	}
	bobSince = body["next_batch"].(string)
	r := bob.query(t, alice.userID)
	if jget(r.Body, "master_keys", alice.userID, "keys", "ed25519:"+ak.master.pub) != ak.master.pub ||
		jget(r.Body, "self_signing_keys", alice.userID, "keys", "ed25519:"+ak.ssk.pub) != ak.ssk.pub {
		t.Fatalf("bob's view of alice's cross-signing keys: %s", r.Raw)
	}
	if jget(r.Body, "user_signing_keys", alice.userID) != nil {
		t.Fatalf("alice's user-signing key shown to bob: %s", r.Raw)
	}
	if own := alice.query(t, alice.userID); jget(own.Body, "user_signing_keys", alice.userID, "keys", "ed25519:"+ak.usk.pub) != ak.usk.pub {
		t.Fatalf("alice does not see her own user-signing key: %s", own.Raw)
	}

	// Replacing keys needs the password (mautrix drives the UIA).
	ak2 := newCrossKeys(t)
	second := ak2.body(t, alice)
	r = uploadCrossSigning(t, alice, second)
	sess := wantUIA(t, r, [][]string{{"m.login.password"}})
	r = uploadCrossSigning(t, alice, map[string]any{"master_key": second["master_key"], "auth": passwordAuth(sess, alice.userID, "wrong")})
	r.want(t, http.StatusUnauthorized, "M_FORBIDDEN")
	var req mautrix.UploadCrossSigningKeysReq[any]
	raw, _ := json.Marshal(second)
	if err := json.Unmarshal(raw, &req); err != nil {
		t.Fatalf("decoding keys: %v", err)
	}
	called := false
	err := alice.cli.UploadCrossSigningKeys(ctxT(t), &req, func(ui *mautrix.RespUserInteractive) any {
		called = true
		return passwordAuth(ui.Session, alice.userID, testPassword)
	})
	if err != nil || !called {
		t.Fatalf("UploadCrossSigningKeys with UIA: err %v, callback called %v", err, called)
	}
	if got := jget(bob.query(t, alice.userID).Body, "master_keys", alice.userID, "keys", "ed25519:"+ak2.master.pub); got != ak2.master.pub {
		t.Fatalf("master key not replaced: %v", got)
	}
	// Re-sending the current keys needs no UIA; an old one does.
	uploadCrossSigning(t, alice, second).want(t, 200, "")
	wantUIA(t, uploadCrossSigning(t, alice, first), [][]string{{"m.login.password"}})
}

func TestE2EECrossSigningBadKeysRefused(t *testing.T) {
	s := start(t, nil)
	bob := e2eeUser(t, s, "bob", "BOB1")
	bob.upload(t, map[string]any{"device_keys": bob.deviceKeys(t)}).want(t, 200, "")
	bk := newCrossKeys(t)
	good := bk.body(t, bob)
	noKeys := func(t *testing.T) {
		t.Helper()
		r := bob.query(t, bob.userID)
		for _, f := range []string{"master_keys", "self_signing_keys", "user_signing_keys"} {
			if jget(r.Body, f, bob.userID) != nil {
				t.Fatalf("%s stored: %s", f, r.Raw)
			}
		}
	}
	key := func(usage, user string, k edKey) map[string]any {
		return map[string]any{"user_id": user, "usage": []string{usage}, "keys": map[string]string{"ed25519:" + k.pub: k.pub}}
	}
	other := newEdKey(t)
	cases := []struct {
		name, code string
		body       map[string]any
	}{
		{"self-signing key signed by another key", "M_INVALID_SIGNATURE", map[string]any{
			"master_key":       good["master_key"],
			"self_signing_key": signObj(t, key("self_signing", bob.userID, bk.ssk), bob.userID, "ed25519:"+bk.master.pub, other),
		}},
		{"user-signing key unsigned", "M_INVALID_SIGNATURE", map[string]any{
			"master_key": good["master_key"], "user_signing_key": key("user_signing", bob.userID, bk.usk),
		}},
		{"self-signing key without any master key", "M_MISSING_PARAM", map[string]any{"self_signing_key": good["self_signing_key"]}},
		{"master key with the wrong usage", "M_INVALID_PARAM", map[string]any{"master_key": key("self_signing", bob.userID, bk.master)}},
		{"master key of another user", "M_INVALID_PARAM", map[string]any{"master_key": key("master", "@alice:hs.test", bk.master)}},
		{"key ID not matching the key", "M_INVALID_PARAM", map[string]any{"master_key": map[string]any{
			"user_id": bob.userID, "usage": []string{"master"}, "keys": map[string]string{"ed25519:abc": bk.master.pub}}}},
		{"two keys in one", "M_INVALID_PARAM", map[string]any{"master_key": map[string]any{
			"user_id": bob.userID, "usage": []string{"master"},
			"keys": map[string]string{"ed25519:" + bk.master.pub: bk.master.pub, "ed25519:" + other.pub: other.pub}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			uploadCrossSigning(t, bob, c.body).want(t, http.StatusBadRequest, c.code)
			noKeys(t)
		})
	}
	// A public key equal to a device ID is refused.
	clash := e2eeLogin(t, s, "bob", bk.master.pub)
	_ = clash
	uploadCrossSigning(t, bob, good).want(t, http.StatusForbidden, "M_FORBIDDEN")
	noKeys(t)
}

func TestE2EECrossSigningSignatures(t *testing.T) {
	s := start(t, nil)
	alice := e2eeUser(t, s, "alice", "ALICE1")
	bob := e2eeUser(t, s, "bob", "BOB1")
	carol := e2eeUser(t, s, "carol", "CAROL1")
	for _, d := range []*e2eeDevice{alice, bob, carol} {
		d.upload(t, map[string]any{"device_keys": d.deviceKeys(t)}).want(t, 200, "")
	}
	room := mkRoom(t, alice.cli, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{id.UserID(bob.userID)}})
	join(t, bob.cli, room)
	ak, bk := newCrossKeys(t), newCrossKeys(t)
	uploadCrossSigning(t, alice, ak.body(t, alice)).want(t, 200, "")
	uploadCrossSigning(t, bob, bk.body(t, bob)).want(t, 200, "")
	aliceSince := alice.sync(t, "", 0)["next_batch"].(string)
	bobSince := bob.sync(t, "", 0)["next_batch"].(string)

	sskID, uskID := "ed25519:"+ak.ssk.pub, "ed25519:"+ak.usk.pub
	aliceMaster := jget(alice.query(t, alice.userID).Body, "master_keys", alice.userID)
	bobMaster := jget(alice.query(t, bob.userID).Body, "master_keys", bob.userID)
	failures := uploadSigs(t, alice, map[string]any{
		alice.userID: map[string]any{
			// Her device, by her self-signing key.
			"ALICE1": signObj(t, alice.deviceKeys(t), alice.userID, sskID, ak.ssk),
			// Her master key, by her device.
			ak.master.pub: signObj(t, aliceMaster, alice.userID, alice.keyID(), alice.key),
		},
		// bob's master key, by her user-signing key.
		bob.userID: map[string]any{bk.master.pub: signObj(t, bobMaster, alice.userID, uskID, ak.usk)},
	})
	if len(failures) != 0 {
		t.Fatalf("failures = %v", failures)
	}

	// bob sees alice's device signed by her self-signing key.
	r := bob.query(t, alice.userID)
	dev := jget(r.Body, "device_keys", alice.userID, "ALICE1")
	if !verifyObj(dev, alice.userID, sskID, ak.ssk.pub) || !verifyObj(dev, alice.userID, alice.keyID(), alice.key.pub) {
		t.Fatalf("alice's device lacks valid device and self-signing signatures: %s", r.Raw)
	}
	if !verifyObj(jget(r.Body, "master_keys", alice.userID), alice.userID, alice.keyID(), alice.key.pub) {
		t.Fatalf("alice's master key lacks her device's signature: %s", r.Raw)
	}
	// alice sees her signature of bob's master key; carol does not.
	if m := jget(alice.query(t, bob.userID).Body, "master_keys", bob.userID); !verifyObj(m, alice.userID, uskID, ak.usk.pub) {
		t.Fatalf("alice's signature of bob's master key not served to her: %v", m)
	}
	if sig := jget(carol.query(t, bob.userID).Body, "master_keys", bob.userID, "signatures", alice.userID); sig != nil {
		t.Fatalf("carol sees alice's signature of bob: %v", sig)
	}
	// bob hears that alice's devices changed; alice hears about bob (her
	// signature of his key), carol about nobody.
	if ch, _ := deviceLists(bob.sync(t, bobSince, 5000)); !slices.Contains(ch, alice.userID) {
		t.Fatalf("bob's changed = %v", ch)
	}
	if ch, _ := deviceLists(alice.sync(t, aliceSince, 5000)); !slices.Contains(ch, bob.userID) {
		t.Fatalf("alice's changed = %v, want bob", ch)
	}

	// Bad signatures are reported per key, and nothing of them is stored.
	wrong := newEdKey(t)
	tampered := alice.deviceKeys(t)
	tampered["algorithms"] = []string{"x"}
	failures = uploadSigs(t, alice, map[string]any{
		alice.userID: map[string]any{
			"ALICE1":      signObj(t, alice.deviceKeys(t), alice.userID, sskID, wrong),
			"NOPE":        signObj(t, alice.deviceKeys(t), alice.userID, sskID, ak.ssk),
			"UNKNOWN":     map[string]any{"signatures": map[string]any{}},
			ak.master.pub: signObj(t, aliceMaster, alice.userID, alice.keyID(), wrong),
		},
		carol.userID: map[string]any{"somekey": map[string]any{"user_id": carol.userID}},
		bob.userID: map[string]any{
			"BOB1":        signObj(t, bob.deviceKeys(t), alice.userID, uskID, ak.usk),
			bk.master.pub: signObj(t, bobMaster, alice.userID, uskID, wrong),
		},
	})
	want := map[string]map[string]string{
		alice.userID: {"ALICE1": "M_INVALID_SIGNATURE", "NOPE": "M_NOT_FOUND", "UNKNOWN": "M_INVALID_SIGNATURE", ak.master.pub: "M_INVALID_SIGNATURE"},
		carol.userID: {"somekey": "M_NOT_FOUND"},
		bob.userID:   {"BOB1": "M_INVALID_PARAM", bk.master.pub: "M_INVALID_SIGNATURE"},
	}
	for user, keys := range want {
		for k, code := range keys {
			if got := jget(failures, user, k, "errcode"); got != code {
				t.Errorf("failure for %s %s = %v, want %s (all: %v)", user, k, got, code, failures)
			}
		}
	}
	failures = uploadSigs(t, alice, map[string]any{alice.userID: map[string]any{
		"ALICE1": signObj(t, tampered, alice.userID, sskID, ak.ssk),
	}})
	if jget(failures, alice.userID, "ALICE1", "errcode") != "M_INVALID_PARAM" {
		t.Fatalf("signature over different content: %v", failures)
	}
	r = bob.query(t, alice.userID)
	if dev := jget(r.Body, "device_keys", alice.userID, "ALICE1"); !verifyObj(dev, alice.userID, sskID, ak.ssk.pub) {
		t.Fatalf("the good device signature was replaced by a bad one: %v", dev)
	}
	if m := jget(r.Body, "master_keys", alice.userID); !verifyObj(m, alice.userID, alice.keyID(), alice.key.pub) {
		t.Fatalf("the good master key signature was replaced by a bad one: %v", m)
	}
	if m := jget(alice.query(t, bob.userID).Body, "master_keys", bob.userID); !verifyObj(m, alice.userID, uskID, ak.usk.pub) {
		t.Fatalf("the good signature of bob's master key was replaced by a bad one: %v", m)
	}

	// A new self-signing key makes the old signatures worthless: they go.
	ak2 := ak
	ak2.ssk = newEdKey(t)
	body := ak2.body(t, alice)
	delete(body, "master_key")
	delete(body, "user_signing_key")
	sess := wantUIA(t, uploadCrossSigning(t, alice, body), [][]string{{"m.login.password"}})
	body["auth"] = passwordAuth(sess, alice.userID, testPassword)
	uploadCrossSigning(t, alice, body).want(t, 200, "")
	if sig := jget(bob.query(t, alice.userID).Body, "device_keys", alice.userID, "ALICE1", "signatures", alice.userID, sskID); sig != nil {
		t.Fatalf("signature by the replaced self-signing key still served: %v", sig)
	}
}
