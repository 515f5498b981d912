package storage

import (
	"context"
	"errors"
	"testing"
)

func mustWrite(t *testing.T, db *DB, fn func(*Tx) error) {
	t.Helper()
	if err := db.Write(context.Background(), fn); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func TestAccounts(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	a := Account{UserID: "@alice:x", Localpart: "alice", PasswordHash: "h", IsAdmin: true, CreatedTS: 5, DisplayName: "Alice"}
	mustWrite(t, db, func(tx *Tx) error { return tx.InsertAccount(ctx, a) })
	if err := db.Write(ctx, func(tx *Tx) error { return tx.InsertAccount(ctx, a) }); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate insert err = %v, want ErrExists", err)
	}
	got, err := db.Account(ctx, "@alice:x")
	if err != nil || *got != a {
		t.Fatalf("Account = %+v, %v; want %+v", got, err, a)
	}
	if got, err := db.AccountByLocalpart(ctx, "ALICE"); err != nil || got.UserID != a.UserID {
		t.Fatalf("AccountByLocalpart = %+v, %v", got, err)
	}
	if _, err := db.Account(ctx, "@bob:x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing account err = %v", err)
	}
	mustWrite(t, db, func(tx *Tx) error {
		if err := tx.SetDisplayName(ctx, a.UserID, "A2"); err != nil {
			return err
		}
		if err := tx.SetAvatarURL(ctx, a.UserID, "mxc://x/y"); err != nil {
			return err
		}
		return tx.SetPasswordHash(ctx, a.UserID, "h2")
	})
	got, _ = db.Account(ctx, a.UserID)
	if got.DisplayName != "A2" || got.AvatarURL != "mxc://x/y" || got.PasswordHash != "h2" {
		t.Fatalf("after updates: %+v", got)
	}
	if err := db.Write(ctx, func(tx *Tx) error { return tx.SetDisplayName(ctx, "@nobody:x", "n") }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update of missing account err = %v", err)
	}
	mustWrite(t, db, func(tx *Tx) error { return tx.Deactivate(ctx, a.UserID, true) })
	got, _ = db.Account(ctx, a.UserID)
	if !got.Deactivated || got.PasswordHash != "" || got.DisplayName != "" || got.AvatarURL != "" {
		t.Fatalf("after erase-deactivate: %+v", got)
	}
	list, err := db.Accounts(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("Accounts = %v, %v", list, err)
	}
}

