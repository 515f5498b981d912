// Package fuzz fuzzes the client API's request-body decoders in process:
// every POST and PUT route of the route table gets arbitrary bytes as its
// body, with a valid access token and plausible path parameters, and must
// never answer 5xx (a panic is a 500) nor a 4xx without a Matrix error body.
//
// go test ./tests/fuzz runs the seed corpus only (a few seconds); fuzz for
// longer with
//
//	go test -tags goolm ./tests/fuzz -run '^$' -fuzz FuzzRequestBodies -fuzztime 10m
package fuzz

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"matrixhs/clientapi"
	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/tests/testserver"
)

// seedBodies are sent to every route: empty, wrong JSON types, broken
// JSON, type confusion in fields many endpoints read, deep nesting.
var seedBodies = []string{
	``,
	`{}`,
	`null`,
	`[]`,
	`"text"`,
	`-1`,
	`{"a":`,
	`{"auth": {"type": "m.login.password", "password": 1}, "session": []}`,
	`{"body": 1, "msgtype": ["m.text"], "limit": "ten", "timeout": -5, "content": null}`,
	`{"device_keys": "x", "one_time_keys": {"signed_curve25519:A": 1}, "messages": {"@x:hs.test": {"*": 1}}}`,
	`{"filter": {"room": {"timeline": {"limit": 1e400}}}, "room_id": {}, "user_id": 12, "reason": true}`,
	`{"username": "\u0000", "password": "` + strings.Repeat("p", 2000) + `", "visibility": "x", "preset": 7}`,
	strings.Repeat(`{"a":`, 3000) + `1` + strings.Repeat(`}`, 3000),
	strings.Repeat(`[`, 20000),
}

// env holds the IDs the path parameters are filled with.
type env struct {
	s       *testserver.Server
	h       http.Handler
	userID  string
	device  string
	token   string
	room    string // the fuzzer's room for most routes
	scratch string // for membership changes and upgrades
	admin   string // for the admin API's room routes
	victim  string // the admin API's user
	event   string
	filter  string
	n       int
}

func FuzzRequestBodies(f *testing.F) {
	e := setup(f)
	routes := writeRoutes()
	for i := range routes {
		for _, b := range seedBodies {
			f.Add(uint16(i), []byte(b))
		}
	}
	f.Fuzz(func(t *testing.T, idx uint16, body []byte) {
		rt := routes[int(idx)%len(routes)]
		path := e.fill(rt.Path)
		rec := e.serve(rt.Method, path, body)
		checkResponse(t, rt, path, body, rec)
		var errBody struct {
			ErrCode string `json:"errcode"`
		}
		json.Unmarshal(rec.Body.Bytes(), &errBody)
		if rec.Code == http.StatusUnauthorized && errBody.ErrCode == "M_UNKNOWN_TOKEN" {
			// A logout (or a refresh) ended the session: carry on with a new one.
			e.login(t)
		}
	})
}

// checkResponse asserts no 5xx, and a Matrix error object on every 4xx (a
// UIA challenge may have flows instead of an errcode).
func checkResponse(t *testing.T, rt httputil.Route, path string, body []byte, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code >= 500 {
		t.Fatalf("%s %s (%s) answered %d to body %q: %s", rt.Method, rt.Path, path, rec.Code, trim(body), rec.Body.Bytes())
	}
	if rec.Code < 400 {
		return
	}
	var obj map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &obj); err != nil {
		t.Fatalf("%s %s answered %d without a JSON object to body %q: %q", rt.Method, rt.Path, rec.Code, trim(body), rec.Body.Bytes())
	}
	code, _ := obj["errcode"].(string)
	_, uia := obj["flows"]
	if !strings.HasPrefix(code, "M_") && !(rec.Code == http.StatusUnauthorized && uia) {
		t.Fatalf("%s %s answered %d without an errcode to body %q: %s", rt.Method, rt.Path, rec.Code, trim(body), rec.Body.Bytes())
	}
	if _, ok := obj["error"].(string); code != "" && !ok {
		t.Fatalf("%s %s: errcode %s without an error message: %s", rt.Method, rt.Path, code, rec.Body.Bytes())
	}
}

func trim(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}

// writeRoutes are the POST and PUT routes, each once (v3, not also r0).
func writeRoutes() []httputil.Route {
	var out []httputil.Route
	for _, rt := range clientapi.Routes() {
		if (rt.Method == http.MethodPost || rt.Method == http.MethodPut) && !strings.HasPrefix(rt.Path, "/_matrix/client/r0/") {
			out = append(out, rt)
		}
	}
	return out
}

