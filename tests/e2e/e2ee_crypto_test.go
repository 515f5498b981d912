//go:build goolm

// Real end-to-end encryption through mautrix's crypto stack with the pure-Go
// goolm backend (no cgo): go test -tags goolm ./tests/e2e/ -run E2EECrypto

package e2e

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"matrixhs/tests/testserver"
)

// cryptoDevice is a device running mautrix's OlmMachine on in-memory stores.
type cryptoDevice struct {
	name  string
	cli   *mautrix.Client
	mach  *crypto.OlmMachine
	state *mautrix.MemoryStateStore
	since string
	// plain holds the bodies this device decrypted, by event ID.
	plain map[id.EventID]string
	// undecrypted holds the encrypted events it had no key for (yet).
	undecrypted map[id.EventID]*event.Event
}

func newCryptoDevice(t *testing.T, s *testserver.Server, localpart, deviceID string) *cryptoDevice {
	t.Helper()
	ctx := ctxT(t)
	cli := login(t, s, localpart, testPassword, deviceID, "")
	state := mautrix.NewMemoryStateStore().(*mautrix.MemoryStateStore)
	cli.StateStore = state
	log := zerolog.Nop()
	mach := crypto.NewOlmMachine(cli, &log, crypto.NewMemoryStore(nil), state)
	if err := mach.Load(ctx); err != nil {
		t.Fatalf("%s: loading olm machine: %v", deviceID, err)
	}
	d := &cryptoDevice{name: deviceID, cli: cli, mach: mach, state: state, plain: map[id.EventID]string{},
		undecrypted: map[id.EventID]*event.Event{}}
	// Sync once first, as a client does after login: the devices that
	// come later then show up in this device's device_lists.changed.
	d.sync(t)
	if err := mach.ShareKeys(ctx, 0); err != nil {
		t.Fatalf("%s: uploading keys: %v", deviceID, err)
	}
	return d
}

// sync runs one /sync, feeds the crypto machine (to-device messages,
// device lists, one-time key counts, room state) and decrypts the
// encrypted timeline events; those without a known room key are kept in
// undecrypted.
func (d *cryptoDevice) sync(t *testing.T) *mautrix.RespSync {
	t.Helper()
	return d.syncWait(t, 0)
}

// syncWait is sync with a long-poll timeout in milliseconds.
func (d *cryptoDevice) syncWait(t *testing.T, timeoutMS int) *mautrix.RespSync {
	t.Helper()
	ctx := ctxT(t)
	resp, err := d.cli.FullSyncRequest(ctx, mautrix.ReqSync{Since: d.since, Timeout: timeoutMS})
	if err != nil {
		t.Fatalf("%s: sync: %v", d.name, err)
	}
	var encrypted []*event.Event
	for roomID, room := range resp.Rooms.Join {
		for _, evt := range append(slices.Clone(room.State.Events), room.Timeline.Events...) {
			evt.RoomID = roomID
			if evt.StateKey != nil {
				evt.Type.Class = event.StateEventType
				_ = evt.Content.ParseRaw(evt.Type)
				mautrix.UpdateStateStore(ctx, d.state, evt)
				if evt.Type == event.StateMember {
					d.mach.HandleMemberEvent(ctx, evt)
				}
			} else if evt.Type == event.EventEncrypted {
				encrypted = append(encrypted, evt)
			}
		}
	}
	for roomID, room := range resp.Rooms.Invite {
		for _, evt := range room.State.Events {
			evt.RoomID = roomID
			evt.Type.Class = event.StateEventType
			_ = evt.Content.ParseRaw(evt.Type)
			mautrix.UpdateStateStore(ctx, d.state, evt)
		}
	}
	d.mach.ProcessSyncResponse(ctx, resp, d.since)
	for _, evt := range encrypted {
		evt.Type.Class = event.MessageEventType
		if err := evt.Content.ParseRaw(evt.Type); err != nil {
			t.Fatalf("%s: parsing %s: %v", d.name, evt.ID, err)
		}
		d.decrypt(t, evt)
	}
	d.since = resp.NextBatch
	return resp
}

