package fedrooms

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
	"matrixhs/tests/fedtest"
)

// TestPurgedRoomIsRejoinedCleanly: hs2's admin deletes and purges a room
// that lives on hs1 too. hs1 hears that hs2's member left (the purge waits
// for the leave to go out), hs2 keeps nothing of the room, and its user
// rejoins through hs1 as into a room hs2 never knew.
func TestPurgedRoomIsRejoinedCleanly(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	alice := newUser(t, hs1, "alice")
	bob := newUser(t, hs2, "bob")
	root := newUser(t, hs2, "root")
	if err := hs2.Accounts.SetAdmin(context.Background(), root.ID, true); err != nil {
		t.Fatal(err)
	}
	room := alice.createRoom(map[string]any{"preset": "public_chat", "name": "Shared"})
	alice.send(room, "hello")
	bob.mustJoin(room, "hs1")
	bob.send(room, "hi from hs2")

	req, err := http.NewRequest("DELETE", hs2.URL()+"/_synapse/admin/v1/rooms/"+url.PathEscape(room), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+root.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	if _, err := hs2.DB.Room(context.Background(), room); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("hs2 still has the room: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for membershipOn(t, hs1, room, bob.ID) != spec.Leave {
		if time.Now().After(deadline) {
			t.Fatal("hs1 never heard that bob left")
		}
		time.Sleep(20 * time.Millisecond)
	}

	if got := bob.mustJoin(room, "hs1"); got != room {
		t.Fatalf("rejoin answered %s", got)
	}
	if m := membershipOn(t, hs2, room, bob.ID); m != spec.Join {
		t.Fatalf("hs2 has bob as %q after the rejoin", m)
	}
	bob.send(room, "back again")
	alice.send(room, "welcome back")
	if m := membershipOn(t, hs1, room, bob.ID); m != spec.Join {
		t.Fatalf("hs1 has bob as %q", m)
	}
}
