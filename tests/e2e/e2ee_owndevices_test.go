package e2e

import (
	"slices"
	"testing"
)

// A user's own devices hear of a new device at login (before it uploads
// keys) and of a renamed one, as on Synapse: clients such as matrix-nio learn
// of their own new devices only through device_lists.changed.
func TestE2EEOwnNewDeviceInDeviceLists(t *testing.T) {
	s := start(t, nil)
	old := e2eeUser(t, s, "dave", "DAVEOLD")
	since := old.sync(t, "", 0)["next_batch"].(string)

	e2eeLogin(t, s, "dave", "DAVENEW")
	body := old.sync(t, since, 3000)
	if ch, _ := deviceLists(body); !slices.Contains(ch, old.userID) {
		t.Fatalf("after a login, own device_lists.changed = %v, want %s", ch, old.userID)
	}
	since = body["next_batch"].(string)

	// Logging in again with the same device ID is no new device.
	e2eeLogin(t, s, "dave", "DAVENEW")
	body = old.sync(t, since, 0)
	if ch, _ := deviceLists(body); slices.Contains(ch, old.userID) {
		t.Fatalf("a repeated login of a known device reported as a change: %v", ch)
	}
	since = body["next_batch"].(string)

	do(t, "PUT", v3(s, "devices", "DAVENEW"), old.token, map[string]any{"display_name": "Laptop"}).want(t, 200, "")
	body = old.sync(t, since, 3000)
	if ch, _ := deviceLists(body); !slices.Contains(ch, old.userID) {
		t.Fatalf("after a rename, own device_lists.changed = %v, want %s", ch, old.userID)
	}
}

// Claiming a device's one-time key moves the stream: the claimed device's
// sync wakes with its lower device_one_time_keys_count (so it can upload
// more), and the claimer's next sync carries a new next_batch. matrix-nio
// answers a key request only after a sync with a new next_batch follows
// the claim; with the token unchanged it never sends the forwarded key.
func TestE2EEKeyClaimAdvancesSync(t *testing.T) {
	s := start(t, nil)
	old := e2eeUser(t, s, "dave", "DAVEOLD")
	fresh := e2eeLogin(t, s, "dave", "DAVENEW")
	fresh.upload(t, map[string]any{"device_keys": fresh.deviceKeys(t), "one_time_keys": fresh.otks(t, 0, 1),
		"fallback_keys": map[string]any{"signed_curve25519:FB1": fresh.otk(t, 99, true)}}).want(t, 200, "")
	oldSince := old.sync(t, "", 0)["next_batch"].(string)
	freshBody := fresh.sync(t, "", 0)
	freshSince := freshBody["next_batch"].(string)
	if n := jget(freshBody, "device_one_time_keys_count", "signed_curve25519"); n != float64(1) {
		t.Fatalf("one-time key count before the claim = %v, want 1", n)
	}

	claim := func() {
		t.Helper()
		r := do(t, "POST", v3(s, "keys", "claim"), old.token, map[string]any{
			"one_time_keys": map[string]any{old.userID: map[string]string{"DAVENEW": "signed_curve25519"}},
		}).want(t, 200, "")
		if jget(r.Body, "one_time_keys", old.userID, "DAVENEW") == nil {
			t.Fatalf("claim for the user's own other device returned no key: %s", r.Raw)
		}
	}
	claim()
	body := fresh.sync(t, freshSince, 3000)
	if body["next_batch"] == freshSince {
		t.Fatal("the claimed device's sync did not advance after its one-time key was claimed")
	}
	if n := jget(body, "device_one_time_keys_count", "signed_curve25519"); n != float64(0) {
		t.Fatalf("one-time key count after the claim = %v, want 0", n)
	}
	freshSince = body["next_batch"].(string)
	if b := old.sync(t, oldSince, 200); b["next_batch"] == oldSince {
		t.Fatal("the claimer's sync kept its next_batch after the claim")
	}

	// Out of one-time keys: the fallback key is handed out, and the device
	// hears that it is used up.
	claim()
	body = fresh.sync(t, freshSince, 3000)
	if body["next_batch"] == freshSince {
		t.Fatal("the claimed device's sync did not advance after its fallback key was claimed")
	}
	if types := jstrs(body["device_unused_fallback_key_types"]); len(types) != 0 {
		t.Fatalf("unused fallback key types after the claim = %v, want none", types)
	}

	// The fallback key is handed out again until the device replaces it.
	claim()
}
