package storage

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
)

func TestOpenAppliesMigrationsOnce(t *testing.T) {
	ctx := context.Background()
	db, src := openTestDB(t)
	all, err := migrations(db.dialect)
	if err != nil {
		t.Fatal(err)
	}
	v, err := db.SchemaVersion(ctx)
	if err != nil || v != all[len(all)-1].version {
		t.Fatalf("schema version = %d, %v; want %d", v, err, all[len(all)-1].version)
	}
	db.Close()
	db2, err := src.open(ctx)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db2.Close()
	var n int
	if err := db2.readers.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(all) {
		t.Fatalf("migration rows = %d, %v; want %d", n, err, len(all))
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	db, src := openTestDB(t)
	if _, err := db.wconn.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_ts) VALUES (9999, 'future', 0)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := src.open(ctx); err == nil {
		t.Fatal("opening a database with a newer schema succeeded")
	}
}

func TestPragmas(t *testing.T) {
	sqliteOnly(t, "PRAGMAs (TestPostgresReadPoolIsReadOnly checks PostgreSQL's read pool)")
	ctx := context.Background()
	db, _ := openTestDB(t)
	var mode string
	var sync, fk int
	if err := db.wconn.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v", mode, err)
	}
	if err := db.wconn.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&sync); err != nil || sync != 2 {
		t.Errorf("writer synchronous = %d, %v; want 2 (FULL)", sync, err)
	}
	if err := db.readers.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
		t.Errorf("foreign_keys = %d, %v", fk, err)
	}
	if _, err := db.readers.ExecContext(ctx, `DELETE FROM accounts`); err == nil {
		t.Error("read pool accepted a write")
	}
}

func TestConcurrentWritesAllCommitWithDistinctPositions(t *testing.T) {
	ctx := context.Background()
	db, src := openTestDB(t)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- db.Write(ctx, func(tx *Tx) error {
				_, err := tx.PutAccountData(ctx, "@u:x", "", fmt.Sprintf("t%d", i), []byte(`{}`))
				return err
			})
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("write failed: %v", err)
		}
	}
	items, err := db.AccountDataChanges(ctx, "@u:x", 0, db.StreamPosition())
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != n {
		t.Fatalf("got %d rows, want %d", len(items), n)
	}
	seen := map[int64]bool{}
	for _, it := range items {
		if seen[it.StreamPos] {
			t.Fatalf("stream position %d assigned twice", it.StreamPos)
		}
		seen[it.StreamPos] = true
	}
	if db.StreamPosition() != n {
		t.Fatalf("stream position = %d, want %d", db.StreamPosition(), n)
	}
	db.Close()
	db2, err := src.open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	if db2.StreamPosition() != n {
		t.Fatalf("stream position after reopen = %d, want %d", db2.StreamPosition(), n)
	}
}

func TestFailedWriteRollsBackOnlyItself(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	boom := errors.New("boom")
	var wg sync.WaitGroup
	results := make([]error, 3)
	for i, fn := range []func(*Tx) error{
		func(tx *Tx) error { _, err := tx.PutAccountData(ctx, "@a:x", "", "ok1", []byte(`{}`)); return err },
		func(tx *Tx) error {
			if _, err := tx.PutAccountData(ctx, "@a:x", "", "bad", []byte(`{}`)); err != nil {
				return err
			}
			return boom
		},
		func(tx *Tx) error {
			tx.PutAccountData(ctx, "@a:x", "", "panics", []byte(`{}`))
			panic("handler bug")
		},
	} {
		wg.Add(1)
		go func(i int, fn func(*Tx) error) { defer wg.Done(); results[i] = db.Write(ctx, fn) }(i, fn)
	}
	wg.Wait()
	if results[0] != nil || !errors.Is(results[1], boom) || results[2] == nil {
		t.Fatalf("results = %v", results)
	}
	if _, err := db.AccountData(ctx, "@a:x", "", "ok1"); err != nil {
		t.Errorf("successful write lost: %v", err)
	}
	for _, typ := range []string{"bad", "panics"} {
		if _, err := db.AccountData(ctx, "@a:x", "", typ); !errors.Is(err, ErrNotFound) {
			t.Errorf("failed write %q left data behind: %v", typ, err)
		}
	}
	if db.StreamPosition() != 1 {
		t.Errorf("stream position = %d, want 1 (failed writes give theirs back)", db.StreamPosition())
	}
}

func TestOnCommitRunsOnlyAfterSuccess(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	ran := 0
	db.Write(ctx, func(tx *Tx) error { tx.OnCommit(func() { ran++ }); return nil })
	db.Write(ctx, func(tx *Tx) error { tx.OnCommit(func() { ran += 10 }); return errors.New("no") })
	if ran != 1 {
		t.Fatalf("callbacks ran %d, want 1", ran)
	}
}