func setup(f *testing.F) *env {
	s := testserver.Start(f, nil)
	e := &env{s: s, h: s.Handler(), userID: s.UserID("fuzzer"), victim: s.UserID("victim")}
	ctx := context.Background()
	login, err := s.Accounts.Register(ctx, accounts.Registration{Localpart: "fuzzer", Password: "fuzz-password", Admin: true})
	if err != nil {
		f.Fatal(err)
	}
	e.token, e.device = login.AccessToken, login.DeviceID
	if _, err := s.Accounts.Register(ctx, accounts.Registration{Localpart: "victim", Password: "pw", InhibitLogin: true}); err != nil {
		f.Fatal(err)
	}
	e.room = e.mustCreateRoom(f)
	e.scratch = e.mustCreateRoom(f)
	e.admin = e.mustCreateRoom(f)
	e.event = e.mustJSON(f, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(e.room)+"/send/m.room.message/setup",
		`{"msgtype":"m.text","body":"hello"}`)["event_id"].(string)
	e.filter = e.mustJSON(f, "POST", "/_matrix/client/v3/user/"+url.PathEscape(e.userID)+"/filter", `{}`)["filter_id"].(string)
	return e
}

func (e *env) serve(method, path string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e.token)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

func (e *env) mustJSON(f *testing.F, method, path, body string) map[string]any {
	rec := e.serve(method, path, []byte(body))
	var out map[string]any
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &out) != nil {
		f.Fatalf("setup %s %s: %d %s", method, path, rec.Code, rec.Body.Bytes())
	}
	return out
}

func (e *env) mustCreateRoom(f *testing.F) string {
	return e.mustJSON(f, "POST", "/_matrix/client/v3/createRoom", `{"preset":"public_chat"}`)["room_id"].(string)
}

func (e *env) login(t *testing.T) {
	l, err := e.s.Accounts.LoginUser(context.Background(), e.userID, accounts.NewDevice{})
	if err != nil {
		t.Fatalf("logging in again: %v", err)
	}
	e.token, e.device = l.AccessToken, l.DeviceID
}

var pathVar = regexp.MustCompile(`\{([A-Za-z]+)(?::([^}]*))?\}`)

// fill replaces a template's variables with plausible values.
func (e *env) fill(tpl string) string {
	e.n++
	admin := strings.HasPrefix(tpl, "/_synapse/admin/")
	return pathVar.ReplaceAllStringFunc(tpl, func(m string) string {
		sub := pathVar.FindStringSubmatch(m)
		name, re := sub[1], sub[2]
		if re != "" {
			// {field:displayname|avatar_url} and the like: the first choice.
			first, _, _ := strings.Cut(re, "|")
			return first
		}
		return url.PathEscape(e.value(tpl, name, admin))
	})
}

func (e *env) value(tpl, name string, admin bool) string {
	switch name {
	case "userId":
		if admin {
			return e.victim
		}
		return e.userID
	case "roomId", "roomIdOrAlias":
		switch {
		case admin:
			return e.admin
		case strings.Contains(tpl, "/leave") || strings.Contains(tpl, "/forget") || strings.Contains(tpl, "/upgrade") ||
			strings.Contains(tpl, "{action:") || strings.Contains(tpl, "/join") || strings.Contains(tpl, "/knock"):
			return e.scratch
		}
		return e.room
	case "eventId":
		return e.event
	case "deviceId":
		return e.device
	case "filterId":
		return e.filter
	case "txnId":
		return fmt.Sprintf("fuzz%d", e.n)
	case "eventType":
		if strings.Contains(tpl, "/state/") {
			return "m.room.topic"
		}
		return "m.room.message"
	case "stateKey":
		return ""
	case "type":
		return "org.example.fuzz"
	case "scope":
		return "global"
	case "kind":
		return "override"
	case "ruleId":
		return "org.example.rule"
	case "receiptType":
		return "m.read"
	case "roomAlias":
		return "#fuzz:" + e.s.Config.Server.Name
	case "version":
		return "1"
	case "sessionId":
		return "fuzzsession"
	case "tag":
		return "u.fuzz"
	case "token":
		return "fuzztoken"
	case "protocol":
		return "irc"
	case "delayId":
		return "fuzzdelay"
	}
	return "x"
}
