// Package fede2ee tests end-to-end encryption across servers: keys,
// device lists, cross-signing and to-device messages between homeservers
// that federate over TLS on loopback (tests/fedtest), through each one's
// client API (raw HTTP and mautrix's real crypto stack, goolm) and raw
// federation requests for what a server must refuse.
package fede2ee

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/accounts"
	"matrixhs/tests/fedtest"
)

const password = "correct horse battery staple"

// user is a logged-in device of a user of one server, with an ed25519
// identity key for raw key uploads.
type user struct {
	t        testing.TB
	hs       *fedtest.Server
	ID       string
	DeviceID string
	token    string
	key      edKey
}

// edKey is an ed25519 key pair as clients hold them.
type edKey struct {
	priv ed25519.PrivateKey
	pub  string
}

func newEdKey(t testing.TB) edKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return edKey{priv: priv, pub: base64.RawStdEncoding.EncodeToString(pub)}
}

// newUser registers localpart on hs with a first device.
func newUser(t testing.TB, hs *fedtest.Server, localpart, deviceID string) *user {
	t.Helper()
	login, err := hs.Accounts.Register(context.Background(), accounts.Registration{Localpart: localpart, Password: password,
		Device: accounts.NewDevice{DeviceID: deviceID, DisplayName: "Device " + deviceID}})
	if err != nil {
		t.Fatalf("registering %s on %s: %v", localpart, hs.Name, err)
	}
	return &user{t: t, hs: hs, ID: login.UserID, DeviceID: login.DeviceID, token: login.AccessToken, key: newEdKey(t)}
}

// login logs in another device of u's user.
func (u *user) login(deviceID string) *user {
	u.t.Helper()
	r := u.anon("POST", "/login", map[string]any{
		"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": u.ID},
		"password": password, "device_id": deviceID, "initial_device_display_name": "Device " + deviceID,
	})
	r.want(u.t, http.StatusOK, "")
	return &user{t: u.t, hs: u.hs, ID: u.ID, DeviceID: deviceID, token: r.Body["access_token"].(string), key: newEdKey(u.t)}
}

// response is a client API answer.
type response struct {
	Status int
	Body   map[string]any
	Raw    []byte
}

func (r response) want(t testing.TB, status int, errcode string) response {
	t.Helper()
	if r.Status != status || (errcode != "" && r.Body["errcode"] != errcode) {
		t.Fatalf("got %d %s, want %d %s", r.Status, r.Raw, status, errcode)
	}
	return r
}

// httpClient bounds every request: a hang fails the test.
var httpClient = &http.Client{Timeout: 60 * time.Second}

