package storage

import (
	"errors"
	"maps"
	"slices"
	"testing"
)

// One-time key counts inside and outside a write, and the claim marks
// that tell a device's next sync its counts changed.
func TestE2EEKeyCountsAndClaimMarks(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := t.Context()
	e2eeUsers(t, db, map[string][]string{"@a:x": {"D1", "D2"}})
	mustWrite(t, db, func(tx *Tx) error {
		if err := tx.AddOneTimeKeys(ctx, "@a:x", "D1", []OneTimeKey{
			{Algorithm: "signed_curve25519", KeyID: "k1", KeyJSON: []byte(`{"key":"1"}`)},
			{Algorithm: "signed_curve25519", KeyID: "k2", KeyJSON: []byte(`{"key":"2"}`)},
			{Algorithm: "curve25519", KeyID: "k3", KeyJSON: []byte(`"3"`)},
		}); err != nil {
			return err
		}
		counts, err := tx.OneTimeKeyCounts(ctx, "@a:x", "D1")
		if err != nil || !maps.Equal(counts, map[string]int{"signed_curve25519": 2, "curve25519": 1}) {
			t.Errorf("counts inside the write = %v, %v", counts, err)
		}
		var conflict *KeyConflictError
		err = tx.AddOneTimeKeys(ctx, "@a:x", "D1", []OneTimeKey{{Algorithm: "curve25519", KeyID: "k3", KeyJSON: []byte(`"other"`)}})
		if !errors.As(err, &conflict) || conflict.Error() == "" {
			t.Errorf("re-uploading a key ID with other content: %v", err)
		}
		return nil
	})
	if counts, err := db.OneTimeKeyCounts(ctx, "@a:x", "D2"); err != nil || len(counts) != 0 {
		t.Fatalf("another device's counts = %v, %v", counts, err)
	}
	before := db.StreamPosition()
	var woken []string
	db.OnWake(func(w WakeTargets) { woken = append(woken, w.Users...) })
	mustWrite(t, db, func(tx *Tx) error {
		if _, _, err := tx.ClaimKey(ctx, "@a:x", "D1", "signed_curve25519"); err != nil {
			return err
		}
		return tx.MarkKeyCountsChanged(ctx, tx.NextStreamPos(), "@a:x", "D1")
	})
	after := db.StreamPosition()
	for _, c := range []struct {
		device   string
		from, to int64
		want     bool
	}{{"D1", before, after, true}, {"D1", after, after + 5, false}, {"D2", before, after, false}} {
		if got, err := db.KeyCountsChanged(ctx, "@a:x", c.device, c.from, c.to); err != nil || got != c.want {
			t.Errorf("KeyCountsChanged(%s, %d, %d) = %v, %v; want %v", c.device, c.from, c.to, got, err, c.want)
		}
	}
	if !slices.Equal(woken, []string{"@a:x"}) {
		t.Fatalf("a claim woke %v, want the key owner", woken)
	}
}

// Cross-signing keys replace by type; dropping a replaced key's
// signatures removes those it made or those made of it.
func TestE2EECrossSigningKeysAndSignatures(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := t.Context()
	mustWrite(t, db, func(tx *Tx) error {
		for _, k := range [][2]string{{KeyTypeMaster, `{"m":1}`}, {KeyTypeSelfSigning, `{"s":1}`}, {KeyTypeMaster, `{"m":2}`}} {
			if err := tx.SetCrossSigningKey(ctx, "@a:x", k[0], []byte(k[1])); err != nil {
				return err
			}
		}
		keys, err := tx.CrossSigningKeys(ctx, "@a:x")
		if err != nil || len(keys) != 2 || string(keys[KeyTypeMaster]) != `{"m":2}` {
			t.Errorf("keys inside the write = %s, %v", keys, err)
		}
		for _, s := range []CrossSignature{
			{TargetUserID: "@a:x", TargetKeyID: "DEV", SignerUserID: "@a:x", SignerKeyID: "ed25519:ssk", Signature: "1"},
			{TargetUserID: "@a:x", TargetKeyID: "MASTER", SignerUserID: "@a:x", SignerKeyID: "ed25519:DEV", Signature: "2"},
			{TargetUserID: "@a:x", TargetKeyID: "MASTER", SignerUserID: "@b:x", SignerKeyID: "ed25519:usk", Signature: "3"},
			{TargetUserID: "@a:x", TargetKeyID: "MASTER", SignerUserID: "@b:x", SignerKeyID: "ed25519:usk", Signature: "3b"},
		} {
			if err := tx.AddCrossSignature(ctx, s); err != nil {
				return err
			}
		}
		return nil
	})
	if keys, err := db.CrossSigningKeys(ctx, "@a:x"); err != nil || string(keys[KeyTypeSelfSigning]) != `{"s":1}` {
		t.Fatalf("CrossSigningKeys = %s, %v", keys, err)
	}
	if keys, err := db.CrossSigningKeys(ctx, "@nobody:x"); err != nil || len(keys) != 0 {
		t.Fatalf("CrossSigningKeys of nobody = %s, %v", keys, err)
	}
	sigs := func() []string {
		t.Helper()
		got, err := db.CrossSignatures(ctx, "@a:x", []string{"@a:x", "@b:x"})
		if err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, s := range got {
			out = append(out, s.Signature)
		}
		return out
	}
	if got := sigs(); !slices.Equal(got, []string{"1", "2", "3b"}) {
		t.Fatalf("signatures = %v", got)
	}
	if got, _ := db.CrossSignatures(ctx, "@a:x", nil); got != nil {
		t.Fatalf("signatures by nobody = %v", got)
	}
	mustWrite(t, db, func(tx *Tx) error { return tx.DeleteSignaturesBy(ctx, "@a:x", "ed25519:ssk") })
	if got := sigs(); !slices.Equal(got, []string{"2", "3b"}) {
		t.Fatalf("after dropping the self-signing key's signatures: %v", got)
	}
	mustWrite(t, db, func(tx *Tx) error { return tx.DeleteSignaturesOf(ctx, "@a:x", "MASTER") })
	if got := sigs(); len(got) != 0 {
		t.Fatalf("after dropping the master key's signatures: %v", got)
	}
}

