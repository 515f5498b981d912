package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"matrixhs/cmd/homeserver/server"
	"matrixhs/internal/pushgateway"
	"matrixhs/tests/testserver"
)

// pushWait bounds every wait for the fake gateway.
const pushWait = 15 * time.Second

// startPush starts a server whose push retries back off in milliseconds and
// that may reach the fake gateways on 127.0.0.1 (ip_range_whitelist).
func startPush(t *testing.T) *testserver.Server {
	t.Helper()
	return startPushWithConfig(t, "push: {ip_range_whitelist: [\"127.0.0.1/32\"]}\n")
}

// startPushWithConfig is startPush with the given homeserver.yaml.
func startPushWithConfig(t *testing.T, yaml string) *testserver.Server {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "homeserver.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return testserver.StartInWith(t, dir, nil, server.Options{PushGateway: pushgateway.Options{
		InitialBackoff: 10 * time.Millisecond, MaxBackoff: 80 * time.Millisecond,
	}})
}

// gwNotification is a push gateway request as the fake gateway decodes it.
type gwNotification struct {
	Raw          map[string]any // the notification object, to check absent fields
	EventID      string         `json:"event_id"`
	RoomID       string         `json:"room_id"`
	Type         string         `json:"type"`
	Sender       string         `json:"sender"`
	SenderName   string         `json:"sender_display_name"`
	RoomName     string         `json:"room_name"`
	RoomAlias    string         `json:"room_alias"`
	Prio         string         `json:"prio"`
	Content      map[string]any `json:"content"`
	Counts       map[string]int `json:"counts"`
	UserIsTarget *bool          `json:"user_is_target"`
	Devices      []struct {
		AppID     string         `json:"app_id"`
		PushKey   string         `json:"pushkey"`
		PushKeyTS int64          `json:"pushkey_ts"`
		Data      map[string]any `json:"data"`
		Tweaks    map[string]any `json:"tweaks"`
	} `json:"devices"`
}

func (n gwNotification) pushkey() string {
	if len(n.Devices) != 1 {
		return ""
	}
	return n.Devices[0].PushKey
}

// gwAction is how the fake gateway answers one request.
type gwAction struct {
	status int    // 0: 200
	body   string // "": {"rejected":[]}
	hangUp bool   // close the connection without answering
}

// fakeGateway is a push gateway on loopback. Every request is counted; the
// ones it accepts (2xx) are queued on accepted, in arrival order.
type fakeGateway struct {
	*httptest.Server
	t        *testing.T
	accepted chan gwNotification
	tried    chan string // the event ID of every request (dropped when full)

	mu       sync.Mutex
	answer   func(attempt int, n gwNotification) gwAction
	attempts []string // event IDs, in arrival order
}

func newFakeGateway(t *testing.T) *fakeGateway {
	g := &fakeGateway{t: t, accepted: make(chan gwNotification, 100), tried: make(chan string, 100)}
	g.Server = httptest.NewServer(http.HandlerFunc(g.serve))
	t.Cleanup(g.Close)
	return g
}

func (g *fakeGateway) url() string { return g.URL + "/_matrix/push/v1/notify" }

func (g *fakeGateway) setAnswer(f func(attempt int, n gwNotification) gwAction) {
	g.mu.Lock()
	g.answer = f
	g.mu.Unlock()
}

func (g *fakeGateway) serve(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Notification json.RawMessage `json:"notification"`
	}
	var n gwNotification
	if r.Method != http.MethodPost || r.URL.Path != "/_matrix/push/v1/notify" || r.Header.Get("Content-Type") != "application/json" ||
		json.NewDecoder(r.Body).Decode(&body) != nil || json.Unmarshal(body.Notification, &n) != nil ||
		json.Unmarshal(body.Notification, &n.Raw) != nil {
		g.t.Errorf("gateway got a malformed request: %s %s", r.Method, r.URL)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	g.mu.Lock()
	attempt := len(g.attempts)
	g.attempts = append(g.attempts, n.EventID)
	act := gwAction{}
	if g.answer != nil {
		act = g.answer(attempt, n)
	}
	g.mu.Unlock()
	select {
	case g.tried <- n.EventID:
	default:
	}
	if act.hangUp {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			g.t.Errorf("hijack: %v", err)
			return
		}
		conn.Close()
		return
	}
	if act.status == 0 {
		act.status = http.StatusOK
	}
	if act.body == "" {
		act.body = `{"rejected":[]}`
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(act.status)
	w.Write([]byte(act.body))
	if act.status/100 == 2 {
		g.accepted <- n
	}
}

