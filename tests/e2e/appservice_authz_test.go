package e2e

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"

	"matrixhs/cmd/homeserver/server"
	"matrixhs/config"
)

// asURL adds an appservice's masquerading parameters to a URL.
func asURL(u string, params ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(params); i += 2 {
		q.Set(params[i], params[i+1])
	}
	if strings.Contains(u, "?") {
		return u + "&" + q.Encode()
	}
	return u + "?" + q.Encode()
}

// TestAppServiceAuthz: tokens, masquerading and exclusive namespaces.
func TestAppServiceAuthz(t *testing.T) {
	s, b := startBridged(t)
	tok := b.reg.AppToken
	whoami := v3(s, "account", "whoami")

	// The as_token acts as the sender; header or deprecated query parameter.
	r := do(t, "GET", whoami, tok, nil).want(t, 200, "")
	if r.Body["user_id"] != "@bridgebot:hs.test" {
		t.Fatalf("whoami as the appservice = %v", r.Body)
	}
	do(t, "GET", asURL(whoami, "access_token", tok), "", nil).want(t, 200, "")
	do(t, "GET", whoami, tok+"x", nil).want(t, 401, "M_UNKNOWN_TOKEN")
	// The hs_token is no credential here.
	do(t, "GET", whoami, b.reg.ServerToken, nil).want(t, 401, "M_UNKNOWN_TOKEN")

	// Masquerading: only registered users of the namespace.
	do(t, "GET", asURL(whoami, "user_id", "@bridge_nobody:hs.test"), tok, nil).want(t, 403, "M_FORBIDDEN")
	newUser(t, s, "alice")
	do(t, "GET", asURL(whoami, "user_id", "@alice:hs.test"), tok, nil).want(t, 403, "M_FORBIDDEN")
	do(t, "POST", v3(s, "register"), tok, map[string]any{"type": "m.login.application_service", "username": "bridge_one"}).want(t, 200, "")
	r = do(t, "GET", asURL(whoami, "user_id", "@bridge_one:hs.test"), tok, nil).want(t, 200, "")
	if r.Body["user_id"] != "@bridge_one:hs.test" {
		t.Fatalf("masqueraded whoami = %v", r.Body)
	}
	// A device that does not exist cannot be masqueraded as.
	do(t, "GET", asURL(whoami, "user_id", "@bridge_one:hs.test", "org.matrix.msc3202.device_id", "NODEV"), tok, nil).want(t, 400, "M_FORBIDDEN")
	do(t, "GET", asURL(whoami, "user_id", "@bridge_one:hs.test", "device_id", "NODEV"), tok, nil).want(t, 400, "M_FORBIDDEN")
	// MSC4190: the appservice creates the device, then acts as it.
	do(t, "PUT", asURL(v3(s, "devices", "DEV1"), "user_id", "@bridge_one:hs.test"), tok, map[string]any{"display_name": "Bridge"}).want(t, 201, "")
	do(t, "PUT", asURL(v3(s, "devices", "DEV1"), "user_id", "@bridge_one:hs.test"), tok, map[string]any{"display_name": "Bridge 1"}).want(t, 200, "")
	// ... and deletes devices without user-interactive auth.
	do(t, "PUT", asURL(v3(s, "devices", "DEV2"), "user_id", "@bridge_one:hs.test"), tok, map[string]any{}).want(t, 201, "")
	do(t, "DELETE", asURL(v3(s, "devices", "DEV2"), "user_id", "@bridge_one:hs.test"), tok, map[string]any{}).want(t, 200, "")
	do(t, "PUT", asURL(v3(s, "devices", "DEV3"), "user_id", "@bridge_one:hs.test"), tok, map[string]any{}).want(t, 201, "")
	do(t, "POST", asURL(v3(s, "delete_devices"), "user_id", "@bridge_one:hs.test"), tok, map[string]any{"devices": []string{"DEV3"}}).want(t, 200, "")
	devs := do(t, "GET", asURL(v3(s, "devices"), "user_id", "@bridge_one:hs.test"), tok, nil).want(t, 200, "")
	if list, _ := devs.Body["devices"].([]any); len(list) != 1 {
		t.Fatalf("devices after deleting two = %s", devs.Raw)
	}
	r = do(t, "GET", asURL(whoami, "user_id", "@bridge_one:hs.test", "org.matrix.msc3202.device_id", "DEV1"), tok, nil).want(t, 200, "")
	if r.Body["device_id"] != "DEV1" {
		t.Fatalf("masqueraded device = %v", r.Body)
	}
	// A user cannot create devices that way.
	alice := login(t, s, "alice", testPassword, "", "")
	do(t, "PUT", v3(s, "devices", "NEWDEV"), alice.AccessToken, map[string]any{}).want(t, 404, "M_NOT_FOUND")

	// Appservice registration: its namespace only, with the type.
	reg := func(body map[string]any) *resp { return do(t, "POST", v3(s, "register"), tok, body) }
	reg(map[string]any{"type": "m.login.application_service", "username": "alice2"}).want(t, 400, "M_EXCLUSIVE")
	reg(map[string]any{"type": "m.login.application_service", "username": "bridge_one"}).want(t, 400, "M_USER_IN_USE")
	reg(map[string]any{"username": "bridge_two", "password": testPassword}).want(t, 400, "M_UNKNOWN")
	do(t, "POST", v3(s, "register"), alice.AccessToken, map[string]any{"type": "m.login.application_service", "username": "bridge_3"}).want(t, 401, "M_UNKNOWN_TOKEN")
	// Everyone else is kept out of the exclusive namespace.
	do(t, "POST", v3(s, "register"), "", map[string]any{"username": "bridge_evil", "password": testPassword, "auth": map[string]any{"type": "m.login.dummy"}}).want(t, 400, "M_EXCLUSIVE")
	do(t, "GET", v3(s, "register", "available")+"?username=bridge_evil", "", nil).want(t, 400, "M_EXCLUSIVE")
	do(t, "GET", v3(s, "register", "available")+"?username=bridgebot", "", nil).want(t, 400, "M_USER_IN_USE")
	room, err := alice.CreateRoom(ctxT(t), &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	do(t, "PUT", v3(s, "directory", "room", "#bridge_x:hs.test"), alice.AccessToken, map[string]any{"room_id": room.RoomID}).want(t, 400, "M_EXCLUSIVE")
	do(t, "POST", v3(s, "createRoom"), alice.AccessToken, map[string]any{"room_alias_name": "bridge_y"}).want(t, 400, "M_EXCLUSIVE")

	// Login as a namespace user: refused to MSC4190 appservices (they
	// create devices themselves).
	do(t, "POST", v3(s, "login"), tok, map[string]any{"type": "m.login.application_service",
		"identifier": map[string]any{"type": "m.id.user", "user": "bridge_one"}}).want(t, 400, "M_APPSERVICE_LOGIN_UNSUPPORTED")

	// Ping: only the appservice itself.
	do(t, "POST", cs(s, "v1", "appservice", "bridge", "ping"), alice.AccessToken, map[string]any{}).want(t, 403, "M_FORBIDDEN")
	do(t, "POST", cs(s, "v1", "appservice", "other", "ping"), tok, map[string]any{}).want(t, 403, "M_FORBIDDEN")
	r = do(t, "POST", cs(s, "v1", "appservice", "bridge", "ping"), tok, map[string]any{"transaction_id": "t1"}).want(t, 200, "")
	if _, ok := r.Body["duration_ms"]; !ok {
		t.Fatalf("ping = %v", r.Body)
	}
	// Directory publishing is for appservices.
	do(t, "PUT", v3(s, "directory", "list", "appservice", "net", string(room.RoomID)), alice.AccessToken, map[string]any{"visibility": "public"}).want(t, 403, "M_FORBIDDEN")
	do(t, "PUT", v3(s, "directory", "list", "appservice", "net", string(room.RoomID)), tok, map[string]any{"visibility": "maybe"}).want(t, 400, "M_INVALID_PARAM")
	do(t, "PUT", v3(s, "directory", "list", "appservice", "net", "!nope:hs.test"), tok, map[string]any{"visibility": "public"}).want(t, 404, "M_NOT_FOUND")
	do(t, "PUT", v3(s, "directory", "list", "appservice", "net", string(room.RoomID)), tok, map[string]any{"visibility": "public"}).want(t, 200, "")
	pr := do(t, "GET", v3(s, "publicRooms"), "", nil).want(t, 200, "")
	if !strings.Contains(string(pr.Raw), string(room.RoomID)) {
		t.Fatalf("published room not listed: %s", pr.Raw)
	}
}

// TestAppServiceLoginWithoutMSC4190: an appservice logs its users in.
func TestAppServiceLogin(t *testing.T) {
	b := newBridge(t, "legacy")
	b.reg.MSC4190 = false
	s := startWithAppServices(t, fastAppServices, b.reg)
	b.attach(s)
	tok := b.reg.AppToken
	do(t, "POST", v3(s, "register"), tok, map[string]any{"type": "m.login.application_service", "username": "legacy_a"}).want(t, 200, "")
	login := func(user string) *resp {
		return do(t, "POST", v3(s, "login"), tok, map[string]any{"type": "m.login.application_service",
			"identifier": map[string]any{"type": "m.id.user", "user": user}, "device_id": "LEGDEV"})
	}
	r := login("legacy_a").want(t, 200, "")
	if r.Body["user_id"] != "@legacy_a:hs.test" || r.Body["device_id"] != "LEGDEV" {
		t.Fatalf("login = %v", r.Body)
	}
	wantTokenValid(t, s, r.Body["access_token"].(string), "@legacy_a:hs.test", "LEGDEV")
	newUser(t, s, "carol")
	login("carol").want(t, 403, "M_FORBIDDEN")
	login("legacy_nobody").want(t, 403, "M_FORBIDDEN")
	do(t, "POST", v3(s, "login"), "", map[string]any{"type": "m.login.application_service",
		"identifier": map[string]any{"type": "m.id.user", "user": "legacy_a"}}).want(t, 401, "M_MISSING_TOKEN")
}

// TestAppServiceBadRegistrationStopsStart: a bad registration file stops
// the server with a message naming the file.
func TestAppServiceBadRegistrationStopsStart(t *testing.T) {
	for name, body := range map[string]string{
		"bad regex": "id: x\nurl: http://127.0.0.1:1\nas_token: a\nhs_token: h\nsender_localpart: xbot\nnamespaces:\n  users:\n    - regex: '@x_(.*'\n      exclusive: true\n",
		"not yaml":  "id: [\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, "broken.yaml", body)
			writeFile(t, dir, "homeserver.yaml", "app_service_config_files: [broken.yaml]\n")
			env := map[string]string{config.EnvDataDir: dir, config.EnvListen: "127.0.0.1:0", config.EnvServerName: "hs.test"}
			cfg, _, err := config.Load(func(k string) string { return env[k] })
			if err != nil {
				t.Fatal(err)
			}
			srv, err := server.New(context.Background(), cfg, server.Options{LogOutput: discard{}})
			if err == nil {
				srv.Shutdown(context.Background())
				t.Fatal("server started with a bad registration")
			}
			if !strings.Contains(err.Error(), "broken.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestAppServiceDownAndHanging: a bridge that answers 500 or hangs gets one
// transaction at a time, retried with backoff; the admin view shows it
// down, then up again, and nothing is lost.
func TestAppServiceDownAndHanging(t *testing.T) {
	b := newBridge(t, "bridge")
	opts := fastAppServices
	opts.AppServices.RequestTimeout = 100 * time.Millisecond
	s := startWithAppServices(t, opts, b.reg)
	b.attach(s)
	ctx := ctxT(t)
	admin := newAdmin(t, s, "root")
	alice := newUser(t, s, "alice")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
	if err != nil {
		t.Fatal(err)
	}
	do(t, "POST", v3(s, "register"), b.reg.AppToken, map[string]any{"type": "m.login.application_service", "username": "bridge_d"}).want(t, 200, "")
	ghost := b.as.Intent("@bridge_d:hs.test")
	if _, err := alice.InviteUser(ctx, room.RoomID, &mautrix.ReqInviteUser{UserID: ghost.UserID}); err != nil {
		t.Fatal(err)
	}
	if _, err := ghost.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	statusOf := func() map[string]any {
		r := do(t, "GET", s.URL()+"/_synapse/admin/v1/appservices", admin.AccessToken, nil).want(t, 200, "")
		list, _ := r.Body["appservices"].([]any)
		if len(list) != 1 {
			t.Fatalf("admin view = %s", r.Raw)
		}
		return list[0].(map[string]any)
	}
	do(t, "GET", s.URL()+"/_synapse/admin/v1/appservices", alice.AccessToken, nil).want(t, 403, "M_FORBIDDEN")

	b.failWith.Store(500)
	var want []string
	for i := range 3 {
		r, err := alice.SendText(ctx, room.RoomID, "down "+string(rune('a'+i)))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, string(r.EventID))
	}
	b.waitUntil("several failed attempts", func() bool { return failedAttempts(b) >= 3 })
	waitFor(t, "the admin view to show the bridge down", func() bool { return statusOf()["state"] == "down" })
	st := statusOf()
	if st["txn_in_flight"] == nil || st["last_error"] == "" {
		t.Fatalf("down status = %v", st)
	}

	// Hanging: requests time out and are retried, one at a time.
	hang := make(chan struct{})
	b.hang.Store(&hang)
	b.failWith.Store(0)
	b.waitUntil("timed-out attempts", func() bool { return failedAttempts(b) >= 5 })
	b.hang.Store(nil)
	close(hang)
	b.waitUntil("every message", func() bool { return b.hasEventLocked(want[len(want)-1]) })
	wantUnique(t, b.eventIDs())
	if got := b.eventIDs(); !isSubsequence(want, got) {
		t.Fatalf("got %v, want %v", got, want)
	}
	waitFor(t, "the admin view to show the bridge up", func() bool { return statusOf()["state"] == "up" })
}

func writeFile(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}
