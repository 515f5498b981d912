package fedephemeral

import (
	"context"
	"testing"
	"time"

	"matrixhs/federationapi"
	"matrixhs/tests/fedtest"
)

// TestTypingAcrossServers: a user's typing shows in /sync and in sliding
// sync's typing extension on the other server, both ways; a stop goes
// across; and remote typing times out on the receiving server as local
// typing does (hs2 times remote typing out after a second here, long
// before alice's own 30 s).
func TestTypingAcrossServers(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1 := n.Start("hs1")
	hs2 := n.Start("hs2", fedtest.WithFederation(func(o *federationapi.Options) { o.EDU.RemoteTypingTimeout = time.Second }))
	alice, bob := newUser(t, hs1, "alice"), newUser(t, hs2, "bob")
	roomID := shareRoom(t, alice, bob)
	bob.syncUntil("the room", func(s map[string]any) bool { return fedtest.Get(s, "rooms", "join", roomID) != nil })

	alice.setTyping(roomID, true, 30*time.Second)
	bob.syncUntil("alice typing", func(s map[string]any) bool { return sortedEqual(typingIn(s, roomID), alice.ID) })
	ss := bob.slidingSync()
	if users := fedtest.List(fedtest.Get(ss, "extensions", "typing", "rooms", roomID, "content", "user_ids")); len(users) != 1 || users[0] != alice.ID {
		t.Fatalf("bob's sliding sync typing extension: %v", fedtest.Get(ss, "extensions", "typing"))
	}

	bob.setTyping(roomID, true, 30*time.Second)
	alice.syncUntil("bob typing", func(s map[string]any) bool { return sortedEqual(typingIn(s, roomID), alice.ID, bob.ID) })
	bob.setTyping(roomID, false, 0)
	alice.syncUntil("bob's stop", func(s map[string]any) bool { return sortedEqual(typingIn(s, roomID), alice.ID) })

	// hs2 forgets alice's typing after its remote timeout although hs1
	// still has her typing (and sent no stop).
	bob.syncUntil("alice's typing to time out", func(s map[string]any) bool {
		users := typingIn(s, roomID)
		return users != nil && len(users) == 0
	})
	if !hs1.Ephemeral.IsTyping(roomID, alice.ID) {
		t.Fatal("alice stopped typing on hs1: the timeout on hs2 proves nothing")
	}
}