// attemptsFor counts the requests made for an event.
func (g *fakeGateway) attemptsFor(eventID string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, e := range g.attempts {
		if e == eventID {
			n++
		}
	}
	return n
}

// next waits for the next accepted notification.
func (g *fakeGateway) next(t *testing.T) gwNotification {
	t.Helper()
	select {
	case n := <-g.accepted:
		return n
	case <-time.After(pushWait):
		t.Fatalf("no push notification within %s", pushWait)
		return gwNotification{}
	}
}

// nextN waits for n accepted notifications.
func (g *fakeGateway) nextN(t *testing.T, n int) []gwNotification {
	t.Helper()
	out := make([]gwNotification, 0, n)
	for range n {
		out = append(out, g.next(t))
	}
	return out
}

// none asserts nothing more was accepted.
func (g *fakeGateway) none(t *testing.T) {
	t.Helper()
	select {
	case n := <-g.accepted:
		t.Fatalf("unexpected push notification for %s (%s)", n.EventID, n.pushkey())
	default:
	}
}

// pusher is a POST /pushers/set body.
func pusher(url, appID, pushkey, format string) map[string]any {
	data := map[string]any{"url": url}
	if format != "" {
		data["format"] = format
	}
	return map[string]any{
		"kind": "http", "app_id": appID, "pushkey": pushkey, "app_display_name": "Test App",
		"device_display_name": "Test Phone", "profile_tag": "tag", "lang": "en", "data": data,
	}
}

func setPusher(t *testing.T, s *testserver.Server, token string, body map[string]any) *resp {
	t.Helper()
	return do(t, "POST", v3(s, "pushers", "set"), token, body)
}

// listPushers returns "app_id/pushkey" of the user's pushers, sorted.
func listPushers(t *testing.T, s *testserver.Server, token string) []string {
	t.Helper()
	r := do(t, "GET", v3(s, "pushers"), token, nil).want(t, 200, "")
	var body struct {
		Pushers []struct {
			AppID   string `json:"app_id"`
			PushKey string `json:"pushkey"`
		} `json:"pushers"`
	}
	decodeInto(t, r.Raw, &body)
	out := []string{}
	for _, p := range body.Pushers {
		out = append(out, p.AppID+"/"+p.PushKey)
	}
	sort.Strings(out)
	return out
}