func (u *user) request(method, path, token string, body any) response {
	u.t.Helper()
	var rd io.Reader
	if body != nil {
		js, err := json.Marshal(body)
		if err != nil {
			u.t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, u.hs.URL()+"/_matrix/client/v3"+path, rd)
	if err != nil {
		u.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		u.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := response{Status: resp.StatusCode, Raw: raw}
	json.Unmarshal(raw, &out.Body)
	return out
}

// do sends a client API request (path under /_matrix/client/v3) as u.
func (u *user) do(method, path string, body any) response {
	u.t.Helper()
	return u.request(method, path, u.token, body)
}

func (u *user) anon(method, path string, body any) response {
	u.t.Helper()
	return u.request(method, path, "", body)
}

func (u *user) must(method, path string, body any) map[string]any {
	u.t.Helper()
	return u.do(method, path, body).want(u.t, http.StatusOK, "").Body
}

func (u *user) keyID() string { return "ed25519:" + u.DeviceID }

// deviceKeys is the device's signed device_keys object.
func (u *user) deviceKeys() map[string]any {
	u.t.Helper()
	return signObj(u.t, map[string]any{
		"user_id": u.ID, "device_id": u.DeviceID,
		"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys":       map[string]string{"curve25519:" + u.DeviceID: newEdKey(u.t).pub, u.keyID(): u.key.pub},
	}, u.ID, u.keyID(), u.key)
}

// uploadKeys uploads the device's keys and n signed one-time keys.
func (u *user) uploadKeys(n int) {
	u.t.Helper()
	otks := map[string]any{}
	for i := range n {
		otks[fmt.Sprintf("signed_curve25519:K%d", i)] = signObj(u.t, map[string]any{"key": newEdKey(u.t).pub}, u.ID, u.keyID(), u.key)
	}
	u.must("POST", "/keys/upload", map[string]any{"device_keys": u.deviceKeys(), "one_time_keys": otks})
}

// query posts /keys/query for the users (all devices) with a timeout in
// milliseconds (0: none given).
func (u *user) query(timeoutMS int, users ...string) response {
	u.t.Helper()
	dk := map[string][]string{}
	for _, id := range users {
		dk[id] = []string{}
	}
	body := map[string]any{"device_keys": dk}
	if timeoutMS > 0 {
		body["timeout"] = timeoutMS
	}
	return u.do("POST", "/keys/query", body).want(u.t, http.StatusOK, "")
}

// queryUntil queries until check accepts the answer, for up to 30 s.
func (u *user) queryUntil(what string, check func(r response) bool, users ...string) response {
	u.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := u.query(0, users...)
		if check(r) {
			return r
		}
		if time.Now().After(deadline) {
			u.t.Fatalf("%s never saw %s: %s", u.ID, what, r.Raw)
		}
		// Each query is a round trip; pace them on a sync long-poll,
		// which returns as soon as anything concerning u changes.
		u.sync(u.since(), 500)
	}
}

// since is the current next_batch of u (an initial sync).
func (u *user) since() string {
	u.t.Helper()
	return u.sync("", 0)["next_batch"].(string)
}

// sync runs one /sync (a long-poll when since is set).
func (u *user) sync(since string, timeoutMS int) map[string]any {
	u.t.Helper()
	q := url.Values{"timeout": {fmt.Sprint(timeoutMS)}}
	if since != "" {
		q.Set("since", since)
	}
	return u.must("GET", "/sync?"+q.Encode(), nil)
}

// syncUntil long-polls /sync from since until check accepts a response,
// failing after 40 seconds; it returns the accepted response.
func (u *user) syncUntil(since, what string, check func(sync map[string]any) bool) map[string]any {
	u.t.Helper()
	deadline := time.Now().Add(40 * time.Second)
	for time.Now().Before(deadline) {
		res := u.sync(since, 2000)
		if check(res) {
			return res
		}
		since, _ = res["next_batch"].(string)
	}
	u.t.Fatalf("%s never saw %s", u.ID, what)
	return nil
}

// changedIn reports whether a sync lists userID in device_lists.changed.
func changedIn(sync map[string]any, userID string) bool {
	return slices.Contains(strs(fedtest.Get(sync, "device_lists", "changed")), userID)
}

// leftIn reports whether a sync lists userID in device_lists.left.
func leftIn(sync map[string]any, userID string) bool {
	return slices.Contains(strs(fedtest.Get(sync, "device_lists", "left")), userID)
}

func (u *user) createRoom(body map[string]any) string {
	u.t.Helper()
	return u.must("POST", "/createRoom", body)["room_id"].(string)
}

// encryptedRoom is createRoom's body for a private encrypted room.
func encryptedRoom(invite ...string) map[string]any {
	return map[string]any{
		"preset": "private_chat", "invite": invite,
		"initial_state": []map[string]any{{"type": "m.room.encryption", "state_key": "",
			"content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}},
	}
}

func roomPath(roomID, rest string) string { return "/rooms/" + url.PathEscape(roomID) + rest }

// join joins a room through the given server, retrying while the invite
// is on its way.
func (u *user) join(roomID string, via spec.ServerName) {
	u.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := u.do("POST", "/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(string(via)), map[string]any{})
		if r.Status == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			u.t.Fatalf("%s joining %s: %d %s", u.ID, roomID, r.Status, r.Raw)
		}
		u.sync(u.since(), 500)
	}
}

func (u *user) leave(roomID string) {
	u.t.Helper()
	u.must("POST", roomPath(roomID, "/leave"), map[string]any{})
}

// sendText sends a plain message.
func (u *user) sendText(roomID, body string) string {
	u.t.Helper()
	txn := fmt.Sprintf("t%d", time.Now().UnixNano())
	return u.must("PUT", roomPath(roomID, "/send/m.room.message/"+txn), map[string]any{"msgtype": "m.text", "body": body})["event_id"].(string)
}

// joinedMembers is the joined members of a room as u's server has them.
func (u *user) joinedMembers(roomID string) []string {
	u.t.Helper()
	out := []string{}
	for id := range asMap(u.must("GET", roomPath(roomID, "/joined_members"), nil)["joined"]) {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// waitMembers waits until u's server has exactly these joined members.
func (u *user) waitMembers(roomID string, members ...string) {
	u.t.Helper()
	slices.Sort(members)
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := u.joinedMembers(roomID)
		if slices.Equal(got, members) {
			return
		}
		if time.Now().After(deadline) {
			u.t.Fatalf("%s: joined members of %s are %v, want %v", u.hs.Name, roomID, got, members)
		}
		u.sync(u.since(), 500)
	}
}

// signObj signs obj as signer with keyID and returns the signed object.
func signObj(t testing.TB, obj any, signer, keyID string, k edKey) map[string]any {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := gomatrixserverlib.SignJSON(signer, gomatrixserverlib.KeyID(keyID), k.priv, raw)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(signed, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func strs(v any) []string {
	list, _ := v.([]any)
	out := []string{}
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// fedResponse is a federation answer.
type fedResponse = response

// fed sends a signed federation request from one server to another.
func fed(t testing.TB, from *fedtest.Server, method string, to spec.ServerName, path string, body any) fedResponse {
	t.Helper()
	status, raw := from.Send(t, from.SignedRequest(t, method, to, path, body))
	out := fedResponse{Status: status, Raw: raw}
	json.Unmarshal(raw, &out.Body)
	return out
}

// rawFed sends a federation request with a raw body and the given
// Authorization header ("" for none) to a server's federation listener.
func rawFed(t testing.TB, to *fedtest.Server, method, path, body, authorization string) fedResponse {
	t.Helper()
	req, err := http.NewRequest(method, "matrix://"+string(to.Name)+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	status, raw := to.Send(t, req)
	out := fedResponse{Status: status, Raw: raw}
	json.Unmarshal(raw, &out.Body)
	return out
}

// sendEDUs delivers EDUs from one server to another in a transaction of
// its own (as the sender would), expecting 200.
func sendEDUs(t testing.TB, from, to *fedtest.Server, edus ...map[string]any) {
	t.Helper()
	txn := map[string]any{"origin": string(from.Name), "origin_server_ts": time.Now().UnixMilli(), "pdus": []any{}, "edus": edus}
	r := fed(t, from, "PUT", to.Name, fmt.Sprintf("/_matrix/federation/v1/send/test%d", time.Now().UnixNano()), txn)
	r.want(t, http.StatusOK, "")
}
