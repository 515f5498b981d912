package fedtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// User is a registered user of a server, talking raw HTTP to its client
// API.
type User struct {
	S     *Server
	ID    string
	Token string
}

// Register signs a user up on s (registration is open on test servers).
func (s *Server) Register(t testing.TB, localpart string) *User {
	t.Helper()
	u := &User{S: s}
	var out struct {
		UserID      string `json:"user_id"`
		AccessToken string `json:"access_token"`
	}
	u.MustDo(t, "POST", "/register", map[string]any{
		"username": localpart, "password": "pw", "auth": map[string]string{"type": "m.login.dummy"},
	}, &out)
	u.ID, u.Token = out.UserID, out.AccessToken
	return u
}

// Do sends a client-API request (path under /_matrix/client/v3) and
// decodes a 2xx answer into out.
func (u *User) Do(t testing.TB, method, path string, body, out any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, u.S.URL()+"/_matrix/client/v3"+path, rd)
	if u.Token != "" {
		req.Header.Set("Authorization", "Bearer "+u.Token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: decoding %s: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, raw
}

// MustDo is Do that fails the test unless the answer is 200.
func (u *User) MustDo(t testing.TB, method, path string, body, out any) {
	t.Helper()
	if status, raw := u.Do(t, method, path, body, out); status != 200 {
		t.Fatalf("%s %s as %s: %d %s", method, path, u.ID, status, raw)
	}
}

// RoomPath is /rooms/{roomID}{rest}.
func RoomPath(roomID, rest string) string { return "/rooms/" + url.PathEscape(roomID) + rest }

// CreateRoom creates a room and returns its ID.
func (u *User) CreateRoom(t testing.TB, body map[string]any) string {
	t.Helper()
	var out struct {
		RoomID string `json:"room_id"`
	}
	u.MustDo(t, "POST", "/createRoom", body, &out)
	return out.RoomID
}

// Join joins a room through the via servers.
func (u *User) Join(t testing.TB, roomID string, via ...*Server) {
	t.Helper()
	q := url.Values{}
	for _, s := range via {
		q.Add("via", string(s.Name))
	}
	u.MustDo(t, "POST", "/join/"+url.PathEscape(roomID)+"?"+q.Encode(), map[string]any{}, nil)
}

var txnSeq atomic.Int64

// Send sends a text message and returns its event ID.
func (u *User) Send(t testing.TB, roomID, body string) string {
	t.Helper()
	var out struct {
		EventID string `json:"event_id"`
	}
	u.MustDo(t, "PUT", RoomPath(roomID, fmt.Sprintf("/send/m.room.message/m%d", txnSeq.Add(1))),
		map[string]any{"msgtype": "m.text", "body": body}, &out)
	return out.EventID
}

// SetState sets a state event and returns its event ID.
func (u *User) SetState(t testing.TB, roomID, typ, key string, content any) string {
	t.Helper()
	var out struct {
		EventID string `json:"event_id"`
	}
	u.MustDo(t, "PUT", RoomPath(roomID, "/state/"+typ+"/"+url.PathEscape(key)), content, &out)
	return out.EventID
}

// ClientEvent is an event as the client API serves it.
type ClientEvent struct {
	EventID  string          `json:"event_id"`
	Type     string          `json:"type"`
	StateKey *string         `json:"state_key"`
	Sender   string          `json:"sender"`
	Content  json.RawMessage `json:"content"`
}

// IDs lists the events' IDs.
func IDs(events []ClientEvent) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.EventID
	}
	return out
}

// RoomState is the room's current state as /state serves it.
func (u *User) RoomState(t testing.TB, roomID string) []ClientEvent {
	t.Helper()
	var out []ClientEvent
	u.MustDo(t, "GET", RoomPath(roomID, "/state"), nil, &out)
	return out
}

// Messages pages /messages backwards from the room's end to its start and
// returns every event served, newest first.
func (u *User) Messages(t testing.TB, roomID string) []ClientEvent {
	t.Helper()
	return u.MessagesAfter(t, roomID, "")
}

// MessagesAfter pages /messages backwards from the room's end until it
// meets the event stop (to the start when stop is ""), and returns the
// events served before it, newest first.
func (u *User) MessagesAfter(t testing.TB, roomID, stop string) []ClientEvent {
	t.Helper()
	var all []ClientEvent
	from := ""
	for range 100 {
		q := url.Values{"dir": {"b"}, "limit": {"100"}}
		if from != "" {
			q.Set("from", from)
		}
		var page struct {
			Chunk []ClientEvent `json:"chunk"`
			End   string        `json:"end"`
		}
		u.MustDo(t, "GET", RoomPath(roomID, "/messages?"+q.Encode()), nil, &page)
		for i, e := range page.Chunk {
			if stop != "" && e.EventID == stop {
				return append(all, page.Chunk[:i]...)
			}
		}
		all = append(all, page.Chunk...)
		if page.End == "" || page.End == from {
			return all
		}
		from = page.End
	}
	t.Fatalf("/messages of %s never reached the start", roomID)
	return nil
}

// WaitFor polls cond until it is nil, failing the test with its last error
// once the deadline passes: for conditions no request can wait on (what
// several servers hold after they have talked).
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Since is the user's current sync token.
func (u *User) Since(t testing.TB) string {
	t.Helper()
	var out struct {
		NextBatch string `json:"next_batch"`
	}
	u.MustDo(t, "GET", "/sync?timeout=0", nil, &out)
	return out.NextBatch
}

// SyncRoom is what one /sync says of a joined room.
type SyncRoom struct {
	Timeline struct {
		Events []ClientEvent `json:"events"`
	} `json:"timeline"`
	State struct {
		Events []ClientEvent `json:"events"`
	} `json:"state"`
}

// SyncUntil long-polls /sync from since until the room's timeline has
// delivered every event of want (failing after 20 seconds), and returns
// all the timeline and state events of the room it saw, in order.
func (u *User) SyncUntil(t testing.TB, since, roomID string, want ...string) []ClientEvent {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var seen []ClientEvent
	missing := func() []string {
		var m []string
		for _, id := range want {
			if !slices.ContainsFunc(seen, func(e ClientEvent) bool { return e.EventID == id }) {
				m = append(m, id)
			}
		}
		return m
	}
	filter := url.QueryEscape(`{"room":{"timeline":{"limit":100}}}`)
	for first := true; first || len(missing()) > 0; first = false {
		if time.Now().After(deadline) {
			t.Fatalf("%s's sync never delivered %v (saw %v)", u.ID, missing(), IDs(seen))
		}
		var out struct {
			NextBatch string `json:"next_batch"`
			Rooms     struct {
				Join map[string]SyncRoom `json:"join"`
			} `json:"rooms"`
		}
		path := "/sync?timeout=2000&filter=" + filter
		if since != "" {
			path += "&since=" + url.QueryEscape(since)
		}
		u.MustDo(t, "GET", path, nil, &out)
		room := out.Rooms.Join[roomID]
		seen = append(append(seen, room.State.Events...), room.Timeline.Events...)
		since = out.NextBatch
	}
	return seen
}
