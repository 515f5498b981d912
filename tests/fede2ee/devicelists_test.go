package fede2ee

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"matrixhs/tests/fedtest"
)

// sharedRoom makes alice (hs1) and bob (hs2) members of an encrypted room
// and returns it with each one's sync token from before bob joined.
func sharedRoom(t *testing.T, alice, bob *user) (roomID, aliceSince, bobSince string) {
	t.Helper()
	roomID = alice.createRoom(encryptedRoom(bob.ID))
	aliceSince, bobSince = alice.since(), bob.since()
	bob.join(roomID, alice.hs.Name)
	alice.waitMembers(roomID, alice.ID, bob.ID)
	return roomID, aliceSince, bobSince
}

// hasDevice reports whether a /keys/query answer holds a device of user.
func hasDevice(r response, userID, deviceID string) bool {
	return fedtest.Get(r.Body, "device_keys", userID, deviceID) != nil
}

// deviceName is a device's display name in a /keys/query answer.
func deviceName(r response, userID, deviceID string) any {
	return fedtest.Get(r.Body, "device_keys", userID, deviceID, "unsigned", "device_display_name")
}

// A remote user's devices, as their server changes them, reach the users
// sharing a room with them: /sync lists the user in device_lists.changed
// and /keys/query answers from the cache kept by m.device_list_update and
// m.signing_key_update EDUs (new devices, keys, names, deletions,
// cross-signing keys), still when their server is down.
func TestDeviceListUpdatesAcrossServers(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	alice := newUser(t, hs1, "alice", "ALICE1")
	bob := newUser(t, hs2, "bob", "BOB1")
	alice.uploadKeys(1)
	bob.uploadKeys(1)
	_, aliceSince, bobSince := sharedRoom(t, alice, bob)

	// Joining, each one's devices change for the other.
	aliceSince = next(alice.syncUntil(aliceSince, "bob in changed after his join", func(s map[string]any) bool { return changedIn(s, bob.ID) }))
	bob.syncUntil(bobSince, "alice in changed after his join", func(s map[string]any) bool { return changedIn(s, alice.ID) })
	r := alice.query(0, bob.ID)
	if !hasDevice(r, bob.ID, "BOB1") || deviceName(r, bob.ID, "BOB1") != "Device BOB1" {
		t.Fatalf("alice's view of bob: %s", r.Raw)
	}
	if st, err := hs1.DB.RemoteDeviceListState(context.Background(), bob.ID); err != nil || !st.Cached || st.Stale {
		t.Fatalf("hs1's cache of bob's devices: %+v %v", st, err)
	}

	// A new device with keys.
	bob2 := bob.login("BOB2")
	aliceSince = next(alice.syncUntil(aliceSince, "bob's new device", func(s map[string]any) bool { return changedIn(s, bob.ID) }))
	bob2.uploadKeys(1)
	alice.queryUntil("BOB2's keys", func(r response) bool { return hasDevice(r, bob.ID, "BOB2") }, bob.ID)

	// A new name, and a deleted device.
	bob.must("PUT", "/devices/BOB2", map[string]any{"display_name": "Bob's laptop"})
	alice.queryUntil("BOB2's new name", func(r response) bool { return deviceName(r, bob.ID, "BOB2") == "Bob's laptop" }, bob.ID)
	deleteDevice(t, bob, "BOB1")
	alice.queryUntil("BOB1 gone", func(r response) bool { return !hasDevice(r, bob.ID, "BOB1") && hasDevice(r, bob.ID, "BOB2") }, bob.ID)

	// Cross-signing keys.
	master, ssk := newEdKey(t), newEdKey(t)
	bob2.must("POST", "/keys/device_signing/upload", crossSigningBody(t, bob2, master, ssk, newEdKey(t)))
	alice.syncUntil(aliceSince, "bob's cross-signing keys", func(s map[string]any) bool { return changedIn(s, bob.ID) })
	r = alice.queryUntil("bob's cross-signing keys", func(r response) bool {
		return fedtest.Get(r.Body, "self_signing_keys", bob.ID, "keys", "ed25519:"+ssk.pub) == ssk.pub
	}, bob.ID)
	if fedtest.Get(r.Body, "master_keys", bob.ID, "keys", "ed25519:"+master.pub) != master.pub || fedtest.Get(r.Body, "user_signing_keys", bob.ID) != nil {
		t.Fatalf("bob's cross-signing keys as alice sees them: %s", r.Raw)
	}

	// All of it came by EDUs into hs1's cache: it answers without hs2.
	hs2.Stop()
	r = alice.query(2000, bob.ID)
	if !hasDevice(r, bob.ID, "BOB2") || hasDevice(r, bob.ID, "BOB1") || len(asMap(r.Body["failures"])) != 0 {
		t.Fatalf("alice's view of bob from hs1's cache: %s", r.Raw)
	}
}

