package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"maunium.net/go/mautrix"
)

// TestAppServiceReload: reloading the registrations (what SIGHUP does)
// adds an appservice, which then gets events, and drops one, whose token
// stops working; a bad file keeps the registrations in force.
func TestAppServiceReload(t *testing.T) {
	old := newBridge(t, "old")
	s := startWithAppServices(t, fastAppServices, old.reg)
	old.attach(s)
	ctx := ctxT(t)
	added := newBridge(t, "added")
	writeAppServiceConfig(t, s.DataDir, added.reg)
	paths := []string{filepath.Join(s.DataDir, "added.yaml")}

	// A bad file: refused, the old registration stays.
	writeFile(t, s.DataDir, "broken.yaml", "id: [\n")
	err := s.AppServices.Reload(context.Background(), append(paths, filepath.Join(s.DataDir, "broken.yaml")))
	if err == nil || !strings.Contains(err.Error(), "broken.yaml") {
		t.Fatalf("reload with a bad file: %v", err)
	}
	do(t, "GET", v3(s, "account", "whoami"), old.reg.AppToken, nil).want(t, 200, "")

	if err := s.AppServices.Reload(context.Background(), paths); err != nil {
		t.Fatal(err)
	}
	added.attach(s)
	do(t, "GET", v3(s, "account", "whoami"), old.reg.AppToken, nil).want(t, 401, "M_UNKNOWN_TOKEN")
	r := do(t, "GET", v3(s, "account", "whoami"), added.reg.AppToken, nil).want(t, 200, "")
	if r.Body["user_id"] != "@addedbot:hs.test" {
		t.Fatalf("whoami = %v", r.Body)
	}
	alice := newUser(t, s, "alice")
	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := added.as.BotIntent().JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	sent, err := alice.SendText(ctx, room.RoomID, "to the new bridge")
	if err != nil {
		t.Fatal(err)
	}
	added.waitUntil("the message at the added bridge", func() bool { return added.hasEventLocked(string(sent.EventID)) })
}