// decrypt decrypts a megolm event into plain, or records it in undecrypted
// when the room key is unknown.
func (d *cryptoDevice) decrypt(t *testing.T, evt *event.Event) {
	t.Helper()
	dec, err := d.mach.DecryptMegolmEvent(ctxT(t), evt)
	if errors.Is(err, crypto.ErrNoSessionFound) {
		d.undecrypted[evt.ID] = evt
		return
	}
	if err != nil {
		t.Fatalf("%s: decrypting %s from %s: %v", d.name, evt.ID, evt.Sender, err)
	}
	body, _ := dec.Content.Raw["body"].(string)
	d.plain[evt.ID] = body
	delete(d.undecrypted, evt.ID)
}

// send shares the room key with every joined member's devices and sends an
// encrypted message.
func (d *cryptoDevice) send(t *testing.T, roomID id.RoomID, body string) id.EventID {
	t.Helper()
	ctx := context.WithoutCancel(ctxT(t))
	members, err := d.cli.JoinedMembers(ctx, roomID)
	if err != nil {
		t.Fatalf("%s: joined members: %v", d.name, err)
	}
	var users []id.UserID
	for u := range members.Joined {
		users = append(users, u)
	}
	if err := d.mach.ShareGroupSession(ctx, roomID, users); err != nil {
		t.Fatalf("%s: sharing the room key: %v", d.name, err)
	}
	enc, err := d.mach.EncryptMegolmEvent(ctx, roomID, event.EventMessage, &event.MessageEventContent{MsgType: event.MsgText, Body: body})
	if err != nil {
		t.Fatalf("%s: encrypting: %v", d.name, err)
	}
	res, err := d.cli.SendMessageEvent(ctx, roomID, event.EventEncrypted, enc)
	if err != nil {
		t.Fatalf("%s: sending: %v", d.name, err)
	}
	return res.EventID
}

func TestE2EECryptoTwoUsersThreeDevices(t *testing.T) {
	s := start(t, nil)
	createUser(t, s, "alice", testPassword)
	createUser(t, s, "bob", testPassword)
	// Move the stream past 0 first: a since token of s0 reads as an
	// initial sync, which carries no device list changes.
	setup := login(t, s, "bob", testPassword, "SETUP", "")
	if err := setup.SetAccountData(ctxT(t), "org.example.setup", map[string]any{}); err != nil {
		t.Fatalf("account data: %v", err)
	}
	a1 := newCryptoDevice(t, s, "alice", "ALICE1")
	a2 := newCryptoDevice(t, s, "alice", "ALICE2")
	b1 := newCryptoDevice(t, s, "bob", "BOB1")
	devices := []*cryptoDevice{a1, a2, b1}

	room := mkRoom(t, a1.cli, &mautrix.ReqCreateRoom{
		Preset: "private_chat", Invite: []id.UserID{b1.cli.UserID},
		InitialState: []*event.Event{{
			Type:    event.StateEncryption,
			Content: event.Content{Parsed: &event.EncryptionEventContent{Algorithm: id.AlgorithmMegolmV1}},
		}},
	})
	join(t, b1.cli, room)
	for _, d := range devices {
		d.sync(t)
	}
	if enc, _ := a1.state.IsEncrypted(ctxT(t), room); !enc {
		t.Fatal("the room is not encrypted in the client's view")
	}

	// Each device sends in turn; every device must decrypt every message.
	var sent []id.EventID
	want := map[id.EventID]string{}
	for _, sender := range devices {
		body := fmt.Sprintf("secret from %s", sender.name)
		evID := sender.send(t, room, body)
		sent = append(sent, evID)
		want[evID] = body
		for _, d := range devices {
			d.sync(t)
		}
	}
	for _, d := range devices {
		for _, evID := range sent {
			if d.plain[evID] != want[evID] {
				t.Errorf("%s decrypted %s as %q, want %q", d.name, evID, d.plain[evID], want[evID])
			}
		}
	}

	// The server never saw a plaintext body.
	r := do(t, "GET", roomURL(s, room, "event", string(sent[0])), b1.cli.AccessToken, nil).want(t, 200, "")
	if r.Body["type"] != "m.room.encrypted" || jget(r.Body, "content", "body") != nil {
		t.Fatalf("stored event is not encrypted: %s", r.Raw)
	}
}

