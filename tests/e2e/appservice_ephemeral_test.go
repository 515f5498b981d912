//go:build goolm

package e2e

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestAppServiceEphemeral: a bridge with receive_ephemeral hears of typing,
// read receipts and presence in a room of its ghost, under the spec's key
// and MSC2409's, each EDU naming its room.
func TestAppServiceEphemeral(t *testing.T) {
	s, b := startBridged(t)
	ctx := ctxT(t)
	alice := newUser(t, s, "alice")
	room := b.ghostInRoom(t, ctx, alice, "@bridge_eph:hs.test")
	msg, err := alice.SendText(ctx, room.RoomID, "read me")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.UserTyping(ctx, room.RoomID, true, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := alice.SendReceipt(ctx, room.RoomID, msg.EventID, event.ReceiptTypeRead, nil); err != nil {
		t.Fatal(err)
	}
	if err := alice.SetPresence(ctx, mautrix.ReqPresence{Presence: event.PresenceOnline, StatusMsg: "bridging"}); err != nil {
		t.Fatal(err)
	}
	seen := func(typ event.Type, check func(*event.Event) bool) func() bool {
		return func() bool {
			for _, ev := range b.events {
				if ev.Type.Type == typ.Type && check(ev) {
					return true
				}
			}
			return false
		}
	}
	b.waitUntil("alice typing", seen(event.EphemeralEventTyping, func(ev *event.Event) bool {
		return ev.RoomID == room.RoomID && len(ev.Content.AsTyping().UserIDs) == 1 && ev.Content.AsTyping().UserIDs[0] == alice.UserID
	}))
	b.waitUntil("alice's receipt", seen(event.EphemeralEventReceipt, func(ev *event.Event) bool {
		rc := *ev.Content.AsReceipt()
		_, ok := rc[msg.EventID][event.ReceiptTypeRead][alice.UserID]
		return ev.RoomID == room.RoomID && ok
	}))
	b.waitUntil("alice's presence", seen(event.EphemeralEventPresence, func(ev *event.Event) bool {
		return ev.Sender == alice.UserID && ev.Content.AsPresence().StatusMessage == "bridging"
	}))
	// Both keys, each EDU with its room.
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, txn := range b.txns {
		if len(txn.Body["ephemeral"]) == 0 {
			continue
		}
		if string(txn.Body["ephemeral"]) != string(txn.Body["de.sorunome.msc2409.ephemeral"]) {
			t.Fatalf("ephemeral keys differ: %s", txn.Raw)
		}
		var edus []map[string]any
		json.Unmarshal(txn.Body["ephemeral"], &edus)
		for _, e := range edus {
			if e["type"] != "m.presence" && e["room_id"] != string(room.RoomID) {
				t.Fatalf("EDU without its room: %v", e)
			}
		}
	}
}

// TestAppServiceEncryptedRoom: a bridge runs encryption for its ghost with
// a device it created itself (MSC4190) and masquerades as (MSC3202): the
// ghost's keys upload, a user's room key reaches the ghost's device through
// the bridge's transactions (to_device), the bridge decrypts the user's
// message, and the user decrypts the ghost's.
func TestAppServiceEncryptedRoom(t *testing.T) {
	s, b := startBridged(t)
	ctx := ctxT(t)
	createUser(t, s, "alice", testPassword)
	alice := newCryptoDevice(t, s, "alice", "ALICEDEV")
	room, err := alice.cli.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", InitialState: []*event.Event{{
		Type: event.StateEncryption, Content: event.Content{Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}},
	}}})
	if err != nil {
		t.Fatal(err)
	}

	ghost := b.as.Intent("@bridge_crypto:hs.test")
	if err := ghost.EnsureRegistered(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ghost.CreateDeviceMSC4190(ctx, "GHOSTDEV", "bridge device"); err != nil {
		t.Fatalf("creating the ghost's device: %v", err)
	}
	who, err := ghost.Whoami(ctx)
	if err != nil || who.DeviceID != "GHOSTDEV" || who.UserID != ghost.UserID {
		t.Fatalf("masqueraded whoami = %+v, %v", who, err)
	}
	gstate := mautrix.NewMemoryStateStore().(*mautrix.MemoryStateStore)
	log := zerolog.Nop()
	gmach := crypto.NewOlmMachine(ghost.Client, &log, crypto.NewMemoryStore(nil), gstate)
	if err := gmach.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := gmach.ShareKeys(ctx, 0); err != nil {
		t.Fatalf("uploading the ghost's keys: %v", err)
	}

	if _, err := alice.cli.InviteUser(ctx, room.RoomID, &mautrix.ReqInviteUser{UserID: ghost.UserID}); err != nil {
		t.Fatal(err)
	}
	if _, err := ghost.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	alice.sync(t)
	sent := alice.send(t, room.RoomID, "secret for the bridge")

	// The room key arrives as a to-device message for the ghost's device.
	b.waitUntil("the room key at the bridge", func() bool {
		for _, ev := range b.todevice {
			if ev.ToUserID == ghost.UserID && ev.ToDeviceID == "GHOSTDEV" && ev.Type == event.ToDeviceEncrypted {
				return true
			}
		}
		return false
	})
	var encrypted *event.Event
	b.waitUntil("the encrypted message at the bridge", func() bool {
		for _, ev := range b.events {
			if ev.ID == sent {
				encrypted = ev
				return true
			}
		}
		return false
	})
	b.mu.Lock()
	toDevice := append([]*event.Event(nil), b.todevice...)
	b.mu.Unlock()
	for _, ev := range toDevice {
		gmach.HandleToDeviceEvent(ctx, ev)
	}
	dec, err := gmach.DecryptMegolmEvent(ctx, encrypted)
	if err != nil {
		t.Fatalf("bridge decrypting alice's message: %v", err)
	}
	if body, _ := dec.Content.Raw["body"].(string); body != "secret for the bridge" {
		t.Fatalf("bridge decrypted %q", body)
	}

	// The other way: the ghost encrypts, alice decrypts.
	wctx := context.WithoutCancel(ctx)
	if err := gmach.ShareGroupSession(wctx, room.RoomID, []id.UserID{alice.cli.UserID, ghost.UserID}); err != nil {
		t.Fatalf("ghost sharing its room key: %v", err)
	}
	enc, err := gmach.EncryptMegolmEvent(wctx, room.RoomID, event.EventMessage, &event.MessageEventContent{MsgType: event.MsgText, Body: "secret from the bridge"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := ghost.SendMessageEvent(wctx, room.RoomID, event.EventEncrypted, enc)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice decrypting the ghost's message", func() bool {
		alice.sync(t)
		return alice.plain[res.EventID] == "secret from the bridge"
	})
}
