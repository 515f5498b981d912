package e2e

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto/backup"
	"maunium.net/go/mautrix/id"
)

const backupAlg = "m.megolm_backup.v1.curve25519-aes-sha2"

// ct is the (fake) ciphertext a tag stands for: valid unpadded base64, as
// mautrix decodes it.
func ct(tag string) string { return base64.RawStdEncoding.EncodeToString([]byte(tag)) }

// sessionKey is a KeyBackupData object.
func sessionKey(first, forwarded int, verified bool, tag string) map[string]any {
	return map[string]any{
		"first_message_index": first, "forwarded_count": forwarded, "is_verified": verified,
		"session_data": map[string]any{
			"ephemeral":  base64.RawStdEncoding.EncodeToString(make([]byte, 32)),
			"ciphertext": ct(tag), "mac": ct("mac"),
		},
	}
}

func backupURL(d *e2eeDevice, version string, segments ...string) string {
	return v3(d.s, append([]string{"room_keys", "keys"}, segments...)...) + "?" + url.Values{"version": {version}}.Encode()
}

func TestE2EEBackupVersions(t *testing.T) {
	s := start(t, nil)
	alice := e2eeUser(t, s, "alice", "ALICE1")
	bob := e2eeUser(t, s, "bob", "BOB1")
	do(t, "GET", v3(s, "room_keys", "version"), alice.token, nil).want(t, http.StatusNotFound, "M_NOT_FOUND")

	// Created with mautrix, read back raw.
	created, err := alice.cli.CreateKeyBackupVersion(ctxT(t), &mautrix.ReqRoomKeysVersionCreate[backup.MegolmAuthData]{
		Algorithm: id.KeyBackupAlgorithmMegolmBackupV1, AuthData: backup.MegolmAuthData{PublicKey: "pk1"},
	})
	if err != nil || created.Version == "" {
		t.Fatalf("CreateKeyBackupVersion: %+v %v", created, err)
	}
	v1 := string(created.Version)
	r := do(t, "GET", v3(s, "room_keys", "version"), alice.token, nil).want(t, 200, "")
	if r.Body["version"] != v1 || r.Body["algorithm"] != backupAlg || jget(r.Body, "auth_data", "public_key") != "pk1" ||
		r.Body["count"] != 0.0 || r.Body["etag"] == nil {
		t.Fatalf("current version = %s", r.Raw)
	}
	// Backups are per user.
	do(t, "GET", v3(s, "room_keys", "version"), bob.token, nil).want(t, http.StatusNotFound, "M_NOT_FOUND")
	do(t, "GET", v3(s, "room_keys", "version", v1), bob.token, nil).want(t, http.StatusNotFound, "M_NOT_FOUND")

	// Only auth_data may change, and only with the same algorithm and version.
	put := func(version string, body map[string]any) *resp {
		return do(t, "PUT", v3(s, "room_keys", "version", version), alice.token, body)
	}
	put(v1, map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{"public_key": "pk1b"}, "version": v1}).want(t, 200, "")
	put(v1, map[string]any{"algorithm": "other", "auth_data": map[string]any{}}).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	put(v1, map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{}, "version": "7"}).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	put("99", map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{}}).want(t, http.StatusNotFound, "M_NOT_FOUND")
	got, err := alice.cli.GetKeyBackupVersion(ctxT(t), id.KeyBackupVersion(v1))
	if err != nil || got.AuthData.PublicKey != "pk1b" {
		t.Fatalf("after update: %+v %v", got, err)
	}
	do(t, "POST", v3(s, "room_keys", "version"), alice.token, map[string]any{"algorithm": backupAlg}).want(t, http.StatusBadRequest, "M_MISSING_PARAM")

	// A second version becomes current; deleting it brings back the first.
	r = do(t, "POST", v3(s, "room_keys", "version"), alice.token, map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{"public_key": "pk2"}}).want(t, 200, "")
	v2, _ := r.Body["version"].(string)
	if v2 == "" || v2 == v1 {
		t.Fatalf("second version %q", v2)
	}
	if cur, err := alice.cli.GetKeyBackupLatestVersion(ctxT(t)); err != nil || string(cur.Version) != v2 {
		t.Fatalf("latest = %+v %v, want %s", cur, err, v2)
	}
	do(t, "DELETE", v3(s, "room_keys", "version", v2), alice.token, nil).want(t, 200, "")
	do(t, "DELETE", v3(s, "room_keys", "version", v2), alice.token, nil).want(t, 200, "") // already deleted: fine
	do(t, "DELETE", v3(s, "room_keys", "version", "1234"), alice.token, nil).want(t, http.StatusNotFound, "M_NOT_FOUND")
	do(t, "GET", v3(s, "room_keys", "version", v2), alice.token, nil).want(t, http.StatusNotFound, "M_NOT_FOUND")
	if r := do(t, "GET", v3(s, "room_keys", "version"), alice.token, nil).want(t, 200, ""); r.Body["version"] != v1 {
		t.Fatalf("current after deleting %s = %s", v2, r.Raw)
	}
}

