package storage

import (
	"context"
	"testing"
)

// TestFederationTxns: answers to received transactions are kept per
// origin and transaction ID until pruned by age.
func TestFederationTxns(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	mustWrite(t, db, func(tx *Tx) error {
		if err := tx.StoreFederationTxn(ctx, "a.test", "t1", []byte(`{"pdus":{}}`), 1000); err != nil {
			return err
		}
		return tx.StoreFederationTxn(ctx, "a.test", "t2", []byte(`{"pdus":{"$x":{}}}`), 5000)
	})
	if resp, found, err := db.FederationTxnResponse(ctx, "a.test", "t2"); err != nil || !found || string(resp) != `{"pdus":{"$x":{}}}` {
		t.Fatalf("t2: %s %v %v", resp, found, err)
	}
	if _, found, _ := db.FederationTxnResponse(ctx, "b.test", "t2"); found {
		t.Fatal("another origin's transaction of the same ID found")
	}
	mustWrite(t, db, func(tx *Tx) error { return tx.PruneFederationTxns(ctx, 2000) })
	if _, found, _ := db.FederationTxnResponse(ctx, "a.test", "t1"); found {
		t.Fatal("old transaction kept")
	}
	if _, found, _ := db.FederationTxnResponse(ctx, "a.test", "t2"); !found {
		t.Fatal("recent transaction pruned")
	}
}