func TestWriteAfterCloseFails(t *testing.T) {
	db, _ := openTestDB(t)
	db.Close()
	if err := db.Write(context.Background(), func(*Tx) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("err = %v, want ErrClosed", err)
	}
}

func TestBackup(t *testing.T) {
	sqliteOnly(t, "VACUUM INTO (PostgreSQL is backed up with pg_dump)")
	ctx := context.Background()
	db, _ := openTestDB(t)
	db.Write(ctx, func(tx *Tx) error { _, err := tx.PutAccountData(ctx, "@a:x", "", "k", []byte(`{"v":1}`)); return err })
	dst := filepath.Join(t.TempDir(), "backup.db")
	if err := db.Backup(ctx, dst); err != nil {
		t.Fatal(err)
	}
	b, err := Open(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if c, err := b.AccountData(ctx, "@a:x", "", "k"); err != nil || string(c) != `{"v":1}` {
		t.Fatalf("backup content = %s, %v", c, err)
	}
}

// Changes hands out a channel closed by the next commit that moves the
// stream, with the position as of the call.
func TestChangesClosesOnAdvance(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	ch, pos := db.Changes()
	if pos != db.StreamPosition() {
		t.Fatalf("Changes position %d, stream at %d", pos, db.StreamPosition())
	}
	mustWrite(t, db, func(tx *Tx) error { return nil }) // no position taken
	select {
	case <-ch:
		t.Fatal("a write that took no position woke the waiters")
	default:
	}
	mustWrite(t, db, func(tx *Tx) error {
		_, err := tx.PutAccountData(ctx, "@u:x", "", "t", []byte(`{}`))
		return err
	})
	select {
	case <-ch:
	default:
		t.Fatal("a commit that moved the stream did not close the channel")
	}
	if _, now := db.Changes(); now != pos+1 {
		t.Fatalf("position after the commit = %d, want %d", now, pos+1)
	}
}

// OnAbort hooks run when a write's changes are rolled back, and only then.
func TestOnAbortRunsOnRollback(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	var aborted []string
	mustWrite(t, db, func(tx *Tx) error {
		tx.OnAbort(func() { aborted = append(aborted, "ok") })
		return nil
	})
	err := db.Write(ctx, func(tx *Tx) error {
		tx.OnAbort(func() { aborted = append(aborted, "failed") })
		return errors.New("no")
	})
	if err == nil || len(aborted) != 1 || aborted[0] != "failed" {
		t.Fatalf("aborts %v after a failed write (%v); want only the failed one's", aborted, err)
	}
}

// A write alone in its batch (on PostgreSQL it runs without a savepoint)
// leaves nothing behind when it fails, and the writer goes on.
func TestLoneFailedWriteLeavesNothing(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	err := db.Write(ctx, func(tx *Tx) error {
		if _, err := tx.PutAccountData(ctx, "@a:x", "", "lone", []byte(`{}`)); err != nil {
			return err
		}
		return errors.New("no")
	})
	if err == nil {
		t.Fatal("the failed write succeeded")
	}
	if _, err := db.AccountData(ctx, "@a:x", "", "lone"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("failed lone write left data behind: %v", err)
	}
	if db.StreamPosition() != 0 {
		t.Fatalf("stream position = %d after a failed write, want 0", db.StreamPosition())
	}
	mustWrite(t, db, func(tx *Tx) error { _, err := tx.PutAccountData(ctx, "@a:x", "", "next", []byte(`{}`)); return err })
	if db.StreamPosition() != 1 {
		t.Fatalf("stream position = %d after the next write, want 1", db.StreamPosition())
	}
}

// Writes queued behind a busy writer share one batch: a failed one in the
// middle undoes only its own changes, not those of the writes around it.
func TestBatchedFailureUndoesOnlyItself(t *testing.T) {
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
				return errors.New("no")
			}
			return nil
		})
	}
	waits := []func() error{put("a", false), put("b", true), put("c", false), put("d", true), put("e", false)}
	close(gate)
	if err := busy(); err != nil {
		t.Fatal(err)
	}
	for i, w := range waits {
		if err := w(); (err != nil) != (i == 1 || i == 3) {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	items, err := db.AccountDataChanges(ctx, "@a:x", 0, db.StreamPosition())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range items {
		got = append(got, fmt.Sprintf("%s@%d", it.Type, it.StreamPos))
	}
	if fmt.Sprint(got) != "[a@1 c@2 e@3]" {
		t.Fatalf("account data = %v, want [a@1 c@2 e@3]", got)
	}
}
