//go:build goolm

package e2e

import (
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// A device that logs in after a message was sent asks the user's other
// devices for the room key (m.room_key_request to "*", as matrix-nio and
// Element do) and gets it back olm-encrypted: the old device learns of the
// new one through its own sync's device_lists, fetches its keys, claims a
// one-time key, and the forwarded key reaches the new device, which then
// decrypts the old message.
func TestE2EECryptoLateDeviceGetsOldRoomKeyFromOwnDevice(t *testing.T) {
	s := start(t, nil)
	ctx := ctxT(t)
	createUser(t, s, "dave", testPassword)
	createUser(t, s, "erin", testPassword)
	// Move the stream past 0: a since of s0 reads as an initial sync.
	setup := login(t, s, "erin", testPassword, "SETUP", "")
	if err := setup.SetAccountData(ctx, "org.example.setup", map[string]any{}); err != nil {
		t.Fatalf("account data: %v", err)
	}
	old := newCryptoDevice(t, s, "dave", "DAVEOLD")
	dave := old.cli.UserID
	room := mkRoom(t, old.cli, &mautrix.ReqCreateRoom{
		Preset: "private_chat", Invite: []id.UserID{setup.UserID},
		InitialState: []*event.Event{{
			Type:    event.StateEncryption,
			Content: event.Content{Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}},
		}},
	})
	join(t, setup, room)
	old.sync(t)
	secret := old.send(t, room, "sent before the new device existed")
	old.sync(t)

	// The new device logs in, syncs, uploads its keys and cannot read the
	// old message.
	fresh := newCryptoDevice(t, s, "dave", "DAVENEW")
	evt := fresh.undecrypted[secret]
	if evt == nil {
		t.Fatalf("the new device decrypted or never saw the old message: plain %v", fresh.plain)
	}

	// The old device hears of its own new device through device_lists.changed
	// and its crypto machine fetched the new device's keys because of it.
	resp := old.syncWait(t, 5000)
	if !slices.Contains(resp.DeviceLists.Changed, dave) {
		t.Fatalf("old device's device_lists.changed = %v, want its own user", resp.DeviceLists.Changed)
	}
	devs, err := old.mach.CryptoStore.GetDevices(ctx, dave)
	if err != nil || devs[fresh.cli.DeviceID] == nil {
		t.Fatalf("the old device did not learn of the new one from its sync: %v %v", devs, err)
	}
	// The user trusts the new device on the old one.
	newDev := devs[fresh.cli.DeviceID]
	newDev.Trust = id.TrustStateVerified
	if err := old.mach.CryptoStore.PutDevice(ctx, dave, newDev); err != nil {
		t.Fatalf("trusting the new device: %v", err)
	}

	// The new device asks all of dave's devices for the key.
	content := evt.Content.AsEncrypted()
	err = fresh.mach.SendRoomKeyRequest(ctx, room, content.SenderKey, content.SessionID, "",
		map[id.UserID][]id.DeviceID{dave: {"*"}})
	if err != nil {
		t.Fatalf("sending the key request: %v", err)
	}
	// The old device receives the request; its machine answers it (claim,
	// olm session, encrypted m.forwarded_room_key) in the background.
	resp = old.syncWait(t, 5000)
	if !hasToDevice(resp, event.ToDeviceRoomKeyRequest, dave) {
		t.Fatalf("the old device did not receive the key request: %+v", resp.ToDevice.Events)
	}

	// The new device syncs until the forwarded key arrives.
	deadline := time.Now().Add(20 * time.Second)
	for fresh.plain[secret] == "" {
		if time.Now().After(deadline) {
			t.Fatal("the new device never received the forwarded room key")
		}
		fresh.syncWait(t, 2000)
		if igs, _ := fresh.mach.CryptoStore.GetGroupSession(ctx, room, content.SessionID); igs != nil {
			fresh.decrypt(t, evt)
		}
	}
	if got := fresh.plain[secret]; got != "sent before the new device existed" {
		t.Fatalf("the new device decrypted %q", got)
	}
}

// hasToDevice reports a to-device event of the type from sender in a sync.
func hasToDevice(resp *mautrix.RespSync, typ event.Type, sender id.UserID) bool {
	for _, e := range resp.ToDevice.Events {
		if e.Type.Type == typ.Type && e.Sender == sender {
			return true
		}
	}
	return false
}
