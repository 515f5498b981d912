package e2e

import (
	"fmt"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// TestRoomEveryVersion: every stable room version supports the everyday
// flow: create, invite, join, send, redact, read back.
func TestRoomEveryVersion(t *testing.T) {
	s := start(t, nil)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	for v := 1; v <= 12; v++ {
		version := fmt.Sprint(v)
		t.Run("v"+version, func(t *testing.T) {
			room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", RoomVersion: id.RoomVersion(version), Name: "v" + version})
			if c := stateContent(t, s, alice.AccessToken, room, "m.room.create", ""); c["room_version"] != version {
				t.Fatalf("create content = %v", c)
			}
			if _, err := alice.InviteUser(ctxT(t), room, &mautrix.ReqInviteUser{UserID: bob.UserID}); err != nil {
				t.Fatal(err)
			}
			join(t, bob, room)
			first := text(t, bob, room, "hello v"+version)
			text(t, alice, room, "hi back")
			if _, err := bob.RedactEvent(ctxT(t), room, id.EventID(first)); err != nil {
				t.Fatal(err)
			}
			got := eventOK(t, s, alice.AccessToken, room, first)
			if len(got.Content) != 0 {
				t.Fatalf("redacted event still has content %v", got.Content)
			}
			bodies := messageBodies(pageAll(t, s, alice.AccessToken, room, "b", 50))
			// Newest first: alice's reply, then bob's redacted message (no body).
			if fmt.Sprintf("%q", bodies) != `["hi back" ""]` {
				t.Fatalf("messages = %q", bodies)
			}
		})
	}
}
