// Package fedephemeral tests typing notifications, read receipts and
// presence across servers (the m.typing, m.receipt and m.presence EDUs),
// the limits on what other servers may send, and the federation admin API,
// on homeservers that federate over TLS on loopback (tests/fedtest).
package fedephemeral

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/accounts"
	"matrixhs/tests/fedtest"
)

// user is a logged-in user of one server, talking to its client API.
type user struct {
	t     *testing.T
	hs    *fedtest.Server
	ID    string
	token string
	since string // the next_batch of the user's last /sync
}

func newUser(t *testing.T, hs *fedtest.Server, localpart string) *user {
	t.Helper()
	return register(t, hs, localpart, false)
}

func newAdmin(t *testing.T, hs *fedtest.Server, localpart string) *user {
	t.Helper()
	return register(t, hs, localpart, true)
}

func register(t *testing.T, hs *fedtest.Server, localpart string, admin bool) *user {
	t.Helper()
	login, err := hs.Accounts.Register(context.Background(), accounts.Registration{
		Localpart: localpart, Password: "correct horse battery staple", Admin: admin,
	})
	if err != nil {
		t.Fatalf("registering %s on %s: %v", localpart, hs.Name, err)
	}
	return &user{t: t, hs: hs, ID: login.UserID, token: login.AccessToken}
}

// response is an HTTP answer, decoded when it is JSON.
type response struct {
	Status int
	Body   map[string]any
	Raw    []byte
}

func (r response) want(t *testing.T, status int, errcode string) {
	t.Helper()
	if r.Status != status || (errcode != "" && r.Body["errcode"] != errcode) {
		t.Fatalf("got %d %s, want %d %s", r.Status, r.Raw, status, errcode)
	}
}