// deleteDevice deletes one of u's devices with the password.
func deleteDevice(t *testing.T, u *user, deviceID string) {
	t.Helper()
	r := u.do("DELETE", "/devices/"+deviceID, map[string]any{})
	r.want(t, http.StatusUnauthorized, "")
	session, _ := r.Body["session"].(string)
	u.must("DELETE", "/devices/"+deviceID, map[string]any{"auth": map[string]any{
		"type": "m.login.password", "session": session, "password": password,
		"identifier": map[string]any{"type": "m.id.user", "user": u.ID},
	}})
}

func next(sync map[string]any) string { return sync["next_batch"].(string) }

// Leaving: when the last room shared with a remote user is left (by
// either), /sync lists them in device_lists.left and the server forgets
// their cached devices; sliding sync's e2ee extension reports the same.
func TestDeviceListsLeftAcrossServers(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	alice := newUser(t, hs1, "alice", "ALICE1")
	bob := newUser(t, hs2, "bob", "BOB1")
	bob.uploadKeys(1)
	room1, aliceSince, _ := sharedRoom(t, alice, bob)
	pos := alice.slidingSync("", 0)["pos"].(string)
	room2, _, _ := sharedRoom(t, alice, bob)
	aliceSince = next(alice.syncUntil(aliceSince, "bob in changed", func(s map[string]any) bool { return changedIn(s, bob.ID) }))
	ss := alice.slidingSync(pos, 0)
	if !slices.Contains(strs(fedtest.Get(ss, "extensions", "e2ee", "device_lists", "changed")), bob.ID) {
		t.Fatalf("sliding sync's e2ee extension without bob in changed: %v", fedtest.Get(ss, "extensions", "e2ee"))
	}
	pos = ss["pos"].(string)
	alice.query(0, bob.ID) // hs1 caches bob's devices
	ctx := context.Background()
	if st, _ := hs1.DB.RemoteDeviceListState(ctx, bob.ID); !st.Cached {
		t.Fatal("hs1 does not cache bob's devices")
	}

	// Still one room shared: not left.
	bob.leave(room1)
	alice.waitMembers(room1, alice.ID)
	s := alice.sync(aliceSince, 0)
	if leftIn(s, bob.ID) {
		t.Fatalf("bob in left while sharing %s: %v", room2, s["device_lists"])
	}
	aliceSince = next(s)

	// alice leaves the last one: bob is left, and forgotten.
	alice.leave(room2)
	alice.syncUntil(aliceSince, "bob in left", func(s map[string]any) bool { return leftIn(s, bob.ID) })
	ss = alice.slidingSync(pos, 0)
	if !slices.Contains(strs(fedtest.Get(ss, "extensions", "e2ee", "device_lists", "left")), bob.ID) {
		t.Fatalf("sliding sync's e2ee extension without bob in left: %v", fedtest.Get(ss, "extensions", "e2ee"))
	}
	waitFor(t, "hs1 to forget bob's devices", func() bool {
		st, err := hs1.DB.RemoteDeviceListState(ctx, bob.ID)
		return err == nil && !st.Cached
	})
	// Untracked, his keys are asked of hs2 each time.
	if r := alice.query(0, bob.ID); !hasDevice(r, bob.ID, "BOB1") {
		t.Fatalf("alice's view of bob after leaving: %s", r.Raw)
	}
}

// waitFor polls cond (a cheap local read) until it holds, for up to 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited in vain for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling a local condition, not waiting for time to pass
	}
}

// slidingSync runs one sliding sync with the e2ee extension (a long-poll
// when pos is set).
func (u *user) slidingSync(pos string, timeoutMS int) map[string]any {
	u.t.Helper()
	q := url.Values{"timeout": {fmt.Sprint(timeoutMS)}}
	if pos != "" {
		q.Set("pos", pos)
	}
	body := `{"conn_id":"e2ee","lists":{"all":{"ranges":[[0,20]],"timeline_limit":1}},"extensions":{"e2ee":{"enabled":true}}}`
	req, err := http.NewRequest("POST", u.hs.URL()+"/_matrix/client/unstable/org.matrix.simplified_msc3575/sync?"+q.Encode(), strings.NewReader(body))
	if err != nil {
		u.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+u.token)
	resp, err := httpClient.Do(req)
	if err != nil {
		u.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &out) != nil {
		u.t.Fatalf("sliding sync: %d %s", resp.StatusCode, raw)
	}
	return out
}

