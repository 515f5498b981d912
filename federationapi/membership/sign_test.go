package membership

import (
	"crypto/ed25519"
	"slices"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// TestSignKeepsV12AuthEvents: a v12 event this server signs (a send_join,
// send_leave, send_knock or invite) still names the create event its room
// ID implies among its auth events, as a v12 event parsed from JSON does,
// so state resolution and the auth rules see it.
func TestSignKeepsV12AuthEvents(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	ver := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersionV12)
	user := "@bob:remote.test"
	roomID := "!" + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	proto := gomatrixserverlib.ProtoEvent{SenderID: user, RoomID: roomID, Type: spec.MRoomMember, StateKey: &user,
		Content: spec.RawJSON(`{"membership":"join"}`), PrevEvents: []string{"$prev"}, AuthEvents: []string{"$jr", "$pl"}, Depth: 3}
	pdu, err := ver.NewEventBuilderFromProtoEvent(&proto).Build(time.Now(), "remote.test", "ed25519:r", key)
	if err != nil {
		t.Fatal(err)
	}
	create := "$" + roomID[1:]
	if !slices.Contains(pdu.AuthEventIDs(), create) {
		t.Fatalf("built event's auth events %v lack the create event", pdu.AuthEventIDs())
	}
	signed, err := signEvent(ver, pdu, "here.test", "ed25519:h", key)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(signed.AuthEventIDs(), create) || signed.EventID() != pdu.EventID() {
		t.Fatalf("signed event: ID %s, auth events %v", signed.EventID(), signed.AuthEventIDs())
	}
	if _, err := gomatrixserverlib.ListKeyIDs("here.test", signed.JSON()); err != nil {
		t.Fatalf("not signed: %v", err)
	}
}