// A live backup's auth_data can be replaced; a deleted or unknown one not.
func TestE2EEBackupAuthData(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := t.Context()
	var v int64
	mustWrite(t, db, func(tx *Tx) (err error) {
		v, err = tx.CreateBackupVersion(ctx, "@a:x", "alg", []byte(`{"p":1}`))
		return
	})
	mustWrite(t, db, func(tx *Tx) error {
		if err := tx.UpdateBackupAuthData(ctx, "@a:x", v, []byte(`{"p":2}`)); err != nil {
			return err
		}
		b, err := tx.BackupVersion(ctx, "@a:x", v)
		if err != nil || string(b.AuthData) != `{"p":2}` || b.Algorithm != "alg" || b.Deleted {
			t.Errorf("updated version = %+v, %v", b, err)
		}
		if err := tx.UpdateBackupAuthData(ctx, "@b:x", v, []byte(`{}`)); !errors.Is(err, ErrNotFound) {
			t.Errorf("updating another user's backup: %v", err)
		}
		return tx.DeleteBackupVersion(ctx, "@a:x", v)
	})
	if err := db.Write(ctx, func(tx *Tx) error { return tx.UpdateBackupAuthData(ctx, "@a:x", v, []byte(`{}`)) }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("updating a deleted backup: %v", err)
	}
	if b, err := db.BackupVersion(ctx, "@a:x", v); err != nil || !b.Deleted {
		t.Fatalf("deleted version = %+v, %v", b, err)
	}
	if _, err := db.BackupVersion(ctx, "@a:x", 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("current version with only a deleted one: %v", err)
	}
}

// Joins and leaves reach /sync's device_lists through the member events'
// state_value and their unsigned prev_content: a user who joins is
// changed, a user who leaves the last shared room is left, and a
// profile change (join after join) is neither.
func TestE2EEDeviceListMemberships(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := t.Context()
	k := newRoomKit(t, db, "!dl:x")
	k.create("@a:x", "public", "shared")
	member := func(user, membership, prev string) {
		t.Helper()
		e := k.event("m.room.member", ptr(user), user, map[string]any{"membership": membership})
		if prev != "" {
			e.UnsignedExtra = []byte(`{"prev_content":{"membership":"` + prev + `"}}`)
		}
		out := k.store(EventWrite{Event: e, Placement: Timeline, Extends: true})
		k.state[StateKey{"m.room.member", user}] = out.NID
	}
	check := func(what, viewer string, from int64, changed, left []string) {
		t.Helper()
		ch, lf, err := db.DeviceListChanges(ctx, viewer, from, db.StreamPosition())
		if err != nil || !slices.Equal(ch, changed) || !slices.Equal(lf, left) {
			t.Fatalf("%s: %s sees changed %v, left %v (%v); want %v, %v", what, viewer, ch, lf, err, changed, left)
		}
	}
	start := db.StreamPosition()
	member("@b:x", "join", "")
	check("b joined", "@a:x", start, []string{"@b:x"}, []string{})
	check("b joined", "@b:x", start, []string{"@a:x", "@b:x"}, []string{})

	mid := db.StreamPosition()
	member("@b:x", "join", "join") // a profile change
	check("b changed profile", "@a:x", mid, []string{}, []string{})

	mid = db.StreamPosition()
	member("@b:x", "leave", "join")
	check("b left", "@a:x", mid, []string{}, []string{"@b:x"})
	check("b left", "@b:x", mid, []string{}, []string{"@a:x"})

	mid = db.StreamPosition()
	member("@c:x", "invite", "")
	member("@c:x", "leave", "invite") // a rejected invite was never shared
	check("c rejected an invite", "@a:x", mid, []string{}, []string{})
}
