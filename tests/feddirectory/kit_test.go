// Package feddirectory tests the room directory across servers: public
// room lists, space hierarchies, room summaries and the user directory of
// rooms shared with other servers' users, on homeservers that federate
// over TLS on loopback (tests/fedtest).
package feddirectory

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"testing"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/tests/fedtest"
)

// user is a logged-in user of one server.
type user struct {
	*fedtest.MautrixUser
	t *testing.T
}

func newUser(t *testing.T, hs *fedtest.Server, localpart string) *user {
	t.Helper()
	return &user{MautrixUser: hs.NewUser(t, localpart), t: t}
}

// call sends a client-API request to a full path (under /_matrix/client),
// with a token unless anonymous.
func (u *user) call(method, path string, body any, anonymous bool) fedtest.Response {
	u.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, u.HS.URL()+path, rd)
	if err != nil {
		u.t.Fatal(err)
	}
	if !anonymous {
		req.Header.Set("Authorization", "Bearer "+u.Token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		u.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := fedtest.Response{Status: resp.StatusCode, Raw: raw}
	json.Unmarshal(raw, &out.Body)
	return out
}

func (u *user) createRoom(body map[string]any) string {
	u.t.Helper()
	return u.Must("POST", "/createRoom", body)["room_id"].(string)
}

// setName sets the user's display name.
func (u *user) setName(name string) {
	u.t.Helper()
	u.Must("PUT", "/profile/"+esc(u.ID)+"/displayname", map[string]any{"displayname": name})
}

func (u *user) putState(roomID, typ, key string, content map[string]any) {
	u.t.Helper()
	u.Must("PUT", "/rooms/"+esc(roomID)+"/state/"+typ+"/"+esc(key), content)
}

// fed sends a signed federation request from one server to another.
func fed(t *testing.T, from *fedtest.Server, method string, to spec.ServerName, path string, body any) fedtest.Response {
	t.Helper()
	status, raw := from.Send(t, from.SignedRequest(t, method, to, path, body))
	out := fedtest.Response{Status: status, Raw: raw}
	json.Unmarshal(raw, &out.Body)
	return out
}

func esc(s string) string { return url.PathEscape(s) }

// roomIDs are the room_id fields of a list of rooms.
func roomIDs(rooms any) []string {
	var out []string
	for _, r := range fedtest.List(rooms) {
		id, _ := fedtest.Get(r, "room_id").(string)
		out = append(out, id)
	}
	return out
}

func has(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// space is createRoom's body for a public space.
func space(name string) map[string]any {
	return map[string]any{"preset": "public_chat", "name": name, "creation_content": map[string]any{"type": "m.space"}}
}

// child links a child room into a space through via servers.
func (u *user) child(spaceID, childID string, suggested bool, via ...spec.ServerName) {
	u.t.Helper()
	vias := []string{}
	for _, v := range via {
		vias = append(vias, string(v))
	}
	u.putState(spaceID, "m.space.child", childID, map[string]any{"via": vias, "suggested": suggested})
}