func TestE2EECryptoCrossSigningTrust(t *testing.T) {
	s := start(t, nil)
	ctx := ctxT(t)
	createUser(t, s, "alice", testPassword)
	createUser(t, s, "bob", testPassword)
	a1 := newCryptoDevice(t, s, "alice", "ALICE1")
	a2 := newCryptoDevice(t, s, "alice", "ALICE2")
	b1 := newCryptoDevice(t, s, "bob", "BOB1")
	alice, bob := a1.cli.UserID, b1.cli.UserID

	// First cross-signing keys: no UIA (a nil callback would fail on a 401).
	ak, err := a1.mach.GenerateCrossSigningKeys()
	if err != nil {
		t.Fatal(err)
	}
	if err := a1.mach.PublishCrossSigningKeys(ctx, ak, nil); err != nil {
		t.Fatalf("publishing alice's first cross-signing keys: %v", err)
	}
	bk, _ := b1.mach.GenerateCrossSigningKeys()
	if err := b1.mach.PublishCrossSigningKeys(ctx, bk, nil); err != nil {
		t.Fatalf("publishing bob's first cross-signing keys: %v", err)
	}

	// ALICE1 signs ALICE2 with the self-signing key, and the master key with itself.
	if _, err := a1.mach.FetchKeys(ctx, []id.UserID{alice}, true); err != nil {
		t.Fatalf("fetching own keys: %v", err)
	}
	dev2, err := a1.mach.GetOrFetchDevice(ctx, alice, a2.cli.DeviceID)
	if err != nil {
		t.Fatalf("ALICE2 unknown to ALICE1: %v", err)
	}
	if err := a1.mach.SignOwnDevice(ctx, dev2); err != nil {
		t.Fatalf("signing ALICE2: %v", err)
	}
	if err := a1.mach.SignOwnMasterKey(ctx); err != nil {
		t.Fatalf("signing the master key: %v", err)
	}

	// bob verifies alice: signs her master key with his user-signing key.
	keys, err := b1.mach.GetCrossSigningPublicKeys(ctx, alice)
	if err != nil || keys == nil {
		t.Fatalf("alice's public keys as bob sees them: %+v %v", keys, err)
	}
	if keys.MasterKey != ak.MasterKey.PublicKey() {
		t.Fatalf("bob got master key %s, want %s", keys.MasterKey, ak.MasterKey.PublicKey())
	}
	if err := b1.mach.SignUser(ctx, alice, keys.MasterKey); err != nil {
		t.Fatalf("bob signing alice: %v", err)
	}

	// bob fetches alice's devices afresh: ALICE2 is cross-signed by a user
	// he verified, ALICE1 is not signed by her self-signing key.
	devs, err := b1.mach.FetchKeys(ctx, []id.UserID{alice}, true)
	if err != nil {
		t.Fatalf("bob fetching alice's keys: %v", err)
	}
	if trust, err := b1.mach.ResolveTrustContext(ctx, devs[alice][a2.cli.DeviceID]); err != nil || trust != id.TrustStateCrossSignedVerified {
		t.Fatalf("ALICE2 as bob sees it: %v %v, want cross-signed verified", trust, err)
	}
	if trust, _ := b1.mach.ResolveTrustContext(ctx, devs[alice][a1.cli.DeviceID]); trust != id.TrustStateUnset {
		t.Fatalf("ALICE1 as bob sees it: %v, want unset (not signed)", trust)
	}
	// alice sees bob's signature of her master key? No: it is bob's business.
	r := do(t, "POST", v3(s, "keys", "query"), a1.cli.AccessToken, map[string]any{"device_keys": map[string]any{alice.String(): []string{}}}).want(t, 200, "")
	if sig := jget(r.Body, "master_keys", alice.String(), "signatures", bob.String()); sig != nil {
		t.Fatalf("bob's signature of alice shown to alice: %v", sig)
	}

	// Replacing the keys needs the password.
	ak2, _ := a1.mach.GenerateCrossSigningKeys()
	if err := a1.mach.PublishCrossSigningKeys(ctx, ak2, nil); err == nil {
		t.Fatal("replacing cross-signing keys without UIA succeeded")
	}
	err = a1.mach.PublishCrossSigningKeys(ctx, ak2, func(ui *mautrix.RespUserInteractive) any {
		return passwordAuth(ui.Session, alice.String(), testPassword)
	})
	if err != nil {
		t.Fatalf("replacing cross-signing keys with the password: %v", err)
	}
	if keys, _ := b1.mach.FetchKeys(ctx, []id.UserID{alice}, true); keys == nil {
		t.Fatal("bob could not refetch alice's keys")
	}
	if trust, _ := b1.mach.ResolveTrustContext(ctx, devs[alice][a2.cli.DeviceID]); trust == id.TrustStateCrossSignedVerified {
		t.Fatal("ALICE2 still verified after alice replaced her keys")
	}
}
