//go:build goolm

package fede2ee

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"matrixhs/tests/fedtest"
)

// cryptoDevice is a device running mautrix's OlmMachine (goolm) on
// in-memory stores; user is its raw client-API side.
type cryptoDevice struct {
	*user
	cli   *mautrix.Client
	mach  *crypto.OlmMachine
	state *mautrix.MemoryStateStore
	next  string
	// plain holds the bodies this device decrypted, by event ID; pending
	// the events whose room key had not come yet.
	plain   map[id.EventID]string
	pending []*event.Event
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newCryptoDevice starts the crypto machine of a logged-in device and
// uploads its keys.
func newCryptoDevice(t *testing.T, u *user) *cryptoDevice {
	t.Helper()
	cli, err := mautrix.NewClient(u.hs.URL(), id.UserID(u.ID), u.token)
	if err != nil {
		t.Fatal(err)
	}
	cli.DeviceID = id.DeviceID(u.DeviceID)
	state := mautrix.NewMemoryStateStore().(*mautrix.MemoryStateStore)
	cli.StateStore = state
	log := zerolog.Nop()
	mach := crypto.NewOlmMachine(cli, &log, crypto.NewMemoryStore(nil), state)
	if err := mach.Load(ctxT(t)); err != nil {
		t.Fatalf("%s: loading the olm machine: %v", u.DeviceID, err)
	}
	d := &cryptoDevice{user: u, cli: cli, mach: mach, state: state, plain: map[id.EventID]string{}}
	d.syncCrypto(t, 0)
	if err := mach.ShareKeys(ctxT(t), 0); err != nil {
		t.Fatalf("%s: uploading keys: %v", u.DeviceID, err)
	}
	return d
}

// syncCrypto runs one /sync, feeds the machine (to-device messages, device
// lists, key counts, room state) and decrypts what it can of the
// encrypted timeline.
func (d *cryptoDevice) syncCrypto(t *testing.T, timeoutMS int) {
	t.Helper()
	ctx := ctxT(t)
	resp, err := d.cli.FullSyncRequest(ctx, mautrix.ReqSync{Since: d.next, Timeout: timeoutMS})
	if err != nil {
		t.Fatalf("%s: sync: %v", d.DeviceID, err)
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
	d.mach.ProcessSyncResponse(ctx, resp, d.next)
	for _, evt := range encrypted {
		evt.Type.Class = event.MessageEventType
		if err := evt.Content.ParseRaw(evt.Type); err != nil {
			t.Fatalf("%s: parsing %s: %v", d.DeviceID, evt.ID, err)
		}
		dec, err := d.mach.DecryptMegolmEvent(ctx, evt)
		if errors.Is(err, crypto.ErrNoSessionFound) {
			d.pending = append(d.pending, evt)
			continue
		}
		if err != nil {
			t.Fatalf("%s: decrypting %s: %v", d.DeviceID, evt.ID, err)
		}
		d.plain[evt.ID], _ = dec.Content.Raw["body"].(string)
	}
	d.next = resp.NextBatch
}

// retryPending decrypts the events that came before their room key.
func (d *cryptoDevice) retryPending(t *testing.T) {
	t.Helper()
	var still []*event.Event
	for _, evt := range d.pending {
		dec, err := d.mach.DecryptMegolmEvent(ctxT(t), evt)
		if err != nil {
			still = append(still, evt)
			continue
		}
		d.plain[evt.ID], _ = dec.Content.Raw["body"].(string)
	}
	d.pending = still
}

// syncUntilCrypto syncs until cond holds, for up to 40 s.
func (d *cryptoDevice) syncUntilCrypto(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(40 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s never saw %s", d.DeviceID, what)
		}
		d.syncCrypto(t, 1000)
		d.retryPending(t)
	}
}

// decrypts waits until the device decrypted the event as body.
func (d *cryptoDevice) decrypts(t *testing.T, evID id.EventID, body string) {
	t.Helper()
	d.syncUntilCrypto(t, fmt.Sprintf("%s decrypted", evID), func() bool { return d.plain[evID] != "" })
	if d.plain[evID] != body {
		t.Fatalf("%s decrypted %s as %q, want %q", d.DeviceID, evID, d.plain[evID], body)
	}
}

// send shares the room key with the joined members' devices and sends an
// encrypted message.
func (d *cryptoDevice) send(t *testing.T, roomID id.RoomID, body string) id.EventID {
	t.Helper()
	ctx := ctxT(t)
	members, err := d.cli.JoinedMembers(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	var users []id.UserID
	for u := range members.Joined {
		users = append(users, u)
	}
	if err := d.mach.ShareGroupSession(ctx, roomID, users); err != nil {
		t.Fatalf("%s: sharing the room key: %v", d.DeviceID, err)
	}
	enc, err := d.mach.EncryptMegolmEvent(ctx, roomID, event.EventMessage, &event.MessageEventContent{MsgType: event.MsgText, Body: body})
	if err != nil {
		t.Fatalf("%s: encrypting: %v", d.DeviceID, err)
	}
	res, err := d.cli.SendMessageEvent(ctx, roomID, event.EventEncrypted, enc)
	if err != nil {
		t.Fatalf("%s: sending: %v", d.DeviceID, err)
	}
	return res.EventID
}

// knowsDevice reports whether the machine holds a device of userID.
func (d *cryptoDevice) knowsDevice(t *testing.T, userID, deviceID string) bool {
	devs, err := d.mach.CryptoStore.GetDevices(ctxT(t), id.UserID(userID))
	if err != nil {
		t.Fatal(err)
	}
	_, ok := devs[id.DeviceID(deviceID)]
	return ok
}

// crossSign publishes new cross-signing keys for d's user, signs d's
// device with the self-signing key and the master key with d's device.
func (d *cryptoDevice) crossSign(t *testing.T) *crypto.CrossSigningKeysCache {
	t.Helper()
	ctx := ctxT(t)
	keys, err := d.mach.GenerateCrossSigningKeys()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.mach.PublishCrossSigningKeys(ctx, keys, nil); err != nil {
		t.Fatalf("%s: publishing cross-signing keys: %v", d.DeviceID, err)
	}
	own, err := d.mach.GetOrFetchDevice(ctx, id.UserID(d.ID), id.DeviceID(d.DeviceID))
	if err != nil {
		t.Fatalf("%s: own device: %v", d.DeviceID, err)
	}
	if err := d.mach.SignOwnDevice(ctx, own); err != nil {
		t.Fatalf("%s: signing the device: %v", d.DeviceID, err)
	}
	if err := d.mach.SignOwnMasterKey(ctx); err != nil {
		t.Fatalf("%s: signing the master key: %v", d.DeviceID, err)
	}
	return keys
}

// Alice on hs1 and Bob on hs2 use mautrix's real crypto in an encrypted
// room: their messages decrypt on the other server; Bob's second device
// reaches Alice through a device list update and gets the room key; they
// cross-sign, verify each other, and each sees the other's cross-signing
// keys and signatures through /keys/query.
func TestCryptoAcrossServers(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	a1 := newCryptoDevice(t, newUser(t, hs1, "alice", "ALICE1"))
	b1 := newCryptoDevice(t, newUser(t, hs2, "bob", "BOB1"))
	alice, bob := a1.ID, b1.ID

	roomID := id.RoomID(a1.createRoom(encryptedRoom(bob)))
	b1.join(string(roomID), hs1.Name)
	a1.waitMembers(string(roomID), alice, bob)
	b1.waitMembers(string(roomID), alice, bob)
	a1.syncCrypto(t, 0)
	b1.syncCrypto(t, 0)
	if enc, _ := a1.state.IsEncrypted(ctxT(t), roomID); !enc {
		t.Fatal("the room is not encrypted in alice's client")
	}

	// Both ways.
	ev1 := a1.send(t, roomID, "hello from hs1")
	b1.decrypts(t, ev1, "hello from hs1")
	ev2 := b1.send(t, roomID, "hello from hs2")
	a1.decrypts(t, ev2, "hello from hs2")

	// Bob's second device: alice hears of it and shares the key with it.
	b2 := newCryptoDevice(t, b1.login("BOB2"))
	a1.syncUntilCrypto(t, "BOB2", func() bool { return a1.knowsDevice(t, bob, "BOB2") })
	ev3 := a1.send(t, roomID, "for both of bob's devices")
	b2.decrypts(t, ev3, "for both of bob's devices")
	b1.decrypts(t, ev3, "for both of bob's devices")

	// Cross-signing: each signs their own device and master key...
	ak := a1.crossSign(t)
	bk := b1.crossSign(t)
	// ... sees the other's keys and signatures (through the EDUs) ...
	signedBy := func(v any, signer, keyID string) bool { return fedtest.Get(v, "signatures", signer, keyID) != nil }
	for _, c := range []struct {
		who        *cryptoDevice
		other      string
		device     string
		master     *crypto.CrossSigningKeysCache
		otherLabel string
	}{{a1, bob, "BOB1", bk, "bob"}, {b1, alice, "ALICE1", ak, "alice"}} {
		mk, sk := c.master.MasterKey.PublicKey().String(), c.master.SelfSigningKey.PublicKey().String()
		c.who.queryUntil(c.otherLabel+"'s cross-signing", func(r response) bool {
			return fedtest.Get(r.Body, "master_keys", c.other, "keys", "ed25519:"+mk) == mk &&
				signedBy(fedtest.Get(r.Body, "master_keys", c.other), c.other, "ed25519:"+c.device) &&
				fedtest.Get(r.Body, "self_signing_keys", c.other, "keys", "ed25519:"+sk) == sk &&
				signedBy(fedtest.Get(r.Body, "device_keys", c.other, c.device), c.other, "ed25519:"+sk)
		}, c.other)
	}
	// ... and verifies the other: a user-signing signature of their
	// master key, shown to the signer only.
	ctx := ctxT(t)
	for _, c := range []struct {
		who    *cryptoDevice
		other  string
		device string
		master *crypto.CrossSigningKeysCache
		signer *crypto.CrossSigningKeysCache
	}{{a1, bob, "BOB1", bk, ak}, {b1, alice, "ALICE1", ak, bk}} {
		if _, err := c.who.mach.FetchKeys(ctx, []id.UserID{id.UserID(c.other)}, true); err != nil {
			t.Fatalf("%s fetching %s's keys: %v", c.who.DeviceID, c.other, err)
		}
		if err := c.who.mach.SignUser(ctx, id.UserID(c.other), c.master.MasterKey.PublicKey()); err != nil {
			t.Fatalf("%s verifying %s: %v", c.who.DeviceID, c.other, err)
		}
		usk := "ed25519:" + c.signer.UserSigningKey.PublicKey().String()
		r := c.who.query(0, c.other)
		if !signedBy(fedtest.Get(r.Body, "master_keys", c.other), c.who.ID, usk) {
			t.Fatalf("%s does not see its signature of %s's master key: %s", c.who.DeviceID, c.other, r.Raw)
		}
		devs, err := c.who.mach.FetchKeys(ctx, []id.UserID{id.UserID(c.other)}, true)
		if err != nil {
			t.Fatal(err)
		}
		if trust, err := c.who.mach.ResolveTrustContext(ctx, devs[id.UserID(c.other)][id.DeviceID(c.device)]); err != nil || trust != id.TrustStateCrossSignedVerified {
			t.Fatalf("%s as %s sees it: %v %v, want cross-signed verified", c.device, c.who.DeviceID, trust, err)
		}
	}
	// Alice's signature of bob is hers: bob's own query does not show it.
	if r := b1.query(0, bob); signedBy(fedtest.Get(r.Body, "master_keys", bob), alice, "ed25519:"+ak.UserSigningKey.PublicKey().String()) {
		t.Fatalf("alice's signature of bob shown to bob: %s", r.Raw)
	}
}
