// Package fedrooms tests room membership across servers (joins, invites,
// leaves, knocks, kicks and bans) on homeservers that federate over TLS on
// loopback (tests/fedtest), through the client API of each and raw
// federation requests where a server must refuse something.
package fedrooms

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/roomserver"
	"matrixhs/storage"
	"matrixhs/tests/fedtest"
)

// user is a logged-in user of one server, talking to its client API
// (fedtest.User with the helpers these tests name their own way).
type user struct {
	*fedtest.MautrixUser
	t  *testing.T
	hs *fedtest.Server
}

func newUser(t *testing.T, hs *fedtest.Server, localpart string) *user {
	t.Helper()
	return &user{MautrixUser: hs.NewUser(t, localpart), t: t, hs: hs}
}

// response is a client API answer.
type response fedtest.Response

// do sends a client API request (path under /_matrix/client/v3) with a
// JSON body (nil for none).
func (u *user) do(method, path string, body any) response {
	u.t.Helper()
	return response(u.Do(method, path, body))
}

// must is do expecting 200.
func (u *user) must(method, path string, body any) map[string]any {
	u.t.Helper()
	return u.Must(method, path, body)
}

// want asserts a status and errcode ("" for any).
func (r response) want(t *testing.T, status int, errcode string) {
	t.Helper()
	fedtest.Response(r).Want(t, status, errcode)
}

func (u *user) createRoom(body map[string]any) string {
	u.t.Helper()
	if body == nil {
		body = map[string]any{}
	}
	return u.must("POST", "/createRoom", body)["room_id"].(string)
}

// joinPath is /join/{roomIdOrAlias} with via servers as the query names.
func joinPath(idOrAlias, param string, servers ...spec.ServerName) string {
	q := url.Values{}
	for _, s := range servers {
		q.Add(param, string(s))
	}
	p := "/join/" + url.PathEscape(idOrAlias)
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	return p
}

func (u *user) join(idOrAlias string, via ...spec.ServerName) response {
	u.t.Helper()
	return u.do("POST", joinPath(idOrAlias, "via", via...), map[string]any{})
}

func (u *user) mustJoin(idOrAlias string, via ...spec.ServerName) string {
	u.t.Helper()
	r := u.join(idOrAlias, via...)
	r.want(u.t, http.StatusOK, "")
	return r.Body["room_id"].(string)
}

func roomPath(roomID, rest string) string { return "/rooms/" + url.PathEscape(roomID) + rest }

func (u *user) invite(roomID, target string) response {
	return u.do("POST", roomPath(roomID, "/invite"), map[string]any{"user_id": target})
}

func (u *user) leave(roomID string) response {
	return u.do("POST", roomPath(roomID, "/leave"), map[string]any{})
}

func (u *user) send(roomID, body string) string {
	u.t.Helper()
	txn := fmt.Sprintf("t%d", time.Now().UnixNano())
	return u.must("PUT", roomPath(roomID, "/send/m.room.message/"+txn), map[string]any{"msgtype": "m.text", "body": body})["event_id"].(string)
}

func (u *user) putState(roomID, typ, key string, content map[string]any) string {
	u.t.Helper()
	return u.must("PUT", roomPath(roomID, "/state/"+typ+"/"+url.PathEscape(key)), content)["event_id"].(string)
}

// sync runs one /sync (a long-poll when since is set) with a filter
// ("" for none).
func (u *user) sync(since, filter string, timeout time.Duration) map[string]any {
	u.t.Helper()
	return u.Sync(since, filter, timeout)
}

// withLeft is a sync filter that lists left rooms.
const withLeft = `{"room":{"include_leave":true}}`

// syncUntil long-polls /sync until check accepts a response (each sync
// waits on the server for news), failing after 20 seconds.
func (u *user) syncUntil(what string, check func(sync map[string]any) bool) map[string]any {
	u.t.Helper()
	return u.syncFilteredUntil("", what, check)
}

func (u *user) syncFilteredUntil(filter, what string, check func(sync map[string]any) bool) map[string]any {
	u.t.Helper()
	return u.SyncUntil(filter, 20*time.Second, what, check)
}

// get walks a decoded JSON value along keys.
func get(v any, keys ...string) any { return fedtest.Get(v, keys...) }

func list(v any) []any { return fedtest.List(v) }

// hasMember reports whether events hold a member event of user with the
// membership.
func hasMember(events any, userID, membership string) bool {
	for _, e := range list(events) {
		if get(e, "type") == spec.MRoomMember && get(e, "state_key") == userID && get(e, "content", "membership") == membership {
			return true
		}
	}
	return false
}

// membershipOn is a user's membership as a server's roomserver holds it.
func membershipOn(t *testing.T, hs *fedtest.Server, roomID, userID string) string {
	t.Helper()
	m, err := hs.Rooms.Membership(context.Background(), roomID, userID)
	if err != nil {
		t.Fatalf("membership of %s in %s on %s: %v", userID, roomID, hs.Name, err)
	}
	return m
}

// deliver hands a stored event of one server to another as its /send
// would (the sender and /send come with other parts of federation): the
// receiving roomserver checks and stores it.
func deliver(t *testing.T, from, to *fedtest.Server, eventID string) roomserver.InputResult {
	t.Helper()
	e, err := from.DB.EventByID(context.Background(), eventID)
	if err != nil {
		t.Fatalf("event %s on %s: %v", eventID, from.Name, err)
	}
	ver := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersion(e.RoomVersion))
	pdu, err := ver.NewEventFromUntrustedJSON(e.JSON)
	if err != nil {
		t.Fatal(err)
	}
	res, err := to.Rooms.Input(context.Background(), []roomserver.InputEvent{{Kind: roomserver.KindNew, Event: pdu, Origin: from.Name}})
	if err != nil {
		t.Fatal(err)
	}
	return res[0]
}

// eventOn loads a stored event.
func eventOn(t *testing.T, hs *fedtest.Server, eventID string) *storage.Event {
	t.Helper()
	e, err := hs.DB.EventByID(context.Background(), eventID)
	if err != nil {
		t.Fatalf("event %s on %s: %v", eventID, hs.Name, err)
	}
	return e
}

// fed sends a signed federation request from one server to another and
// decodes the answer.
func fed(t *testing.T, from *fedtest.Server, method string, to spec.ServerName, path string, body any) response {
	t.Helper()
	status, raw := from.Send(t, from.SignedRequest(t, method, to, path, body))
	out := response{Status: status, Raw: raw}
	json.Unmarshal(raw, &out.Body)
	return out
}

func esc(s string) string { return url.PathEscape(s) }

func contains(list []any, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// signedBy reports whether an event's JSON carries a signature of server.
func signedBy(eventJSON []byte, server string) bool {
	var e struct {
		Signatures map[string]map[string]string `json:"signatures"`
	}
	json.Unmarshal(eventJSON, &e)
	return len(e.Signatures[server]) > 0
}

// slidingSync runs one sliding sync (MSC4186) over all the user's rooms.
func (u *user) slidingSync() map[string]any {
	u.t.Helper()
	req, err := http.NewRequest("POST", u.hs.URL()+"/_matrix/client/unstable/org.matrix.simplified_msc3575/sync?timeout=0",
		strings.NewReader(`{"lists":{"all":{"ranges":[[0,20]],"timeline_limit":1}}}`))
	if err != nil {
		u.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+u.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		u.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil {
		u.t.Fatalf("sliding sync: %d", resp.StatusCode)
	}
	return out
}