// raw sends a request with the user's token to a path of the server.
func (u *user) raw(method, path string, body any) response {
	u.t.Helper()
	var rd io.Reader
	if body != nil {
		js, err := json.Marshal(body)
		if err != nil {
			u.t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, u.hs.URL()+path, rd)
	if err != nil {
		u.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+u.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		u.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out := response{Status: resp.StatusCode}
	out.Raw, _ = io.ReadAll(resp.Body)
	json.Unmarshal(out.Raw, &out.Body)
	return out
}

// do sends a client API request (path under /_matrix/client/v3).
func (u *user) do(method, path string, body any) response {
	u.t.Helper()
	return u.raw(method, "/_matrix/client/v3"+path, body)
}

func (u *user) must(method, path string, body any) map[string]any {
	u.t.Helper()
	r := u.do(method, path, body)
	r.want(u.t, http.StatusOK, "")
	return r.Body
}

func roomPath(roomID, rest string) string { return "/rooms/" + url.PathEscape(roomID) + rest }

func (u *user) createRoom() string {
	u.t.Helper()
	return u.must("POST", "/createRoom", map[string]any{"preset": "public_chat"})["room_id"].(string)
}

func (u *user) join(roomID string, via spec.ServerName) {
	u.t.Helper()
	u.must("POST", "/join/"+url.PathEscape(roomID)+"?via="+url.QueryEscape(string(via)), map[string]any{})
}

var txnSeq atomic.Int64

func (u *user) send(roomID string, content map[string]any) string {
	u.t.Helper()
	txn := fmt.Sprintf("t%d", txnSeq.Add(1))
	return u.must("PUT", roomPath(roomID, "/send/m.room.message/"+txn), content)["event_id"].(string)
}

func (u *user) say(roomID, body string) string {
	u.t.Helper()
	return u.send(roomID, map[string]any{"msgtype": "m.text", "body": body})
}

func (u *user) setTyping(roomID string, typing bool, timeout time.Duration) {
	u.t.Helper()
	u.must("PUT", roomPath(roomID, "/typing/"+url.PathEscape(u.ID)), map[string]any{"typing": typing, "timeout": timeout.Milliseconds()})
}

func (u *user) receipt(roomID, typ, eventID, threadID string) {
	u.t.Helper()
	body := map[string]any{}
	if threadID != "" {
		body["thread_id"] = threadID
	}
	u.must("POST", roomPath(roomID, "/receipt/"+typ+"/"+url.PathEscape(eventID)), body)
}

// syncUntil long-polls /sync from where the user's last sync left off
// until check accepts an answer, failing after 20 seconds. Presence is
// left as the user set it (set_presence=offline).
func (u *user) syncUntil(what string, check func(sync map[string]any) bool) map[string]any {
	u.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		q := url.Values{"timeout": {"2000"}, "set_presence": {"offline"}}
		if u.since != "" {
			q.Set("since", u.since)
		}
		res := u.must("GET", "/sync?"+q.Encode(), nil)
		u.since, _ = res["next_batch"].(string)
		if check(res) {
			return res
		}
	}
	u.t.Fatalf("%s never saw %s", u.ID, what)
	return nil
}

// ephemeral is the ephemeral events of a joined room in a sync answer.
func ephemeral(sync map[string]any, roomID, typ string) []map[string]any {
	var out []map[string]any
	for _, e := range fedtest.List(fedtest.Get(sync, "rooms", "join", roomID, "ephemeral", "events")) {
		if fedtest.Get(e, "type") == typ {
			out = append(out, e.(map[string]any))
		}
	}
	return out
}

// typingIn is who a sync answer says types in a room (nil when it says
// nothing).
func typingIn(sync map[string]any, roomID string) []string {
	evs := ephemeral(sync, roomID, "m.typing")
	if len(evs) == 0 {
		return nil
	}
	users := []string{}
	for _, u := range fedtest.List(fedtest.Get(evs[len(evs)-1], "content", "user_ids")) {
		users = append(users, u.(string))
	}
	return users
}

// receiptIn is the receipt of a user of a type on an event in a sync
// answer (nil when there is none).
func receiptIn(sync map[string]any, roomID, eventID, typ, userID string) map[string]any {
	for _, e := range ephemeral(sync, roomID, "m.receipt") {
		if r, ok := fedtest.Get(e, "content", eventID, typ, userID).(map[string]any); ok {
			return r
		}
	}
	return nil
}

// presenceOf is the presence event of a user in a sync answer.
func presenceOf(sync map[string]any, userID string) map[string]any {
	for _, e := range fedtest.List(fedtest.Get(sync, "presence", "events")) {
		if fedtest.Get(e, "sender") == userID {
			return e.(map[string]any)
		}
	}
	return nil
}

// slidingSync runs one sliding sync with the typing and receipts
// extensions over all the user's rooms.
func (u *user) slidingSync() map[string]any {
	u.t.Helper()
	r := u.raw("POST", "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync?timeout=0", map[string]any{
		"lists":      map[string]any{"all": map[string]any{"ranges": [][]int{{0, 20}}, "timeline_limit": 1}},
		"extensions": map[string]any{"typing": map[string]any{"enabled": true}, "receipts": map[string]any{"enabled": true}},
	})
	r.want(u.t, http.StatusOK, "")
	return r.Body
}

// shareRoom makes a public room of a on a's server that b joins, and
// waits until a's sync shows b joined (so b's server is among the room's
// servers on both sides).
func shareRoom(t *testing.T, a *user, others ...*user) string {
	t.Helper()
	roomID := a.createRoom()
	for _, b := range others {
		b.join(roomID, a.hs.Name)
		a.syncUntil(b.ID+"'s join", func(s map[string]any) bool {
			for _, e := range fedtest.List(fedtest.Get(s, "rooms", "join", roomID, "timeline", "events")) {
				if fedtest.Get(e, "type") == "m.room.member" && fedtest.Get(e, "state_key") == b.ID {
					return true
				}
			}
			return false
		})
	}
	return roomID
}

// waitFor polls cond until it holds, failing after 20 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fed sends a signed federation request from one server to another.
func fed(t *testing.T, from *fedtest.Server, method string, to spec.ServerName, path string, body any) response {
	t.Helper()
	status, raw := from.Send(t, from.SignedRequest(t, method, to, path, body))
	out := response{Status: status, Raw: raw}
	json.Unmarshal(raw, &out.Body)
	return out
}

var fedTxnSeq atomic.Int64

// sendEDUs sends a transaction of EDUs (no PDUs) from one server to
// another, which processes it before it answers.
func sendEDUs(t *testing.T, from *fedtest.Server, to spec.ServerName, edus ...map[string]any) response {
	t.Helper()
	txn := fmt.Sprintf("edu%d-%d", time.Now().UnixNano(), fedTxnSeq.Add(1))
	return fed(t, from, "PUT", to, "/_matrix/federation/v1/send/"+txn, map[string]any{
		"origin": from.Name, "origin_server_ts": time.Now().UnixMilli(), "pdus": []any{}, "edus": edus,
	})
}

func typingEDU(roomID, userID string, typing bool) map[string]any {
	return map[string]any{"edu_type": "m.typing", "content": map[string]any{"room_id": roomID, "user_id": userID, "typing": typing}}
}

func receiptEDU(roomID, userID, eventID string) map[string]any {
	return map[string]any{"edu_type": "m.receipt", "content": map[string]any{roomID: map[string]any{"m.read": map[string]any{
		userID: map[string]any{"event_ids": []string{eventID}, "data": map[string]any{"ts": 1234}}}}}}
}

func presenceEDU(userID, presence string) map[string]any {
	return map[string]any{"edu_type": "m.presence", "content": map[string]any{"push": []any{map[string]any{
		"user_id": userID, "presence": presence, "last_active_ago": 10, "currently_active": true}}}}
}

func sortedEqual(a []string, b ...string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func hasPrefix(s any, prefix string) bool {
	str, _ := s.(string)
	return strings.HasPrefix(str, prefix)
}
