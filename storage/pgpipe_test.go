package storage

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// A statement that fails in the database (nid_floors.nid is NOT NULL), run
// through execLater: queued on PostgreSQL, so its failure shows later.
func queueFailing(ctx context.Context, tx *Tx) error {
	return tx.execLater(ctx, `INSERT INTO nid_floors (name, nid) VALUES ($1, NULL)`, "bad")
}

func accountDataTypes(t *testing.T, db *DB) string {
	t.Helper()
	items, err := db.AccountDataChanges(context.Background(), "@a:x", 0, db.StreamPosition())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range items {
		got = append(got, fmt.Sprintf("%s@%d", it.Type, it.StreamPos))
	}
	return fmt.Sprint(got)
}

// In a batch, a write whose queued statement fails fails alone: the
// writes around it commit, its own changes are undone.
func TestQueuedStatementFailureFailsOnlyItsWrite(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	gate := make(chan struct{})
	busy := db.Enqueue(ctx, func(tx *Tx) error { <-gate; return nil })
	put := func(typ string, fail bool) func() error {
		return db.Enqueue(ctx, func(tx *Tx) error {
			if _, err := tx.PutAccountData(ctx, "@a:x", "", typ, []byte(`{}`)); err != nil {
				return err
			}
			if fail {
				return queueFailing(ctx, tx)
			}
			return tx.execLater(ctx, `INSERT INTO nid_floors (name, nid) VALUES ($1, 1)`, typ)
		})
	}
	waits := []func() error{put("a", false), put("b", true), put("c", false), put("d", true)}
	close(gate)
	if err := busy(); err != nil {
		t.Fatal(err)
	}
	for i, w := range waits {
		if err := w(); (err != nil) != (i == 1 || i == 3) {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if got := accountDataTypes(t, db); got != "[a@1 c@2]" {
		t.Fatalf("account data = %v, want [a@1 c@2]", got)
	}
	var n int
	if err := db.q().QueryRowContext(ctx, `SELECT COUNT(*) FROM nid_floors WHERE name IN ('a', 'c', 'bad')`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("queued rows of the good writes = %d %v, want 2", n, err)
	}
}

// A write alone in its batch whose queued statement fails (on PostgreSQL:
// when the commit sends it) leaves nothing behind, and the next write works.
func TestQueuedStatementFailureFailsLoneWrite(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	err := db.Write(ctx, func(tx *Tx) error {
		if _, err := tx.PutAccountData(ctx, "@a:x", "", "lone", []byte(`{}`)); err != nil {
			return err
		}
		return queueFailing(ctx, tx)
	})
	if err == nil {
		t.Fatal("the write with a failing statement succeeded")
	}
	if _, err := db.AccountData(ctx, "@a:x", "", "lone"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("failed write left data behind: %v", err)
	}
	if db.StreamPosition() != 0 {
		t.Fatalf("stream position = %d after a failed write, want 0", db.StreamPosition())
	}
	// A write that fails after queueing a good statement: it never runs.
	err = db.Write(ctx, func(tx *Tx) error {
		if err := tx.execLater(ctx, `INSERT INTO nid_floors (name, nid) VALUES ('dropped', 1)`); err != nil {
			return err
		}
		return errors.New("no")
	})
	if err == nil {
		t.Fatal("the failed write succeeded")
	}
	mustWrite(t, db, func(tx *Tx) error { _, err := tx.PutAccountData(ctx, "@a:x", "", "next", []byte(`{}`)); return err })
	if got := accountDataTypes(t, db); got != "[next@1]" {
		t.Fatalf("account data = %v, want [next@1]", got)
	}
	var n int
	if err := db.q().QueryRowContext(ctx, `SELECT COUNT(*) FROM nid_floors WHERE name = 'dropped'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("a failed write's queued statement ran: %d %v", n, err)
	}
}

// A query sees the statements its write queued before it.
func TestQueuedStatementsVisibleToLaterQueries(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	mustWrite(t, db, func(tx *Tx) error {
		for i := range 3 {
			if err := tx.execLater(ctx, `INSERT INTO nid_floors (name, nid) VALUES ($1, $2)`, fmt.Sprint("q", i), i+10); err != nil {
				return err
			}
		}
		var sum int64
		if err := tx.q().QueryRowContext(ctx, `SELECT SUM(nid) FROM nid_floors WHERE name LIKE 'q%'`).Scan(&sum); err != nil {
			return err
		}
		if sum != 33 {
			return fmt.Errorf("sum of queued rows = %d, want 33", sum)
		}
		return nil
	})
}
