package fedephemeral

import (
	"context"
	"net/http"
	"testing"

	"matrixhs/tests/fedtest"
)

// TestForgedEDUsIgnored: a server's EDUs count only for its own users, in
// rooms this server is in, where they are joined and the room's server ACL
// lets the sending server in. hs2 sends EDUs for users of hs1 and hs3, for
// a user of its own not in the room, and for a room hs1 is not in; hs1
// takes none of them, but takes bob's own (in the same transactions), until
// the room bans hs2 by ACL.
func TestForgedEDUsIgnored(t *testing.T) {
	ctx := context.Background()
	n := fedtest.NewNetwork(t)
	hs1, hs2, hs3 := n.Start("hs1"), n.Start("hs2"), n.Start("hs3")
	alice, bob, carol := newUser(t, hs1, "alice"), newUser(t, hs2, "bob"), newUser(t, hs3, "carol")
	roomID := shareRoom(t, alice, bob, carol)
	msg := alice.say(roomID, "read me")
	elsewhere := newUser(t, hs2, "erin").createRoom() // a room of hs2 only
	const stranger = "@stranger:hs2"                  // of hs2, not in the room

	sendEDUs(t, hs2, "hs1",
		typingEDU(roomID, alice.ID, true),  // hs1's own user
		typingEDU(roomID, carol.ID, true),  // hs3's user
		typingEDU(roomID, stranger, true),  // not joined
		typingEDU(elsewhere, bob.ID, true), // a room hs1 is not in
		receiptEDU(roomID, alice.ID, msg),
		receiptEDU(roomID, carol.ID, msg),
		receiptEDU(roomID, stranger, msg),
		presenceEDU(alice.ID, "online"),
		presenceEDU(carol.ID, "online"),
		presenceEDU(stranger, "online"),
		typingEDU(roomID, bob.ID, true), // the one that counts
	).want(t, http.StatusOK, "")
	// The transaction was processed before hs2 got its answer.
	if users, _ := hs1.Ephemeral.Typing(roomID, 0); !sortedEqual(users, bob.ID) {
		t.Fatalf("hs1 has %v typing, want only bob", users)
	}
	if users, _ := hs1.Ephemeral.Typing(elsewhere, 0); len(users) != 0 {
		t.Fatalf("hs1 took typing in a room it is not in: %v", users)
	}
	info, err := hs1.DB.Room(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	if rs, err := hs1.DB.ReceiptsSince(ctx, info.NID, 0, hs1.DB.StreamPosition()); err != nil || len(rs) != 0 {
		t.Fatalf("hs1 took forged receipts: %+v, %v", rs, err)
	}
	for _, u := range []string{alice.ID, carol.ID, stranger} {
		if p, v := hs1.Ephemeral.Presence(u); v != 0 {
			t.Fatalf("hs1 took hs2's word on %s's presence: %+v", u, p)
		}
	}

	// bob's own receipt and presence count.
	sendEDUs(t, hs2, "hs1", receiptEDU(roomID, bob.ID, msg), presenceEDU(bob.ID, "online")).want(t, http.StatusOK, "")
	if rs, _ := hs1.DB.ReceiptsSince(ctx, info.NID, 0, hs1.DB.StreamPosition()); len(rs) != 1 || rs[0].UserID != bob.ID {
		t.Fatalf("receipts on hs1 = %+v, want bob's", rs)
	}
	if p, _ := hs1.Ephemeral.Presence(bob.ID); p.Presence != "online" {
		t.Fatalf("bob's presence on hs1 = %+v", p)
	}

	// Banned by the room's ACL, hs2 is not heard in it.
	sendEDUs(t, hs2, "hs1", typingEDU(roomID, bob.ID, false)).want(t, http.StatusOK, "")
	alice.must("PUT", roomPath(roomID, "/state/m.room.server_acl/"), map[string]any{"allow": []string{"*"}, "deny": []string{"hs2"}})
	sendEDUs(t, hs2, "hs1", typingEDU(roomID, bob.ID, true), receiptEDU(roomID, bob.ID, alice.say(roomID, "later"))).
		want(t, http.StatusOK, "")
	if users, _ := hs1.Ephemeral.Typing(roomID, 0); len(users) != 0 {
		t.Fatalf("hs1 took typing from a server the ACL bans: %v", users)
	}
	if rs, _ := hs1.DB.ReceiptsSince(ctx, info.NID, 0, hs1.DB.StreamPosition()); len(rs) != 1 {
		t.Fatalf("hs1 took a receipt from a server the ACL bans: %+v", rs)
	}
}