func TestDevicesAndTokens(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	mustWrite(t, db, func(tx *Tx) error {
		return tx.InsertAccount(ctx, Account{UserID: "@a:x", Localpart: "a", CreatedTS: 1})
	})
	d := Device{UserID: "@a:x", DeviceID: "D1", DisplayName: "phone", CreatedTS: 10, LastSeenIP: "1.2.3.4"}
	mustWrite(t, db, func(tx *Tx) error { return tx.UpsertDevice(ctx, d, DeviceTokens{AccessHash: []byte("t1")}) })
	o, err := db.TokenOwner(ctx, []byte("t1"))
	if err != nil || o.UserID != "@a:x" || o.DeviceID != "D1" || o.AccessExpiresTS != 0 {
		t.Fatalf("TokenOwner = %+v, %v", o, err)
	}
	// Logging in again with the same device ID replaces the token and keeps the name.
	d2 := Device{UserID: "@a:x", DeviceID: "D1", CreatedTS: 20}
	mustWrite(t, db, func(tx *Tx) error {
		return tx.UpsertDevice(ctx, d2, DeviceTokens{AccessHash: []byte("t2"), AccessExpiresTS: 99, RefreshHash: []byte("r2")})
	})
	if _, err := db.TokenOwner(ctx, []byte("t1")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old token still resolves: %v", err)
	}
	if o, err := db.TokenOwner(ctx, []byte("t2")); err != nil || o.AccessExpiresTS != 99 {
		t.Fatalf("new token = %+v, %v", o, err)
	}
	got, err := db.Device(ctx, "@a:x", "D1")
	if err != nil || got.DisplayName != "phone" || got.CreatedTS != 10 {
		t.Fatalf("device after re-login = %+v, %v", got, err)
	}
	mustWrite(t, db, func(tx *Tx) error {
		dev, err := tx.DeviceByRefreshToken(ctx, []byte("r2"))
		if err != nil || dev.DeviceID != "D1" {
			t.Errorf("DeviceByRefreshToken = %+v, %v", dev, err)
		}
		return tx.RefreshDeviceTokens(ctx, "@a:x", "D1", []byte("r2"), DeviceTokens{AccessHash: []byte("t3"), RefreshHash: []byte("r3")})
	})
	if o, err := db.TokenOwner(ctx, []byte("t3")); err != nil || !o.HasPrevRefresh {
		t.Fatalf("after refresh: %+v, %v; want HasPrevRefresh", o, err)
	}
	mustWrite(t, db, func(tx *Tx) error {
		if _, err := tx.DeviceByRefreshToken(ctx, []byte("r2")); err != nil {
			t.Errorf("previous refresh token not honoured before the new pair is used: %v", err)
		}
		return tx.RevokePrevRefreshToken(ctx, "@a:x", "D1")
	})
	mustWrite(t, db, func(tx *Tx) error {
		if _, err := tx.DeviceByRefreshToken(ctx, []byte("r2")); !errors.Is(err, ErrNotFound) {
			t.Errorf("revoked refresh token still resolves: %v", err)
		}
		return tx.UpsertDevice(ctx, Device{UserID: "@a:x", DeviceID: "D2", CreatedTS: 30}, DeviceTokens{AccessHash: []byte("u1")})
	})
	mustWrite(t, db, func(tx *Tx) error { return tx.SetDeviceDisplayName(ctx, "@a:x", "D2", "laptop") })
	if err := db.Write(ctx, func(tx *Tx) error { return tx.SetDeviceDisplayName(ctx, "@a:x", "NOPE", "x") }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rename of missing device err = %v", err)
	}
	mustWrite(t, db, func(tx *Tx) error { return tx.TouchDevice(ctx, "@a:x", "D2", 777, "5.6.7.8") })
	devs, err := db.Devices(ctx, "@a:x")
	if err != nil || len(devs) != 2 || devs[1].DisplayName != "laptop" || devs[1].LastSeenTS != 777 || devs[1].LastSeenIP != "5.6.7.8" {
		t.Fatalf("Devices = %+v, %v", devs, err)
	}
	var deleted []string
	mustWrite(t, db, func(tx *Tx) error {
		var err error
		deleted, err = tx.DeleteDevices(ctx, "@a:x", nil, "D2")
		return err
	})
	if len(deleted) != 1 || deleted[0] != "D1" {
		t.Fatalf("deleted = %v, want [D1]", deleted)
	}
	if _, err := db.TokenOwner(ctx, []byte("t3")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted device's token resolves: %v", err)
	}
	mustWrite(t, db, func(tx *Tx) error {
		var err error
		deleted, err = tx.DeleteDevices(ctx, "@a:x", []string{"D2", "GONE"}, "")
		return err
	})
	if len(deleted) != 1 || deleted[0] != "D2" {
		t.Fatalf("deleted = %v, want [D2]", deleted)
	}
	// A device for an unknown user violates the foreign key.
	if err := db.Write(ctx, func(tx *Tx) error {
		return tx.UpsertDevice(ctx, Device{UserID: "@ghost:x", DeviceID: "G"}, DeviceTokens{AccessHash: []byte("g")})
	}); err == nil {
		t.Fatal("device of an unknown account was stored")
	}
}

// Admin flags, reading an account inside a write, and finding a device by
// its access token.
func TestAdminFlagAndTokenLookup(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	mustWrite(t, db, func(tx *Tx) error {
		if err := tx.InsertAccount(ctx, Account{UserID: "@u:x", Localpart: "u", CreatedTS: 1}); err != nil {
			return err
		}
		if err := tx.SetAdmin(ctx, "@u:x", true); err != nil {
			return err
		}
		acc, err := tx.Account(ctx, "@u:x")
		if err != nil || !acc.IsAdmin {
			t.Errorf("account in the write = %+v, %v", acc, err)
		}
		return tx.UpsertDevice(ctx, Device{UserID: "@u:x", DeviceID: "D", CreatedTS: 1}, DeviceTokens{AccessHash: []byte("hash")})
	})
	if d, err := db.DeviceByAccessToken(ctx, []byte("hash")); err != nil || d.UserID != "@u:x" || d.DeviceID != "D" {
		t.Fatalf("DeviceByAccessToken = %+v, %v", d, err)
	}
	if _, err := db.DeviceByAccessToken(ctx, []byte("other")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown token: %v", err)
	}
	mustWrite(t, db, func(tx *Tx) error { return tx.SetAdmin(ctx, "@u:x", false) })
	if acc, _ := db.Account(ctx, "@u:x"); acc.IsAdmin {
		t.Fatal("admin flag not cleared")
	}
	if err := db.Write(ctx, func(tx *Tx) error { return tx.SetAdmin(ctx, "@nobody:x", true) }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("admin flag of an unknown account: %v", err)
	}
}
