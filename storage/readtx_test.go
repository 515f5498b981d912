package storage

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

func putAD(t *testing.T, db *DB, typ, content string) {
	t.Helper()
	mustWrite(t, db, func(tx *Tx) error {
		_, err := tx.PutAccountData(context.Background(), "@a:x", "", typ, []byte(content))
		return err
	})
}

// Reads in a read transaction see the state as of its first read.
func TestReadTxIsASnapshot(t *testing.T) {
	db, _ := openTestDB(t)
	putAD(t, db, "t", `{"v":1}`)
	ctx, release, err := db.ReadTx(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := db.AccountData(ctx, "@a:x", "", "t"); err != nil || string(got) != `{"v":1}` {
		t.Fatalf("first read = %s, %v", got, err)
	}
	putAD(t, db, "t", `{"v":2}`)
	if got, _ := db.AccountData(ctx, "@a:x", "", "t"); string(got) != `{"v":1}` {
		t.Fatalf("read in the transaction after a commit = %s; want the snapshot's", got)
	}
	if got, _ := db.AccountData(context.Background(), "@a:x", "", "t"); string(got) != `{"v":2}` {
		t.Fatalf("read outside = %s", got)
	}
	release()
	if got, _ := db.AccountData(ctx, "@a:x", "", "t"); string(got) != `{"v":2}` {
		t.Fatalf("read after release = %s", got)
	}
}

// Many concurrent read transactions, each running statements nobody has
// prepared yet, never wait on each other for a connection: past the
// allowed number they run without one.
func TestReadTxNeverExhaustsThePool(t *testing.T) {
	db, _ := openTestDB(t)
	putAD(t, db, "t", `{}`)
	const workers = 20
	var wg sync.WaitGroup
	hold := make(chan struct{})
	errs := make(chan error, workers)
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ctx, release, err := db.ReadTx(context.Background())
			if err != nil {
				errs <- err
				return
			}
			defer release()
			<-hold // every transaction open at once
			for j := 0; j < 5; j++ {
				// A new statement text each time: never prepared before.
				q := fmt.Sprintf(`SELECT content FROM account_data WHERE user_id = $1 AND %[1]d = %[1]d`, i*10+j)
				var c string
				if err := db.q().QueryRowContext(ctx, q, "@a:x").Scan(&c); err != nil {
					errs <- err
					return
				}
			}
		}(i)
	}
	close(hold)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("read transactions deadlocked on the connection pool")
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := len(db.readTxs); n != 0 {
		t.Fatalf("%d read transaction slots still taken", n)
	}
}