func TestE2EEBackupKeysRoundTrip(t *testing.T) {
	s := start(t, nil)
	alice := e2eeUser(t, s, "alice", "ALICE1")
	newVersion := func() string {
		r := do(t, "POST", v3(s, "room_keys", "version"), alice.token, map[string]any{"algorithm": backupAlg, "auth_data": map[string]any{"public_key": "pk"}}).want(t, 200, "")
		return r.Body["version"].(string)
	}
	v1 := newVersion()
	etagOf := func(r *resp, count float64) string {
		t.Helper()
		if r.Body["count"] != count {
			t.Fatalf("count = %v, want %v: %s", r.Body["count"], count, r.Raw)
		}
		e, _ := r.Body["etag"].(string)
		if e == "" {
			t.Fatalf("no etag: %s", r.Raw)
		}
		return e
	}

	// All three levels of PUT.
	r := do(t, "PUT", backupURL(alice, v1), alice.token, map[string]any{"rooms": map[string]any{
		"!r1:hs.test": map[string]any{"sessions": map[string]any{"s1": sessionKey(5, 1, false, "r1s1-a"), "s2": sessionKey(0, 0, false, "r1s2")}},
		"!r2:hs.test": map[string]any{"sessions": map[string]any{"s1": sessionKey(0, 0, true, "r2s1")}},
	}}).want(t, 200, "")
	e1 := etagOf(r, 3)
	r = do(t, "PUT", backupURL(alice, v1, "!r3:hs.test"), alice.token, map[string]any{"sessions": map[string]any{"s9": sessionKey(0, 0, false, "r3s9")}}).want(t, 200, "")
	e2 := etagOf(r, 4)
	r = do(t, "PUT", backupURL(alice, v1, "!r3:hs.test", "s10"), alice.token, sessionKey(1, 0, false, "r3s10")).want(t, 200, "")
	e3 := etagOf(r, 5)
	if e1 == e2 || e2 == e3 {
		t.Fatalf("etags did not change: %s %s %s", e1, e2, e3)
	}

	// The replacement rule, one session at a time.
	one := func() map[string]any {
		return do(t, "GET", backupURL(alice, v1, "!r1:hs.test", "s1"), alice.token, nil).want(t, 200, "").Body
	}
	steps := []struct {
		key     map[string]any
		replace bool
	}{
		{sessionKey(6, 0, false, "higher index"), false},
		{sessionKey(5, 2, false, "more forwards"), false},
		{sessionKey(5, 0, false, "fewer forwards"), true},
		{sessionKey(2, 3, false, "lower index"), true},
		{sessionKey(9, 9, true, "verified"), true},
		{sessionKey(0, 0, false, "unverified"), false},
		{sessionKey(9, 9, true, "equal"), false},
	}
	etag := e3
	for _, st := range steps {
		before := jget(one(), "session_data", "ciphertext")
		r := do(t, "PUT", backupURL(alice, v1, "!r1:hs.test", "s1"), alice.token, st.key).want(t, 200, "")
		newEtag := etagOf(r, 5)
		after := jget(one(), "session_data", "ciphertext")
		wantData := before
		if st.replace {
			wantData = jget(st.key, "session_data", "ciphertext")
		}
		if after != wantData || (newEtag != etag) != st.replace {
			t.Fatalf("%v over %v: stored %v (etag %s -> %s), want %v", st.key["session_data"], before, after, etag, newEtag, wantData)
		}
		etag = newEtag
	}

	// GET at all three levels, raw and through mautrix.
	all, err := alice.cli.GetKeyBackup(ctxT(t), id.KeyBackupVersion(v1))
	if err != nil || len(all.Rooms) != 3 || len(all.Rooms["!r1:hs.test"].Sessions) != 2 || len(all.Rooms["!r3:hs.test"].Sessions) != 2 {
		t.Fatalf("GetKeyBackup = %+v, %v", all, err)
	}
	if s1 := all.Rooms["!r1:hs.test"].Sessions["s1"]; !s1.IsVerified || s1.FirstMessageIndex != 9 {
		t.Fatalf("s1 via mautrix = %+v", s1)
	}
	room := do(t, "GET", backupURL(alice, v1, "!r3:hs.test"), alice.token, nil).want(t, 200, "")
	if ss, _ := room.Body["sessions"].(map[string]any); len(ss) != 2 {
		t.Fatalf("room r3 = %s", room.Raw)
	}
	if empty := do(t, "GET", backupURL(alice, v1, "!none:hs.test"), alice.token, nil).want(t, 200, ""); string(empty.Raw) != `{"sessions":{}}` {
		t.Fatalf("unknown room = %s", empty.Raw)
	}
	do(t, "GET", backupURL(alice, v1, "!r3:hs.test", "nope"), alice.token, nil).want(t, http.StatusNotFound, "M_NOT_FOUND")
	if r := do(t, "GET", v3(s, "room_keys", "version", v1), alice.token, nil).want(t, 200, ""); r.Body["count"] != 5.0 || r.Body["etag"] != etag {
		t.Fatalf("version info = %s, want count 5 etag %s", r.Raw, etag)
	}

	// Writes to a version that is not current: 403 with the current version.
	v2 := newVersion()
	r = do(t, "PUT", backupURL(alice, v1, "!r1:hs.test", "s1"), alice.token, sessionKey(0, 0, true, "late"))
	r.want(t, http.StatusForbidden, "M_WRONG_ROOM_KEYS_VERSION")
	if r.Body["current_version"] != v2 {
		t.Fatalf("current_version = %v, want %s", r.Body["current_version"], v2)
	}
	do(t, "PUT", backupURL(alice, "999", "!r1:hs.test", "s1"), alice.token, sessionKey(0, 0, true, "x")).want(t, http.StatusNotFound, "M_NOT_FOUND")
	do(t, "PUT", v3(s, "room_keys", "keys", "!r1:hs.test", "s1"), alice.token, sessionKey(0, 0, true, "x")).want(t, http.StatusBadRequest, "M_MISSING_PARAM")
	do(t, "PUT", backupURL(alice, v2, "!r1:hs.test", "s1"), alice.token, map[string]any{"first_message_index": 1}).want(t, http.StatusBadRequest, "M_MISSING_PARAM")
	// The old version can still be read.
	if r := do(t, "GET", backupURL(alice, v1), alice.token, nil).want(t, 200, ""); len(r.Body["rooms"].(map[string]any)) != 3 {
		t.Fatalf("old version unreadable: %s", r.Raw)
	}
	if r := do(t, "GET", backupURL(alice, v2), alice.token, nil).want(t, 200, ""); string(r.Raw) != `{"rooms":{}}` {
		t.Fatalf("new version not empty: %s", r.Raw)
	}

	// DELETE at all three levels.
	r = do(t, "DELETE", backupURL(alice, v1, "!r3:hs.test", "s10"), alice.token, nil).want(t, 200, "")
	e4 := etagOf(r, 4)
	r = do(t, "DELETE", backupURL(alice, v1, "!r1:hs.test"), alice.token, nil).want(t, 200, "")
	e5 := etagOf(r, 2)
	r = do(t, "DELETE", backupURL(alice, v1), alice.token, nil).want(t, 200, "")
	e6 := etagOf(r, 0)
	if e4 == etag || e5 == e4 || e6 == e5 {
		t.Fatalf("etags after deletes: %s %s %s %s", etag, e4, e5, e6)
	}
	// Deleting nothing leaves the etag alone.
	if r := do(t, "DELETE", backupURL(alice, v1), alice.token, nil).want(t, 200, ""); etagOf(r, 0) != e6 {
		t.Fatalf("etag changed without a change: %s", r.Raw)
	}
	do(t, "DELETE", v3(s, "room_keys", "version", v1), alice.token, nil).want(t, 200, "")
	do(t, "GET", backupURL(alice, v1), alice.token, nil).want(t, http.StatusNotFound, "M_NOT_FOUND")
	do(t, "DELETE", backupURL(alice, v1), alice.token, nil).want(t, http.StatusNotFound, "M_NOT_FOUND")

	// Keys survive a restart.
	do(t, "PUT", backupURL(alice, v2, "!r1:hs.test", "s1"), alice.token, sessionKey(0, 0, true, "kept")).want(t, 200, "")
	s2 := s.Restart()
	alice.s = s2
	if r := do(t, "GET", backupURL(alice, v2, "!r1:hs.test", "s1"), alice.token, nil).want(t, 200, ""); jget(r.Body, "session_data", "ciphertext") != ct("kept") {
		t.Fatalf("after restart: %s", r.Raw)
	}
}