// TestReceiptsAcrossServers: unthreaded and threaded read receipts go to
// the room's other servers and show in /sync and sliding sync's receipts
// extension there; private read receipts never leave their server.
func TestReceiptsAcrossServers(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	alice, bob := newUser(t, hs1, "alice"), newUser(t, hs2, "bob")
	roomID := shareRoom(t, alice, bob)
	root := alice.say(roomID, "a thread root")
	reply := alice.send(roomID, map[string]any{"msgtype": "m.text", "body": "in the thread",
		"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root}})
	later := alice.say(roomID, "after the thread")
	bob.syncUntil("alice's messages", func(s map[string]any) bool {
		for _, e := range fedtest.List(fedtest.Get(s, "rooms", "join", roomID, "timeline", "events")) {
			if fedtest.Get(e, "event_id") == later {
				return true
			}
		}
		return false
	})

	// A private receipt first: it must not travel, though the public
	// receipts after it do (EDUs from hs2 arrive in order).
	bob.receipt(roomID, "m.read.private", later, "")
	bob.receipt(roomID, "m.read", reply, root)
	bob.receipt(roomID, "m.read", root, "")
	var seenThreaded, seenMain bool
	alice.syncUntil("bob's receipts", func(s map[string]any) bool {
		if r := receiptIn(s, roomID, reply, "m.read", bob.ID); r != nil {
			if r["thread_id"] != root {
				t.Fatalf("threaded receipt = %v", r)
			}
			seenThreaded = true
		}
		if r := receiptIn(s, roomID, root, "m.read", bob.ID); r != nil {
			if _, threaded := r["thread_id"]; threaded {
				t.Fatalf("unthreaded receipt = %v", r)
			}
			seenMain = true
		}
		if receiptIn(s, roomID, later, "m.read.private", bob.ID) != nil {
			t.Fatal("bob's private receipt reached alice")
		}
		return seenThreaded && seenMain
	})
	info, err := hs1.DB.Room(context.Background(), roomID)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := hs1.DB.ReceiptsSince(context.Background(), info.NID, 0, hs1.DB.StreamPosition())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range stored {
		if r.UserID == bob.ID && r.Type != "m.read" {
			t.Fatalf("hs1 stored bob's %s receipt", r.Type)
		}
	}
	ss := alice.slidingSync()
	if fedtest.Get(ss, "extensions", "receipts", "rooms", roomID, "content", root, "m.read", bob.ID) == nil {
		t.Fatalf("alice's sliding sync receipts extension: %v", fedtest.Get(ss, "extensions", "receipts"))
	}

	// And the other way: alice's receipt reaches bob.
	alice.receipt(roomID, "m.read", later, "")
	bob.syncUntil("alice's receipt", func(s map[string]any) bool { return receiptIn(s, roomID, later, "m.read", alice.ID) != nil })
}

// TestPresenceAcrossServers: a user's presence goes to the servers sharing
// a room and shows in /sync there, also to a server that joins later; a
// server with presence off neither sends nor takes any.
func TestPresenceAcrossServers(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1 := n.Start("hs1", fedtest.WithFederation(func(o *federationapi.Options) { o.EDU.Tick = 100 * time.Millisecond }))
	hs2, hs3, hs4 := n.Start("hs2"), n.Start("hs3"), n.Start("hs4")
	hs3.Ephemeral.SetPresenceEnabled(false)
	alice, bob, carol := newUser(t, hs1, "alice"), newUser(t, hs2, "bob"), newUser(t, hs3, "carol")
	roomID := shareRoom(t, alice, bob, carol)

	alice.must("PUT", "/presence/"+alice.ID+"/status", map[string]any{"presence": "online", "status_msg": "at lunch"})
	got := bob.syncUntil("alice's presence", func(s map[string]any) bool { return presenceOf(s, alice.ID) != nil })
	p := presenceOf(got, alice.ID)
	if fedtest.Get(p, "content", "presence") != "online" || fedtest.Get(p, "content", "status_msg") != "at lunch" || fedtest.Get(p, "content", "currently_active") != true {
		t.Fatalf("bob sees alice's presence as %v", p)
	}
	st := bob.must("GET", "/presence/"+alice.ID+"/status", nil)
	if st["presence"] != "online" || st["status_msg"] != "at lunch" {
		t.Fatalf("bob's GET of alice's presence: %v", st)
	}
	bob.must("PUT", "/presence/"+bob.ID+"/status", map[string]any{"presence": "unavailable"})
	alice.syncUntil("bob's presence", func(s map[string]any) bool {
		return fedtest.Get(presenceOf(s, bob.ID), "content", "presence") == "unavailable"
	})

	// hs3 has presence off: carol's update stays home (the typing sent
	// after it arrives, the presence never does), and alice's is not taken.
	carol.must("PUT", "/presence/"+carol.ID+"/status", map[string]any{"presence": "online", "status_msg": "hidden"})
	carol.setTyping(roomID, true, 30*time.Second)
	alice.syncUntil("carol typing", func(s map[string]any) bool {
		if presenceOf(s, carol.ID) != nil {
			t.Fatal("carol's presence left a server with presence off")
		}
		return sortedEqual(typingIn(s, roomID), carol.ID)
	})
	if p, v := hs3.Ephemeral.Presence(alice.ID); p.Presence != "offline" || v != 0 {
		t.Fatalf("hs3 took alice's presence: %+v", p)
	}

	// A server that joins later hears of alice's unchanged presence.
	dave := newUser(t, hs4, "dave")
	dave.join(roomID, hs1.Name)
	got = dave.syncUntil("alice's presence", func(s map[string]any) bool { return presenceOf(s, alice.ID) != nil })
	if p := presenceOf(got, alice.ID); fedtest.Get(p, "content", "status_msg") != "at lunch" {
		t.Fatalf("dave sees alice's presence as %v", p)
	}
}
