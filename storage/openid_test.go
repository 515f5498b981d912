package storage

import (
	"context"
	"errors"
	"testing"
)

func TestOpenIDTokensExpire(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	mustWrite(t, db, func(tx *Tx) error { return tx.InsertOpenIDToken(ctx, []byte("h1"), "@a:x", 1000, 0) })
	if u, err := db.OpenIDTokenOwner(ctx, []byte("h1"), 999); err != nil || u != "@a:x" {
		t.Fatalf("owner before expiry = %q, %v", u, err)
	}
	if _, err := db.OpenIDTokenOwner(ctx, []byte("h1"), 1000); !errors.Is(err, ErrNotFound) {
		t.Fatalf("owner at expiry: %v", err)
	}
	// Issuing another token drops the expired ones.
	mustWrite(t, db, func(tx *Tx) error { return tx.InsertOpenIDToken(ctx, []byte("h2"), "@b:x", 5000, 2000) })
	var n int
	if err := db.q().QueryRowContext(ctx, `SELECT COUNT(*) FROM openid_tokens`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("tokens kept = %d, %v; want 1", n, err)
	}
}
