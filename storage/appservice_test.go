package storage

import (
	"context"
	"strings"
	"testing"
)

// Appservice delivery state: one transaction in flight at a time, IDs that
// only grow, queued typing and presence replaced by key.
func TestAppServiceTxns(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	write := func(fn func(tx *Tx) error) error { return db.Write(ctx, fn) }
	if err := write(func(tx *Tx) error { return tx.EnsureAppService(ctx, "as", 5) }); err != nil {
		t.Fatal(err)
	}
	// Known already: the position is kept.
	if err := write(func(tx *Tx) error { return tx.EnsureAppService(ctx, "as", 50) }); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"m.typing !a", "m.typing !b", "m.typing !a"} {
		if err := write(func(tx *Tx) error { return tx.QueueAppService(ctx, "as", "ephemeral", key, []byte(`{"k":"`+key+`"}`)) }); err != nil {
			t.Fatal(err)
		}
	}
	q, err := db.AppServiceQueue(ctx, "as", 10)
	if err != nil || len(q) != 2 || !strings.Contains(string(q[1].Content), "!a") {
		t.Fatalf("queue = %+v, %v", q, err)
	}
	var id int64
	start := func(body string) error {
		return write(func(tx *Tx) (err error) {
			id, err = tx.StartAppServiceTxn(ctx, AppServiceTxn{ASID: "as", Pos: 9, QueuedUpTo: q[1].NID, Body: []byte(body), Events: 1})
			return err
		})
	}
	if err := start(`{"events":[1]}`); err != nil || id != 1 {
		t.Fatalf("first transaction: %d, %v", id, err)
	}
	if err := start(`{"events":[2]}`); err == nil {
		t.Fatal("a second transaction started while one is in flight")
	}
	st, err := db.AppServiceState(ctx, "as")
	if err != nil || st.Pos != 9 || st.LastTxn != 1 || string(st.TxnBody) != `{"events":[1]}` {
		t.Fatalf("state = %+v, %v", st, err)
	}
	if q, _ := db.AppServiceQueue(ctx, "as", 10); len(q) != 0 {
		t.Fatalf("queue after the transaction took it: %+v", q)
	}
	if err := write(func(tx *Tx) error { return tx.FailAppServiceTxn(ctx, "as", 100, "503") }); err != nil {
		t.Fatal(err)
	}
	if st, _ := db.AppServiceState(ctx, "as"); st.Failures != 1 || st.LastError != "503" || st.TxnBody == nil {
		t.Fatalf("after a failure: %+v", st)
	}
	if err := write(func(tx *Tx) error { return tx.FinishAppServiceTxn(ctx, "as", 1, 200) }); err != nil {
		t.Fatal(err)
	}
	if err := start(`{"events":[3]}`); err != nil || id != 2 {
		t.Fatalf("next transaction: %d, %v", id, err)
	}
	if _, err := db.AppServiceState(ctx, "nope"); err != ErrNotFound {
		t.Fatalf("unknown appservice: %v", err)
	}
}