// Device list changes bob makes while hs1 is down reach alice once it is
// back (hs2 keeps them queued, and retries when hs1 is heard from).
func TestDeviceListUpdatesAfterDowntime(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	alice := newUser(t, hs1, "alice", "ALICE1")
	bob := newUser(t, hs2, "bob", "BOB1")
	bob.uploadKeys(1)
	roomID, aliceSince, _ := sharedRoom(t, alice, bob)
	aliceSince = next(alice.syncUntil(aliceSince, "bob in changed", func(s map[string]any) bool { return changedIn(s, bob.ID) }))
	alice.query(0, bob.ID)

	hs1.Stop()
	bob2 := bob.login("BOB2")
	bob2.uploadKeys(1)
	bob.must("PUT", "/devices/BOB1", map[string]any{"display_name": "renamed while hs1 was down"})
	hs1.Restart()

	// Any request from hs1 makes hs2 retry at once.
	alice.sendText(roomID, "back")
	alice.syncUntil(aliceSince, "bob's changes made while hs1 was down", func(s map[string]any) bool { return changedIn(s, bob.ID) })
	alice.queryUntil("BOB2 and BOB1's new name", func(r response) bool {
		return hasDevice(r, bob.ID, "BOB2") && deviceName(r, bob.ID, "BOB1") == "renamed while hs1 was down"
	}, bob.ID)
	if st, err := hs1.DB.RemoteDeviceListState(context.Background(), bob.ID); err != nil || !st.Cached || st.Stale {
		t.Fatalf("hs1's cache of bob after the downtime: %+v %v", st, err)
	}

	// hs2 stopping right after a change (published or not yet) still
	// delivers it once it is back.
	bob.must("PUT", "/devices/BOB2", map[string]any{"display_name": "renamed before hs2 stopped"})
	hs2.Restart()
	alice.queryUntil("BOB2's name from before hs2's restart", func(r response) bool {
		return deviceName(r, bob.ID, "BOB2") == "renamed before hs2 stopped"
	}, bob.ID)
}

// A local user joining a room whose servers shared no room with them sends
// those servers their devices (an m.device_list_update without prev_id,
// so the servers fetch the whole list): hs2 tracks alice's devices at
// once, before anyone there asks for them.
func TestDeviceListSentOnJoin(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	alice := newUser(t, hs1, "alice", "ALICE1")
	bob := newUser(t, hs2, "bob", "BOB1")
	alice.uploadKeys(1)
	roomID := bob.createRoom(map[string]any{"preset": "public_chat"})
	ctx := context.Background()
	if st, _ := hs2.DB.RemoteDeviceListState(ctx, alice.ID); st.Cached {
		t.Fatal("hs2 tracks alice before she joined")
	}
	alice.join(roomID, "hs2")
	waitFor(t, "hs2 to track alice's devices", func() bool {
		st, err := hs2.DB.RemoteDeviceListState(ctx, alice.ID)
		if err != nil || !st.Cached || st.Stale {
			return false
		}
		devs, err := hs2.DB.RemoteDevices(ctx, alice.ID, nil)
		return err == nil && len(devs) == 1 && devs[0].DeviceID == "ALICE1" && devs[0].KeyJSON != nil
	})

	// Also for a device without keys (a fresh login): carol's server tells
	// hs2 of it too.
	carol := newUser(t, hs1, "carol", "CAROL1")
	other := bob.createRoom(map[string]any{"preset": "public_chat"})
	carol.join(other, "hs2")
	waitFor(t, "hs2 to track carol's devices", func() bool {
		st, err := hs2.DB.RemoteDeviceListState(ctx, carol.ID)
		return err == nil && st.Cached && !st.Stale
	})
}

// A remote user's join lists them in device_lists.changed once: the first
// fetch of their list that their server's join notice brings (the devices
// it sends on the join, marked as such) changes nothing the local users
// were not told, so the next change (a new local device) comes alone.
// A real change of a user whose list was never fetched is told: bob, who
// never asked for alice's devices, sees her new one (Complement's
// TestDeviceListsUpdateOverFederation).
func TestDeviceListChangedOnceForAJoin(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	alice := newUser(t, hs1, "alice", "ALICE1")
	bob := newUser(t, hs2, "bob", "BOB1")
	alice.uploadKeys(1)
	bob.uploadKeys(1)
	_, aliceSince, bobSince := sharedRoom(t, alice, bob)
	aliceSince = next(alice.syncUntil(aliceSince, "bob in changed after his join", func(s map[string]any) bool { return changedIn(s, bob.ID) }))
	bobSince = next(bob.syncUntil(bobSince, "alice in changed after his join", func(s map[string]any) bool { return changedIn(s, alice.ID) }))
	waitFor(t, "hs1 to cache bob's devices", func() bool {
		st, err := hs1.DB.RemoteDeviceListState(context.Background(), bob.ID)
		return err == nil && st.Cached && !st.Stale
	})
	alice.login("ALICE2").uploadKeys(1)
	alice.syncUntil(aliceSince, "alice's new device", func(s map[string]any) bool {
		if changedIn(s, bob.ID) {
			t.Fatalf("bob listed in changed again: %v", fedtest.Get(s, "device_lists"))
		}
		return changedIn(s, alice.ID)
	})
	bob.syncUntil(bobSince, "alice's new device", func(s map[string]any) bool { return changedIn(s, alice.ID) })
}
