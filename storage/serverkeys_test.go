package storage

import (
	"context"
	"errors"
	"testing"
)

func TestServerKeysMerge(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	store := func(keys ...ServerKey) {
		t.Helper()
		mustWrite(t, db, func(tx *Tx) error { return tx.StoreServerKeys(ctx, keys) })
	}
	get := func(server string) map[string]ServerKey {
		t.Helper()
		list, err := db.ServerKeys(ctx, server)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]ServerKey{}
		for _, k := range list {
			out[k.KeyID] = k
		}
		return out
	}
	store(ServerKey{ServerName: "a.test", KeyID: "ed25519:1", PublicKey: []byte("p1"), ValidUntilTS: 2000, FetchedTS: 10},
		ServerKey{ServerName: "b.test", KeyID: "ed25519:1", PublicKey: []byte("q1"), ValidUntilTS: 500, FetchedTS: 10})
	// An older response (through a notary) does not shorten the validity.
	store(ServerKey{ServerName: "a.test", KeyID: "ed25519:1", PublicKey: []byte("p1"), ValidUntilTS: 1000, FetchedTS: 20})
	if k := get("a.test")["ed25519:1"]; k.ValidUntilTS != 2000 || k.ExpiredTS != 0 || k.FetchedTS != 20 {
		t.Fatalf("after older response: %+v", k)
	}
	// The key expires, and stays expired when a stale response lists it as current.
	store(ServerKey{ServerName: "a.test", KeyID: "ed25519:1", PublicKey: []byte("p1"), ExpiredTS: 1500, FetchedTS: 30},
		ServerKey{ServerName: "a.test", KeyID: "ed25519:2", PublicKey: []byte("p2"), ValidUntilTS: 9000, FetchedTS: 30})
	store(ServerKey{ServerName: "a.test", KeyID: "ed25519:1", PublicKey: []byte("p1"), ValidUntilTS: 3000, FetchedTS: 40})
	keys := get("a.test")
	if k := keys["ed25519:1"]; k.ExpiredTS != 1500 || k.ValidUntilTS != 3000 {
		t.Fatalf("expired key: %+v", k)
	}
	if k := keys["ed25519:2"]; string(k.PublicKey) != "p2" || k.ValidUntilTS != 9000 {
		t.Fatalf("new key: %+v", k)
	}
	// A different public key under a known ID replaces the entry.
	store(ServerKey{ServerName: "a.test", KeyID: "ed25519:1", PublicKey: []byte("other"), ValidUntilTS: 100, FetchedTS: 50})
	if k := get("a.test")["ed25519:1"]; string(k.PublicKey) != "other" || k.ExpiredTS != 0 || k.ValidUntilTS != 100 {
		t.Fatalf("replaced key: %+v", k)
	}
	if k := get("b.test"); len(k) != 1 || string(k["ed25519:1"].PublicKey) != "q1" {
		t.Fatalf("other server touched: %+v", k)
	}
	if k := get("c.test"); len(k) != 0 {
		t.Fatalf("unknown server: %+v", k)
	}
}

func TestServerKeyResponses(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	if _, err := db.ServerKeyResponse(ctx, "a.test"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no response: %v", err)
	}
	put := func(js string, fetched int64) {
		mustWrite(t, db, func(tx *Tx) error {
			return tx.StoreServerKeyResponse(ctx, "a.test", ServerKeyResponse{JSON: []byte(js), ValidUntilTS: fetched + 1, FetchedTS: fetched})
		})
	}
	put(`{"n":1}`, 10)
	put(`{"n":2}`, 20)
	put(`{"n":0}`, 5) // a slower fetch finishing last does not win
	r, err := db.ServerKeyResponse(ctx, "a.test")
	if err != nil || string(r.JSON) != `{"n":2}` || r.ValidUntilTS != 21 || r.FetchedTS != 20 {
		t.Fatalf("response = %+v, %v", r, err)
	}
}

func TestOwnSigningKeysRotate(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	use := func(id, pub string, now int64) {
		mustWrite(t, db, func(tx *Tx) error { return tx.UseOwnSigningKey(ctx, id, []byte(pub), now) })
	}
	use("ed25519:a", "A", 100)
	use("ed25519:a", "A", 200) // a restart with the same key changes nothing
	use("ed25519:b", "B", 300)
	keys, err := db.OwnSigningKeys(ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys = %+v, %v", keys, err)
	}
	if a := keys[0]; a.KeyID != "ed25519:a" || a.FirstUsedTS != 100 || a.ExpiredTS != 300 {
		t.Fatalf("old key = %+v", a)
	}
	if b := keys[1]; b.KeyID != "ed25519:b" || b.ExpiredTS != 0 || string(b.PublicKey) != "B" {
		t.Fatalf("current key = %+v", b)
	}
	// Going back to the first key makes it current and retires the second.
	use("ed25519:a", "A", 400)
	keys, _ = db.OwnSigningKeys(ctx)
	if keys[0].ExpiredTS != 0 || keys[1].ExpiredTS != 400 {
		t.Fatalf("after going back: %+v", keys)
	}
}
