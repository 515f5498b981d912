package storage

import (
	"context"
	"database/sql"
	"sync"
)

// maxCachedStmts bounds the statement cache; queries built with a variable
// number of placeholders would otherwise grow it without end.
const maxCachedStmts = 512

// stmtCache keeps prepared statements per query text. Parsing SQL is a large
// share of a small query's cost in SQLite, and database/sql keeps a
// statement prepared on every connection that used it.
//
// On PostgreSQL nothing is prepared here: the driver keeps its own cache of
// prepared statements on each connection, which outlives a lost connection
// (a *sql.Stmt would not). Queries are only rendered and their parameters
// converted.
type stmtCache struct {
	db    preparer
	d     dialect
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
	// preparing holds the queries being prepared in the background (cached).
	preparing map[string]bool
}

// preparer is a pool (*sql.DB) or a single connection (*sql.Conn).
type preparer interface {
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func newStmtCache(db preparer, d dialect) *stmtCache {
	return &stmtCache{db: db, d: d, stmts: map[string]*sql.Stmt{}, preparing: map[string]bool{}}
}

// text is query as this cache's engine speaks it.
func (c *stmtCache) text(query string) string { return c.d.render(query) }

// args are the parameters as this cache's engine binds them.
func (c *stmtCache) args(args []any) []any {
	if c.d == dialectPostgres {
		return pgArgs(args)
	}
	return args
}

// get returns a prepared statement, or nil when the cache is full (or the
// engine is PostgreSQL): the caller then runs c.text(query) unprepared.
func (c *stmtCache) get(ctx context.Context, query string) (*sql.Stmt, error) {
	if c.d == dialectPostgres {
		return nil, nil
	}
	c.mu.Lock()
	st, ok := c.stmts[query]
	full := len(c.stmts) >= maxCachedStmts
	c.mu.Unlock()
	if ok || full {
		return st, nil
	}
	st, err := c.db.PrepareContext(ctx, c.text(query))
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.stmts[query]; ok {
		st.Close()
		return cur, nil
	}
	c.stmts[query] = st
	return st, nil
}

// cached returns the prepared statement for query if there is one. On a
// miss it prepares one in the background, for a caller that must not wait
// for a pooled connection (a read transaction already holds one); it runs
// the query unprepared this once.
func (c *stmtCache) cached(query string) *sql.Stmt {
	if c.d == dialectPostgres {
		return nil
	}
	c.mu.Lock()
	st, ok := c.stmts[query]
	start := !ok && !c.preparing[query] && len(c.stmts) < maxCachedStmts
	if start {
		c.preparing[query] = true // one background prepare per query, none once full
	}
	c.mu.Unlock()
	if start {
		go func() {
			c.get(context.Background(), query)
			c.mu.Lock()
			delete(c.preparing, query)
			c.mu.Unlock()
		}()
	}
	return st
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.stmts {
		st.Close()
	}
	c.stmts = map[string]*sql.Stmt{}
}

// readQuerier runs queries on the read pool through the cache.
type readQuerier struct{ c *stmtCache }

func (r readQuerier) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if s := snapshotOf(ctx, r.c); s != nil {
		if st := r.c.cached(query); st != nil {
			return s.tx.StmtContext(ctx, st).QueryContext(ctx, args...)
		}
		return s.tx.QueryContext(ctx, r.c.text(query), r.c.args(args)...)
	}
	st, err := r.c.get(ctx, query)
	if err != nil {
		return nil, err
	}
	if st == nil {
		rows, err := r.c.db.QueryContext(ctx, r.c.text(query), r.c.args(args)...)
		return rows, readError(r.c.d, err)
	}
	return st.QueryContext(ctx, args...)
}

func (r readQuerier) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if s := snapshotOf(ctx, r.c); s != nil {
		if st := r.c.cached(query); st != nil {
			return s.tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
		}
		return s.tx.QueryRowContext(ctx, r.c.text(query), r.c.args(args)...)
	}
	st, err := r.c.get(ctx, query)
	if err != nil || st == nil {
		return r.c.db.QueryRowContext(ctx, r.c.text(query), r.c.args(args)...)
	}
	return st.QueryRowContext(ctx, args...)
}

// txQuerier runs statements on the writer connection, inside the
// transaction the writer opened on it with BEGIN.
type txQuerier struct {
	conn *sql.Conn
	c    *stmtCache
	// pipe queues statements on PostgreSQL (pgpipe.go); nil on SQLite.
	pipe *pgPipe
}

// sendQueued sends the statements queued ahead of one that returns
// something, so that it sees their effects.
func (t txQuerier) sendQueued(ctx context.Context) error {
	if t.pipe == nil {
		return nil
	}
	return t.pipe.flush(ctx)
}

func (t txQuerier) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if err := t.sendQueued(ctx); err != nil {
		return nil, err
	}
	return readQuerier{t.c}.QueryContext(ctx, query, args...)
}

func (t txQuerier) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	// A queued statement's failure has aborted the transaction: the query
	// fails too, and the write reports the queued statement's error.
	t.sendQueued(ctx)
	return readQuerier{t.c}.QueryRowContext(ctx, query, args...)
}

func (t txQuerier) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if err := t.sendQueued(ctx); err != nil {
		return nil, err
	}
	st, err := t.c.get(ctx, query)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return t.conn.ExecContext(ctx, t.c.text(query), t.c.args(args)...)
	}
	return st.ExecContext(ctx, args...)
}

// execLater runs a statement whose outcome nothing reads: at once on
// SQLite, queued on PostgreSQL (pgpipe.go).
func (t txQuerier) execLater(ctx context.Context, query string, args ...any) error {
	if t.pipe == nil {
		_, err := t.ExecContext(ctx, query, args...)
		return err
	}
	t.pipe.add(t.c.text(query), t.c.args(args))
	return nil
}

// rollback ends the open transaction without saving it.
func (t txQuerier) rollback(ctx context.Context) {
	t.conn.ExecContext(ctx, `ROLLBACK`)
}
