package fede2ee

import (
	"context"
	"fmt"
	"testing"

	"matrixhs/tests/fedtest"
)

// remoteDeviceKeys is a device_keys object for a device of userID signed by
// the key k (the device's own key, unless a forgery).
func remoteDeviceKeys(t *testing.T, userID, deviceID string, k edKey) map[string]any {
	t.Helper()
	return signObj(t, map[string]any{
		"user_id": userID, "device_id": deviceID, "algorithms": []string{"m.megolm.v1.aes-sha2"},
		"keys": map[string]string{"ed25519:" + deviceID: k.pub, "curve25519:" + deviceID: newEdKey(t).pub},
	}, userID, "ed25519:"+deviceID, k)
}

func deviceListEDU(content map[string]any) map[string]any {
	return map[string]any{"edu_type": "m.device_list_update", "content": content}
}

// m.device_list_update EDUs apply on top of the cached list when their
// prev_id follows it; a gap has the list fetched again from the user's
// server; EDUs that are not the origin's to send, or whose keys carry a
// self-signature that does not verify, or that are malformed, are dropped;
// unsigned keys are taken (as uploads are, here and on Synapse).
func TestDeviceListUpdateGapsAndForgeries(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2, hs3 := n.Start("hs1"), n.Start("hs2"), n.Start("hs3")
	ctx := context.Background()
	alice := newUser(t, hs1, "alice", "ALICE1")
	bob := newUser(t, hs2, "bob", "BOB1")
	bob.uploadKeys(1)
	_, aliceSince, _ := sharedRoom(t, alice, bob)
	alice.query(0, bob.ID)
	state := func() (int64, bool) {
		st, err := hs1.DB.RemoteDeviceListState(ctx, bob.ID)
		if err != nil {
			t.Fatal(err)
		}
		return st.StreamID, st.Cached && !st.Stale
	}
	hs2Latest := func() int64 {
		id, err := hs2.DB.LatestDeviceListChange(ctx, bob.ID)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	waitFor(t, "hs1's cache of bob to catch up with hs2", func() bool { id, fresh := state(); return fresh && id == hs2Latest() })
	last, _ := state()

	// A gap: not applied; the list is fetched again from hs2.
	sendEDUs(t, hs2, hs1, deviceListEDU(map[string]any{"user_id": bob.ID, "device_id": "GHOST", "stream_id": last + 100,
		"prev_id": []int64{last + 99}, "keys": remoteDeviceKeys(t, bob.ID, "GHOST", newEdKey(t))}))
	waitFor(t, "the list fetched again", func() bool { id, fresh := state(); return fresh && id == hs2Latest() })
	if r := alice.query(0, bob.ID); hasDevice(r, bob.ID, "GHOST") || !hasDevice(r, bob.ID, "BOB1") {
		t.Fatalf("after the gap: %s", r.Raw)
	}

	// Following the cached list: applied.
	last, _ = state()
	sendEDUs(t, hs2, hs1, deviceListEDU(map[string]any{"user_id": bob.ID, "device_id": "NEWDEV", "stream_id": last + 1,
		"prev_id": []int64{last}, "device_display_name": "New", "keys": remoteDeviceKeys(t, bob.ID, "NEWDEV", newEdKey(t))}))
	alice.syncUntil(aliceSince, "bob's NEWDEV", func(s map[string]any) bool { return changedIn(s, bob.ID) })
	if r := alice.query(0, bob.ID); !hasDevice(r, bob.ID, "NEWDEV") || deviceName(r, bob.ID, "NEWDEV") != "New" {
		t.Fatalf("after an update that follows: %s", r.Raw)
	}
	last++

	// Dropped: another server speaking for bob, keys signed by another
	// key, a malformed stream ID, an update for a user no room is shared
	// with.
	sendEDUs(t, hs3, hs1, deviceListEDU(map[string]any{"user_id": bob.ID, "device_id": "EVIL", "stream_id": last + 1,
		"prev_id": []int64{last}, "keys": remoteDeviceKeys(t, bob.ID, "EVIL", newEdKey(t))}))
	forged := remoteDeviceKeys(t, bob.ID, "FORGED", newEdKey(t))
	forged["keys"].(map[string]any)["ed25519:FORGED"] = newEdKey(t).pub
	sendEDUs(t, hs2, hs1,
		deviceListEDU(map[string]any{"user_id": bob.ID, "device_id": "FORGED", "stream_id": last + 1, "prev_id": []int64{last}, "keys": forged}),
		deviceListEDU(map[string]any{"user_id": bob.ID, "device_id": "BAD", "stream_id": "soon", "prev_id": []int64{last}}),
		deviceListEDU(map[string]any{"user_id": "@dave:hs2", "device_id": "D", "stream_id": 5, "prev_id": []int64{4}}),
	)
	if id, fresh := state(); id != last || !fresh {
		t.Fatalf("hs1's cache moved to %d (fresh %v) on dropped updates", id, fresh)
	}
	r := alice.query(0, bob.ID)
	for _, d := range []string{"EVIL", "FORGED", "BAD"} {
		if hasDevice(r, bob.ID, d) {
			t.Fatalf("dropped update for %s applied: %s", d, r.Raw)
		}
	}
	if st, _ := hs1.DB.RemoteDeviceListState(ctx, "@dave:hs2"); st.Cached {
		t.Fatal("an update for a user sharing no room was kept")
	}

	// Unsigned keys (a client that uploaded them so): taken.
	unsigned := remoteDeviceKeys(t, bob.ID, "UNSIGNED", newEdKey(t))
	delete(unsigned, "signatures")
	sendEDUs(t, hs2, hs1, deviceListEDU(map[string]any{"user_id": bob.ID, "device_id": "UNSIGNED", "stream_id": last + 1,
		"prev_id": []int64{last}, "keys": unsigned}))
	waitFor(t, "the unsigned device to be taken", func() bool { return hasDevice(alice.query(0, bob.ID), bob.ID, "UNSIGNED") })

	// m.signing_key_update: another server's, and a self-signing key not
	// signed by the master key, are dropped; bob's server's is kept.
	master, ssk := newEdKey(t), newEdKey(t)
	body := crossSigningBody(t, bob, master, ssk, newEdKey(t))
	badSSK := crossSigningBody(t, bob, master, newEdKey(t), newEdKey(t))["self_signing_key"].(map[string]any)
	badSSK["signatures"] = map[string]any{bob.ID: map[string]any{"ed25519:" + master.pub: "bm90IGEgc2lnbmF0dXJl"}}
	sendEDUs(t, hs3, hs1, map[string]any{"edu_type": "m.signing_key_update", "content": map[string]any{
		"user_id": bob.ID, "master_key": body["master_key"], "self_signing_key": body["self_signing_key"]}})
	sendEDUs(t, hs2, hs1, map[string]any{"edu_type": "m.signing_key_update", "content": map[string]any{
		"user_id": bob.ID, "master_key": body["master_key"], "self_signing_key": badSSK}})
	if cs, _ := hs1.DB.CrossSigningKeys(ctx, bob.ID); len(cs) != 0 {
		t.Fatalf("dropped signing key updates kept: %s", cs)
	}
	sendEDUs(t, hs2, hs1, map[string]any{"edu_type": "m.signing_key_update", "content": map[string]any{
		"user_id": bob.ID, "master_key": body["master_key"], "self_signing_key": body["self_signing_key"]}})
	r = alice.query(0, bob.ID)
	if fedtest.Get(r.Body, "master_keys", bob.ID, "keys", "ed25519:"+master.pub) != master.pub ||
		fedtest.Get(r.Body, "self_signing_keys", bob.ID, "keys", "ed25519:"+ssk.pub) != ssk.pub {
		t.Fatalf("after bob's server's signing key update: %s", r.Raw)
	}
}

// A to-device message goes to another server's user's devices (one
// device, or all with "*"), both ways, and reaches each device once: the
// client's retry of a transaction and the origin's repeat of a message_id
// deliver nothing more; a message whose sender is not the origin's, or
// that names a user not of the receiving server, is dropped.
func TestToDeviceAcrossServers(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2, hs3 := n.Start("hs1"), n.Start("hs2"), n.Start("hs3")
	alice := newUser(t, hs1, "alice", "ALICE1")
	bob := newUser(t, hs2, "bob", "BOB1")
	bob2 := bob.login("BOB2")
	since1, since2, aliceSince := bob.since(), bob2.since(), alice.since()

	alice.must("PUT", "/sendToDevice/m.test/txn1", map[string]any{"messages": map[string]any{bob.ID: map[string]any{"*": map[string]any{"n": 1}}}})
	alice.must("PUT", "/sendToDevice/m.test/txn2", map[string]any{"messages": map[string]any{bob.ID: map[string]any{"BOB1": map[string]any{"n": 2}}}})
	alice.must("PUT", "/sendToDevice/m.test/txn1", map[string]any{"messages": map[string]any{bob.ID: map[string]any{"*": map[string]any{"n": 1}}}})

	var got1, got2 []float64
	collect := func(d *user, since string, got *[]float64, want int) string {
		s := d.syncUntil(since, "to-device messages", func(s map[string]any) bool {
			for _, e := range asMap(s["to_device"])["events"].([]any) {
				if fedtest.Get(e, "sender") != alice.ID || fedtest.Get(e, "type") != "m.test" {
					t.Fatalf("%s got %v", d.DeviceID, e)
				}
				n, _ := fedtest.Get(e, "content", "n").(float64)
				*got = append(*got, n)
			}
			return len(*got) >= want
		})
		return next(s)
	}
	since1 = collect(bob, since1, &got1, 2)
	since2 = collect(bob2, since2, &got2, 1)
	if len(got1) != 2 || got1[0] != 1 || got1[1] != 2 || len(got2) != 1 || got2[0] != 1 {
		t.Fatalf("BOB1 got %v, BOB2 got %v", got1, got2)
	}

	// The other way, and what must be dropped, then a marker: everything
	// before it was handled by then.
	bob.must("PUT", "/sendToDevice/m.test/b1", map[string]any{"messages": map[string]any{alice.ID: map[string]any{"ALICE1": map[string]any{"n": 3}}}})
	alice.syncUntil(aliceSince, "bob's message", func(s map[string]any) bool {
		evs, _ := fedtest.Get(s, "to_device", "events").([]any)
		return len(evs) == 1 && fedtest.Get(evs[0], "sender") == bob.ID && fedtest.Get(evs[0], "content", "n") == float64(3)
	})
	edu := func(sender, recipient, messageID string, n int) map[string]any {
		return map[string]any{"edu_type": "m.direct_to_device", "content": map[string]any{
			"sender": sender, "type": "m.test", "message_id": messageID,
			"messages": map[string]any{recipient: map[string]any{"BOB1": map[string]any{"n": n}}}}}
	}
	sendEDUs(t, hs1, hs2, edu(alice.ID, bob.ID, "m1", 10))
	sendEDUs(t, hs1, hs2, edu(alice.ID, bob.ID, "m1", 11))       // a repeat
	sendEDUs(t, hs3, hs2, edu(alice.ID, bob.ID, "m2", 12))       // not hs3's user
	sendEDUs(t, hs1, hs2, edu(alice.ID, "@carol:hs3", "m3", 13)) // not hs2's user
	sendEDUs(t, hs1, hs2, map[string]any{"edu_type": "m.direct_to_device", "content": map[string]any{"sender": alice.ID}})
	alice.must("PUT", "/sendToDevice/m.test/txn3", map[string]any{"messages": map[string]any{bob.ID: map[string]any{"BOB1": map[string]any{"n": 99}}}})
	got1 = nil
	collect(bob, since1, &got1, 2)
	if len(got1) != 2 || got1[0] != 10 || got1[1] != 99 {
		t.Fatalf("BOB1 then got %v, want [10 99]", got1)
	}
	if s := bob2.sync(since2, 0); len(asMap(s["to_device"])["events"].([]any)) != 0 {
		t.Fatalf("BOB2 got more: %v", s["to_device"])
	}
}

// A to-device message for a server that is down is delivered once it is
// back, also when the sending server restarted meanwhile (as Complement's
// TestToDeviceMessagesOverFederation).
func TestToDeviceWhileServerDown(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	alice := newUser(t, hs1, "alice", "ALICE1")
	bob := newUser(t, hs2, "bob", "BOB1")
	bobSince := bob.since()

	hs2.Stop()
	alice.must("PUT", "/sendToDevice/my.test.type/t1", map[string]any{"messages": map[string]any{bob.ID: map[string]any{"BOB1": map[string]any{"my_key": "my_value"}}}})
	hs1.Restart()
	hs2.Restart()
	// Any request from hs2 makes hs1 retry at once.
	bob.must("PUT", "/sendToDevice/m.ping/p1", map[string]any{"messages": map[string]any{alice.ID: map[string]any{"*": map[string]any{}}}})
	var got []any
	bob.syncUntil(bobSince, "alice's message", func(s map[string]any) bool {
		evs, _ := fedtest.Get(s, "to_device", "events").([]any)
		got = append(got, evs...)
		return len(got) > 0
	})
	if len(got) != 1 || fedtest.Get(got[0], "type") != "my.test.type" || fedtest.Get(got[0], "content", "my_key") != "my_value" || fedtest.Get(got[0], "sender") != alice.ID {
		t.Fatalf("bob got %v", got)
	}
}

// A server cannot grow its user's cached device list without end: new
// devices past 1,000 are dropped.
func TestDeviceListUpdateBound(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	ctx := context.Background()
	alice := newUser(t, hs1, "alice", "ALICE1")
	bob := newUser(t, hs2, "bob", "BOB1")
	bob.uploadKeys(1)
	sharedRoom(t, alice, bob)
	alice.query(0, bob.ID)
	st, err := hs1.DB.RemoteDeviceListState(ctx, bob.ID)
	if err != nil || !st.Cached || st.Stale {
		t.Fatalf("hs1's cache of bob: %+v %v", st, err)
	}
	last := st.StreamID
	for batch := range 10 {
		var edus []map[string]any
		for i := range 100 {
			if batch == 9 && i == 99 {
				break // 999 new devices: 1,000 with BOB1
			}
			edus = append(edus, deviceListEDU(map[string]any{"user_id": bob.ID, "device_id": fmt.Sprintf("D%d-%d", batch, i),
				"stream_id": last + 1, "prev_id": []int64{last}}))
			last++
		}
		sendEDUs(t, hs2, hs1, edus...)
	}
	sendEDUs(t, hs2, hs1, deviceListEDU(map[string]any{"user_id": bob.ID, "device_id": "ONE-TOO-MANY", "stream_id": last + 1, "prev_id": []int64{last}}))
	if n, _ := hs1.DB.CountRemoteDevices(ctx, bob.ID); n != 1000 {
		t.Fatalf("%d devices cached, want 1000", n)
	}
	if st, _ := hs1.DB.RemoteDeviceListState(ctx, bob.ID); st.StreamID != last || st.Stale {
		t.Fatalf("after the bound: %+v, want stream %d", st, last)
	}
}
