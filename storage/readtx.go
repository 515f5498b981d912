package storage

import (
	"context"
	"database/sql"
	"fmt"
	"sync/atomic"
)

type snapshotKey struct{}

// snapshot is a read transaction that the reads made with its context run
// in (see readQuerier).
type snapshot struct {
	tx    *sql.Tx
	cache *stmtCache
	ended atomic.Bool // released: reads with the context run on their own again
}

// ReadTx begins a read transaction and returns a context whose reads of
// this DB all run in it: they see one consistent state, and SQLite takes
// its WAL read lock once instead of once per statement (a /sync pass makes
// a dozen or more reads). release ends it; call it before waiting on
// anything, as an open snapshot holds back WAL checkpoints. A context that
// already carries a snapshot of this DB is returned as is.
//
// A read transaction holds a pooled connection until released, so only half
// the pool may be held this way; past that, ctx is returned unchanged and
// the reads run one by one as without ReadTx (never waiting on another
// request's transaction).
func (db *DB) ReadTx(ctx context.Context) (context.Context, func(), error) {
	if snapshotOf(ctx, db.readStmts) != nil {
		return ctx, func() {}, nil
	}
	select {
	case db.readTxs <- struct{}{}:
	default:
		return ctx, func() {}, nil
	}
	var opts *sql.TxOptions
	if db.dialect == dialectPostgres {
		// One snapshot for all the transaction's reads, as SQLite's.
		opts = &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
	}
	tx, err := db.readers.BeginTx(ctx, opts)
	if err != nil {
		<-db.readTxs
		return nil, nil, fmt.Errorf("beginning read transaction: %w", err)
	}
	s := &snapshot{tx: tx, cache: db.readStmts}
	release := func() {
		s.ended.Store(true)
		tx.Rollback()
		<-db.readTxs
	}
	return context.WithValue(ctx, snapshotKey{}, s), release, nil
}

// snapshotOf returns the snapshot ctx carries for the statements of c.
func snapshotOf(ctx context.Context, c *stmtCache) *snapshot {
	if s, ok := ctx.Value(snapshotKey{}).(*snapshot); ok && s.cache == c && !s.ended.Load() {
		return s
	}
	return nil
}