// waitPushers polls GET /pushers until it lists want (with a deadline).
func waitPushers(t *testing.T, s *testserver.Server, token string, want []string) {
	t.Helper()
	deadline := time.Now().Add(pushWait)
	for {
		got := listPushers(t, s, token)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pushers = %v, want %v", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pushRoom creates a named room with an alias, with alice and bob joined.
func pushRoom(t *testing.T, alice, bob *mautrix.Client) id.RoomID {
	t.Helper()
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Lounge", RoomAliasName: "lounge"})
	join(t, bob, room)
	return room
}

// TestPusherDeliversNotifications: one notification per notifying event,
// in both formats, with counts and tweaks; notices and the user's own
// messages send nothing.
func TestPusherDeliversNotifications(t *testing.T) {
	s := startPush(t)
	gw := newFakeGateway(t)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	room := pushRoom(t, alice, bob)
	setPusher(t, s, bob.AccessToken, pusher(gw.url(), "org.example.full", "full-key", "")).want(t, 200, "")
	setPusher(t, s, bob.AccessToken, pusher(gw.url(), "org.example.short", "short-key", "event_id_only")).want(t, 200, "")
	setAt := time.Now().Unix()

	// byKey waits for the notifications of one event to both pushers.
	byKey := func(eventID string) (full, short gwNotification) {
		t.Helper()
		for _, n := range gw.nextN(t, 2) {
			if n.EventID != eventID {
				t.Fatalf("push for %s, want %s: %+v", n.EventID, eventID, n.Raw)
			}
			switch n.pushkey() {
			case "full-key":
				full = n
			case "short-key":
				short = n
			default:
				t.Fatalf("push with devices %+v", n.Devices)
			}
		}
		if full.EventID == "" || short.EventID == "" {
			t.Fatalf("one pusher got %s twice", eventID)
		}
		return full, short
	}

	hello := text(t, alice, room, "hello")
	full, short := byKey(hello)
	if full.RoomID != string(room) || full.Type != "m.room.message" || full.Sender != string(alice.UserID) ||
		full.SenderName != "alice" || full.RoomName != "Lounge" || full.RoomAlias != "#lounge:hs.test" || full.Prio != "high" ||
		full.Content["body"] != "hello" || full.Content["msgtype"] != "m.text" || full.Counts["unread"] != 1 || full.UserIsTarget != nil {
		t.Fatalf("full notification = %+v", full.Raw)
	}
	d := full.Devices[0]
	if d.AppID != "org.example.full" || d.PushKeyTS < setAt-60 || d.PushKeyTS > setAt+60 || len(d.Data) != 0 ||
		d.Tweaks["sound"] != "default" || d.Tweaks["highlight"] != nil {
		t.Fatalf("full device = %+v", d)
	}
	// event_id_only: the event's ID and room, priority, counts and devices only.
	keys := []string{}
	for k := range short.Raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if !slices.Equal(keys, []string{"counts", "devices", "event_id", "prio", "room_id"}) || short.RoomID != string(room) ||
		short.Counts["unread"] != 1 || short.Devices[0].AppID != "org.example.short" ||
		fmt.Sprint(short.Devices[0].Data) != "map[format:event_id_only]" {
		t.Fatalf("event_id_only notification = %+v", short.Raw)
	}

	// A mention highlights.
	mention, err := alice.SendMessageEvent(ctxT(t), room, event.EventMessage, map[string]any{
		"msgtype": "m.text", "body": "hey bob", "m.mentions": map[string]any{"user_ids": []string{string(bob.UserID)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	full, short = byKey(string(mention.EventID))
	if full.Devices[0].Tweaks["highlight"] != true || full.Counts["unread"] != 2 || short.Counts["unread"] != 2 || full.Prio != "high" {
		t.Fatalf("mention notification = %+v", full.Raw)
	}

	// A notice (suppressed by the default rules) and bob's own message
	// notify nobody; the next message is the next notification.
	if _, err := alice.SendMessageEvent(ctxT(t), room, event.EventMessage, map[string]any{"msgtype": "m.notice", "body": "bot"}); err != nil {
		t.Fatal(err)
	}
	text(t, bob, room, "my own words")
	after := text(t, alice, room, "after")
	full, _ = byKey(after)
	if full.Counts["unread"] != 3 || full.Content["body"] != "after" {
		t.Fatalf("notification after the notice = %+v", full.Raw)
	}

	// Once bob has read, the badge restarts from the new events.
	if err := bob.SendReceipt(ctxT(t), room, id.EventID(after), event.ReceiptTypeRead, nil); err != nil {
		t.Fatal(err)
	}
	again := text(t, alice, room, "again")
	full, short = byKey(again)
	if full.Counts["unread"] != 1 || short.Counts["unread"] != 1 {
		t.Fatalf("counts after the receipt = %v / %v, want 1", full.Counts, short.Counts)
	}
	gw.none(t)
	for _, e := range []string{hello, string(mention.EventID), after, again} {
		if n := gw.attemptsFor(e); n != 2 {
			t.Fatalf("%d requests for %s, want 2 (one per pusher)", n, e)
		}
	}
}

// TestPusherRejectedPushkeyRemoved: a pushkey the gateway rejects loses its
// pusher; the user's other pushers stay.
func TestPusherRejectedPushkeyRemoved(t *testing.T) {
	s := startPush(t)
	gw := newFakeGateway(t)
	gw.setAnswer(func(_ int, n gwNotification) gwAction {
		if n.pushkey() == "dead-key" {
			return gwAction{body: `{"rejected":["dead-key"]}`}
		}
		return gwAction{}
	})
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	room := pushRoom(t, alice, bob)
	setPusher(t, s, bob.AccessToken, pusher(gw.url(), "org.example", "dead-key", "")).want(t, 200, "")
	setPusher(t, s, bob.AccessToken, pusher(gw.url(), "org.example", "live-key", "")).want(t, 200, "")
	if got := listPushers(t, s, bob.AccessToken); !slices.Equal(got, []string{"org.example/dead-key", "org.example/live-key"}) {
		t.Fatalf("pushers = %v", got)
	}
	first := text(t, alice, room, "first")
	gw.nextN(t, 2)
	waitPushers(t, s, bob.AccessToken, []string{"org.example/live-key"})

	second := text(t, alice, room, "second")
	n := gw.next(t)
	if n.EventID != second || n.pushkey() != "live-key" {
		t.Fatalf("after the rejection: push for %s to %s", n.EventID, n.pushkey())
	}
	gw.none(t)
	if gw.attemptsFor(first) != 2 || gw.attemptsFor(second) != 1 {
		t.Fatalf("attempts: first %d (want 2), second %d (want 1)", gw.attemptsFor(first), gw.attemptsFor(second))
	}
}

// TestPusherGatewayDownDelaysNotLoses: while the gateway fails (503, or
// hangs up) notifications wait; once it answers they all arrive, in order,
// each accepted once.
func TestPusherGatewayDownDelaysNotLoses(t *testing.T) {
	for _, mode := range []string{"503", "hangup"} {
		t.Run(mode, func(t *testing.T) {
			s := startPush(t)
			gw := newFakeGateway(t)
			const failures = 4
			gw.setAnswer(func(attempt int, _ gwNotification) gwAction {
				switch {
				case attempt >= failures:
					return gwAction{}
				case mode == "503":
					return gwAction{status: http.StatusServiceUnavailable, body: `{"error":"down"}`}
				default:
					return gwAction{hangUp: true}
				}
			})
			alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
			room := pushRoom(t, alice, bob)
			setPusher(t, s, bob.AccessToken, pusher(gw.url(), "org.example", "key", "")).want(t, 200, "")
			var sent []string
			for i := range 3 {
				sent = append(sent, text(t, alice, room, fmt.Sprintf("m%d", i+1)))
			}
			got := gw.nextN(t, 3)
			for i, n := range got {
				if n.EventID != sent[i] || n.Counts["unread"] != i+1 {
					t.Fatalf("notification %d = %s with counts %v; want %s with unread %d", i, n.EventID, n.Counts, sent[i], i+1)
				}
			}
			if a := gw.attemptsFor(sent[0]); a != failures+1 {
				t.Fatalf("%d requests for the first message, want %d", a, failures+1)
			}
			// Nothing is sent twice once accepted.
			last := text(t, alice, room, "m4")
			if n := gw.next(t); n.EventID != last {
				t.Fatalf("push for %s, want %s", n.EventID, last)
			}
			gw.none(t)
		})
	}
}

// TestPusherPendingSurvivesRestart: a notification the gateway has not taken
// when the server stops is sent after the next start.
func TestPusherPendingSurvivesRestart(t *testing.T) {
	s := startPush(t)
	gw := newFakeGateway(t)
	var mu sync.Mutex
	down := true
	gw.setAnswer(func(int, gwNotification) gwAction {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return gwAction{status: http.StatusBadGateway}
		}
		return gwAction{}
	})
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	room := pushRoom(t, alice, bob)
	setPusher(t, s, bob.AccessToken, pusher(gw.url(), "org.example", "key", "")).want(t, 200, "")
	pending := text(t, alice, room, "while down")
	select {
	case <-gw.tried:
	case <-time.After(pushWait):
		t.Fatal("the gateway was never tried")
	}
	s.Stop()
	mu.Lock()
	down = false
	mu.Unlock()
	s.Restart()
	if n := gw.next(t); n.EventID != pending || n.Counts["unread"] != 1 {
		t.Fatalf("after the restart: push for %s with counts %v, want %s", n.EventID, n.Counts, pending)
	}
	gw.none(t)
}

// TestPusherClientErrorDropsNotification: a 4xx other than 429 drops that
// notification (no retry) and delivery goes on.
func TestPusherClientErrorDropsNotification(t *testing.T) {
	s := startPush(t)
	gw := newFakeGateway(t)
	gw.setAnswer(func(attempt int, _ gwNotification) gwAction {
		if attempt == 0 {
			return gwAction{status: http.StatusBadRequest, body: `{"error":"bad"}`}
		}
		return gwAction{}
	})
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	room := pushRoom(t, alice, bob)
	setPusher(t, s, bob.AccessToken, pusher(gw.url(), "org.example", "key", "")).want(t, 200, "")
	first := text(t, alice, room, "refused")
	second := text(t, alice, room, "taken")
	if n := gw.next(t); n.EventID != second {
		t.Fatalf("push for %s, want %s", n.EventID, second)
	}
	if a := gw.attemptsFor(first); a != 1 {
		t.Fatalf("the refused notification was tried %d times", a)
	}
	gw.none(t)
}

// TestPusherDeviceDeletedRemovesPusher: a pusher goes with the device whose
// token set it.
func TestPusherDeviceDeletedRemovesPusher(t *testing.T) {
	s := startPush(t)
	gw := newFakeGateway(t)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	phone := login(t, s, "bob", testPassword, "PHONE", "")
	room := pushRoom(t, alice, bob)
	setPusher(t, s, phone.AccessToken, pusher(gw.url(), "org.example", "phone-key", "")).want(t, 200, "")
	setPusher(t, s, bob.AccessToken, pusher(gw.url(), "org.example", "laptop-key", "")).want(t, 200, "")
	do(t, "POST", v3(s, "logout"), phone.AccessToken, map[string]any{}).want(t, 200, "")
	if got := listPushers(t, s, bob.AccessToken); !slices.Equal(got, []string{"org.example/laptop-key"}) {
		t.Fatalf("pushers after the phone logged out = %v", got)
	}
	text(t, alice, room, "hi")
	if n := gw.next(t); n.pushkey() != "laptop-key" {
		t.Fatalf("push to %s", n.pushkey())
	}
	gw.none(t)
	// The next notification proves the phone's pusher had no turn either.
	text(t, alice, room, "hi again")
	if n := gw.next(t); n.pushkey() != "laptop-key" {
		t.Fatalf("push to %s", n.pushkey())
	}
	gw.none(t)
}

// TestPusherSetValidation: POST /pushers/set errors, updates and deletion.
func TestPusherSetValidation(t *testing.T) {
	s := start(t, nil)
	bob := newUser(t, s, "bob")
	const url = "https://push.example.org/_matrix/push/v1/notify"
	with := func(mod func(m map[string]any)) map[string]any {
		m := pusher(url, "org.example", "key", "")
		mod(m)
		return m
	}
	long := make([]byte, 513)
	for i := range long {
		long[i] = 'k'
	}
	cases := []struct {
		name    string
		body    any
		status  int
		errcode string
	}{
		{"no kind", with(func(m map[string]any) { delete(m, "kind") }), 400, "M_MISSING_PARAM"},
		{"no app_id", with(func(m map[string]any) { delete(m, "app_id") }), 400, "M_MISSING_PARAM"},
		{"no pushkey", with(func(m map[string]any) { delete(m, "pushkey") }), 400, "M_MISSING_PARAM"},
		{"no lang", with(func(m map[string]any) { delete(m, "lang") }), 400, "M_MISSING_PARAM"},
		{"no data", with(func(m map[string]any) { delete(m, "data") }), 400, "M_MISSING_PARAM"},
		{"no app_display_name", with(func(m map[string]any) { delete(m, "app_display_name") }), 400, "M_MISSING_PARAM"},
		{"no device_display_name", with(func(m map[string]any) { delete(m, "device_display_name") }), 400, "M_MISSING_PARAM"},
		{"no url", with(func(m map[string]any) { m["data"] = map[string]any{"format": "event_id_only"} }), 400, "M_MISSING_PARAM"},
		{"delete without pushkey", map[string]any{"kind": nil, "app_id": "org.example"}, 400, "M_MISSING_PARAM"},
		{"email", with(func(m map[string]any) { m["kind"] = "email" }), 400, "M_INVALID_PARAM"},
		{"unknown kind", with(func(m map[string]any) { m["kind"] = "carrier-pigeon" }), 400, "M_INVALID_PARAM"},
		{"wrong path", with(func(m map[string]any) { m["data"] = map[string]any{"url": "https://push.example.org/notify"} }), 400, "M_INVALID_PARAM"},
		{"ftp url", with(func(m map[string]any) {
			m["data"] = map[string]any{"url": "ftp://push.example.org/_matrix/push/v1/notify"}
		}), 400, "M_INVALID_PARAM"},
		{"relative url", with(func(m map[string]any) { m["data"] = map[string]any{"url": "/_matrix/push/v1/notify"} }), 400, "M_INVALID_PARAM"},
		{"url not a string", with(func(m map[string]any) { m["data"] = map[string]any{"url": 5} }), 400, "M_INVALID_PARAM"},
		{"unknown format", with(func(m map[string]any) { m["data"] = map[string]any{"url": url, "format": "full"} }), 400, "M_INVALID_PARAM"},
		{"pushkey too long", with(func(m map[string]any) { m["pushkey"] = string(long) }), 400, "M_INVALID_PARAM"},
		{"app_id too long", with(func(m map[string]any) { m["app_id"] = string(long[:65]) }), 400, "M_INVALID_PARAM"},
		{"empty pushkey", with(func(m map[string]any) { m["pushkey"] = "" }), 400, "M_INVALID_PARAM"},
		{"data not an object", with(func(m map[string]any) { m["data"] = "x" }), 400, "M_BAD_JSON"},
		{"append not a boolean", with(func(m map[string]any) { m["append"] = "yes" }), 400, "M_BAD_JSON"},
		{"lang not a string", with(func(m map[string]any) { m["lang"] = 1 }), 400, "M_BAD_JSON"},
		{"not JSON", "{", 400, "M_NOT_JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := do(t, "POST", v3(s, "pushers", "set"), bob.AccessToken, c.body)
			r.want(t, c.status, c.errcode)
		})
	}
	if got := listPushers(t, s, bob.AccessToken); len(got) != 0 {
		t.Fatalf("invalid requests created pushers: %v", got)
	}
	do(t, "GET", v3(s, "pushers"), "", nil).want(t, 401, "M_MISSING_TOKEN")

	// A valid pusher, listed as set (plain http allowed, format kept).
	body := pusher("http://10.1.2.3:5000/_matrix/push/v1/notify", "org.example", "key", "event_id_only")
	setPusher(t, s, bob.AccessToken, body).want(t, 200, "")
	r := do(t, "GET", v3(s, "pushers"), bob.AccessToken, nil).want(t, 200, "")
	jsonEqual(t, r.Raw, map[string]any{"pushers": []any{body}})
	// Setting it again updates it in place.
	body["lang"] = "fr"
	setPusher(t, s, bob.AccessToken, body).want(t, 200, "")
	r = do(t, "GET", v3(s, "pushers"), bob.AccessToken, nil).want(t, 200, "")
	jsonEqual(t, r.Raw, map[string]any{"pushers": []any{body}})
	// kind null deletes it (deleting what is not there is fine too).
	del := map[string]any{"kind": nil, "app_id": "org.example", "pushkey": "key"}
	setPusher(t, s, bob.AccessToken, del).want(t, 200, "")
	setPusher(t, s, bob.AccessToken, del).want(t, 200, "")
	if got := listPushers(t, s, bob.AccessToken); len(got) != 0 {
		t.Fatalf("pushers after deletion: %v", got)
	}
	// The r0 prefix serves the same endpoints.
	do(t, "POST", cs(s, "r0", "pushers", "set"), bob.AccessToken, pusher(url, "org.example", "r0-key", "")).want(t, 200, "")
	do(t, "GET", cs(s, "r0", "pushers"), bob.AccessToken, nil).want(t, 200, "")
}

// TestPusherAppend: append false (the default) takes the app ID and
// pushkey over from other users; append true shares them.
func TestPusherAppend(t *testing.T) {
	s := start(t, nil)
	bob, carol := newUser(t, s, "bob"), newUser(t, s, "carol")
	const url = "https://push.example.org/_matrix/push/v1/notify"
	setPusher(t, s, bob.AccessToken, pusher(url, "org.example", "shared", "")).want(t, 200, "")
	setPusher(t, s, bob.AccessToken, pusher(url, "org.example", "bob-only", "")).want(t, 200, "")

	shared := pusher(url, "org.example", "shared", "")
	shared["append"] = true
	setPusher(t, s, carol.AccessToken, shared).want(t, 200, "")
	if got := listPushers(t, s, bob.AccessToken); !slices.Equal(got, []string{"org.example/bob-only", "org.example/shared"}) {
		t.Fatalf("append=true: bob's pushers = %v", got)
	}
	if got := listPushers(t, s, carol.AccessToken); !slices.Equal(got, []string{"org.example/shared"}) {
		t.Fatalf("carol's pushers = %v", got)
	}

	shared["append"] = false
	setPusher(t, s, carol.AccessToken, shared).want(t, 200, "")
	if got := listPushers(t, s, bob.AccessToken); !slices.Equal(got, []string{"org.example/bob-only"}) {
		t.Fatalf("append=false: bob's pushers = %v", got)
	}
	// Absent append means false.
	setPusher(t, s, bob.AccessToken, pusher(url, "org.example", "shared", "")).want(t, 200, "")
	if got := listPushers(t, s, carol.AccessToken); len(got) != 0 {
		t.Fatalf("absent append: carol's pushers = %v", got)
	}
	// Another app ID with the same pushkey is another pusher.
	setPusher(t, s, carol.AccessToken, pusher(url, "org.other", "shared", "")).want(t, 200, "")
	if got := listPushers(t, s, bob.AccessToken); !slices.Equal(got, []string{"org.example/bob-only", "org.example/shared"}) {
		t.Fatalf("another app removed bob's pushers: %v", got)
	}
}
