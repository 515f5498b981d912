// Package storage owns every SQL statement of the homeserver. It runs on
// SQLite (modernc.org/sqlite) or PostgreSQL (pgx), the same way on both: one
// writer connection, which batches concurrent logical writes into one
// transaction (group commit), and a pool of read-only connections.
package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// ErrNotFound is returned by lookups that find no row.
var ErrNotFound = errors.New("not found")

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("storage closed")

// ErrUnavailable wraps the errors of writes that failed because the
// database server could not be reached (PostgreSQL): nothing of such a
// write was acknowledged, and the client may retry (the HTTP layer answers
// 503).
var ErrUnavailable = errors.New("database unavailable")

// maxBatch bounds how many logical writes share one SQLite transaction.
const maxBatch = 64

// DB is the handle to the homeserver database.
type DB struct {
	dialect dialect
	path    string // SQLite's file
	writer  *sql.DB
	readers *sql.DB
	// pg is the PostgreSQL writer's reconnection state (nil on SQLite).
	pg *pgWriter

	// wconn is the writer's one connection, held for the DB's lifetime so
	// statements stay prepared on it; transactions are explicit SQL.
	wconn                 *sql.Conn
	writeStmts, readStmts *stmtCache

	reqs     chan *writeReq
	closing  chan struct{}
	loopDone chan struct{}
	// closeMu orders Close after every enqueue that saw the DB open, so the
	// write loop's final drain never misses a request.
	closeMu sync.RWMutex
	closed  bool

	// streamPos is the highest committed stream position. Readers never look
	// past it, so they never see a half-assigned position.
	streamPos atomic.Int64

	// changed is closed (and replaced) whenever streamPos advances, to wake
	// long-polling readers such as /sync.
	changedMu sync.Mutex
	changed   chan struct{}
	// onWake is told whom each commit concerns (unset: nobody is told).
	onWake atomic.Pointer[func(WakeTargets)]

	unread unreadCache
	// readTxs bounds the read transactions open at once (see ReadTx).
	readTxs chan struct{}
}

type writeReq struct {
	ctx  context.Context
	fn   func(*Tx) error
	done chan error
}

// Tx is one logical write: it runs inside a savepoint of the batch
// transaction, so its failure rolls back only its own changes.
type Tx struct {
	dialect  dialect
	w        txQuerier
	pos      *int64
	onCommit []func()
	onAbort  []func()
	// wake is whom this write's changes concern; advanced is set when it
	// took stream positions.
	wake     WakeTargets
	advanced bool
}

// WakeTargets says whom a committed change concerns: local users, the
// listeners of rooms (by NID), or everyone.
type WakeTargets struct {
	Users []string
	Rooms []int64
	All   bool
}

func (w *WakeTargets) add(o WakeTargets) {
	w.Users = append(w.Users, o.Users...)
	w.Rooms = append(w.Rooms, o.Rooms...)
	w.All = w.All || o.All
}

// WakeUsers declares that this write concerns these users' long-polls.
func (tx *Tx) WakeUsers(users ...string) { tx.wake.Users = append(tx.wake.Users, users...) }

// WakeRooms declares that this write concerns everyone listening to these
// rooms.
func (tx *Tx) WakeRooms(roomNIDs ...int64) { tx.wake.Rooms = append(tx.wake.Rooms, roomNIDs...) }

// OnWake sets the function told, after each commit, whom the committed
// writes concern. A write that took stream positions without saying whom
// they concern wakes everyone.
func (db *DB) OnWake(f func(WakeTargets)) { db.onWake.Store(&f) }

// Open opens (creating if needed) the database at path and applies migrations.
func Open(ctx context.Context, path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating database dir: %w", err)
	}
	common := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "foreign_keys(ON)"} {
		common.Add("_pragma", p)
	}
	wv := cloneValues(common)
	wv.Add("_pragma", "journal_mode(WAL)")
	wv.Add("_pragma", "synchronous(FULL)")
	wv.Set("_txlock", "immediate")
	writer, err := sql.Open("sqlite", "file:"+path+"?"+wv.Encode())
	if err != nil {
		return nil, fmt.Errorf("opening writer: %w", err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	if err := writer.PingContext(ctx); err != nil {
		writer.Close()
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if err := useIncrementalVacuum(ctx, writer); err != nil {
		writer.Close()
		return nil, err
	}
	if err := migrate(ctx, writer, dialectSQLite); err != nil {
		writer.Close()
		return nil, err
	}
	rv := cloneValues(common)
	rv.Add("_pragma", "query_only(1)")
	readers, err := sql.Open("sqlite", "file:"+path+"?"+rv.Encode())
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("opening readers: %w", err)
	}
	// Read transactions (ReadTx) may hold up to half the connections; the
	// rest serve everything else, statement preparation included.
	n := defaultReadConns()
	readers.SetMaxOpenConns(n)
	readers.SetMaxIdleConns(n)
	readers.SetConnMaxLifetime(0)

	db := &DB{dialect: dialectSQLite, path: path, writer: writer, readers: readers}
	if err := db.start(ctx, n/2); err != nil {
		return nil, err
	}
	return db, nil
}

// start takes the writer connection, reads the stream position and starts
// the write loop; on failure it closes the connections.
func (db *DB) start(ctx context.Context, maxReadTxs int) error {
	db.readStmts = newStmtCache(db.readers, db.dialect)
	db.readTxs = make(chan struct{}, max(1, maxReadTxs))
	db.reqs = make(chan *writeReq, maxBatch)
	db.closing = make(chan struct{})
	db.loopDone = make(chan struct{})
	db.changed = make(chan struct{})
	var err error
	if db.wconn, err = db.writer.Conn(ctx); err != nil {
		db.closeConns()
		return fmt.Errorf("taking the writer connection: %w", err)
	}
	db.writeStmts = newStmtCache(db.wconn, db.dialect)
	var pos int64
	if err := db.wconn.QueryRowContext(ctx, `SELECT pos FROM stream_position`).Scan(&pos); err != nil {
		db.closeConns()
		return fmt.Errorf("reading stream position: %w", err)
	}
	db.streamPos.Store(pos)
	go db.writeLoop()
	return nil
}

// defaultReadConns is the size of the read pool.
func defaultReadConns() int { return max(4, runtime.GOMAXPROCS(0)*3) }

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// Close finishes queued writes and closes the connections.
func (db *DB) Close() error {
	db.closeMu.Lock()
	if !db.closed {
		db.closed = true
		close(db.closing)
	}
	db.closeMu.Unlock()
	<-db.loopDone
	return db.closeConns()
}

func (db *DB) closeConns() error {
	if db.readStmts != nil {
		db.readStmts.close()
	}
	if db.writeStmts != nil {
		db.writeStmts.close()
	}
	var connErr error
	if db.wconn != nil {
		if connErr = db.wconn.Close(); errors.Is(connErr, sql.ErrConnDone) {
			connErr = nil // closed on losing it (PostgreSQL)
		}
	}
	return errors.Join(connErr, db.readers.Close(), db.writer.Close())
}

// StreamPosition is the highest committed stream position.
func (db *DB) StreamPosition() int64 { return db.streamPos.Load() }

// Changes returns a channel closed at the next advance of the stream
// position, and the position as of now. Take the channel before reading
// data, so a commit in between is never missed.
func (db *DB) Changes() (<-chan struct{}, int64) {
	db.changedMu.Lock()
	defer db.changedMu.Unlock()
	return db.changed, db.streamPos.Load()
}

// Write runs fn as one logical, atomic write and returns once it is durable.
// fn may run in the same SQLite transaction as other callers' writes; its own
// changes are all applied or none. fn must not block on anything but the Tx.
func (db *DB) Write(ctx context.Context, fn func(*Tx) error) error {
	return db.Enqueue(ctx, fn)()
}

// Enqueue queues fn like Write but returns at once with a function that
// waits for the outcome. Writes run in the order they were enqueued, so a
// caller holding a lock can queue a write in order and wait after unlocking.
func (db *DB) Enqueue(ctx context.Context, fn func(*Tx) error) (wait func() error) {
	req := &writeReq{ctx: ctx, fn: fn, done: make(chan error, 1)}
	db.closeMu.RLock()
	if db.closed {
		db.closeMu.RUnlock()
		return func() error { return ErrClosed }
	}
	select {
	case <-ctx.Done():
		db.closeMu.RUnlock()
		err := ctx.Err()
		return func() error { return err }
	case db.reqs <- req:
	}
	db.closeMu.RUnlock()
	// Once queued the write is carried out unless ctx ended before it ran,
	// so a caller never sees an error for a write that did commit.
	return func() error { return <-req.done }
}

func (db *DB) writeLoop() {
	defer close(db.loopDone)
	for {
		var first *writeReq
		select {
		case first = <-db.reqs:
		case <-db.closing:
			// Drain what was queued before Close.
			for {
				select {
				case r := <-db.reqs:
					db.commitBatch([]*writeReq{r})
				default:
					return
				}
			}
		}
		batch := []*writeReq{first}
	fill:
		for len(batch) < maxBatch {
			select {
			case r := <-db.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		db.commitBatch(batch)
	}
}

func (db *DB) commitBatch(batch []*writeReq) {
	ctx := context.Background()
	results := make([]error, len(batch))
	var callbacks, aborts []func()
	fail := func(err error) {
		err = db.unavailable(err)
		// Writes that succeeded inside the batch are lost with it: their
		// abort hooks run before any later write.
		for _, f := range aborts {
			f()
		}
		for _, r := range batch {
			r.done <- err
		}
	}
	if err := db.writerReady(); err != nil {
		fail(err)
		return
	}
	sqlTx := txQuerier{conn: db.wconn, c: db.writeStmts}
	// A savepoint costs PostgreSQL a round trip: a write alone in its
	// batch runs without one (SQLite's are cheap calls, kept always).
	pg := db.dialect == dialectPostgres
	alone := pg && len(batch) == 1
	// The table, not memory, is the source of truth: the admin CLI may have
	// written from another process. The IMMEDIATE transaction (on
	// PostgreSQL, the row lock) keeps others out until the commit.
	var committed int64
	if pg {
		sqlTx.pipe = &pgPipe{conn: db.wconn}
		var err error
		if committed, err = sqlTx.pipe.begin(ctx, !alone); err != nil {
			sqlTx.rollback(ctx)
			fail(fmt.Errorf("beginning: %w", err))
			return
		}
	} else {
		if _, err := db.wconn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
			fail(fmt.Errorf("begin: %w", err))
			return
		}
		if err := sqlTx.QueryRowContext(ctx, `SELECT pos FROM stream_position`).Scan(&committed); err != nil {
			sqlTx.rollback(ctx)
			fail(fmt.Errorf("reading stream position: %w", err))
			return
		}
	}
	pos := committed
	var wake WakeTargets
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			results[i] = err
			continue
		}
		results[i] = db.runOne(ctx, sqlTx, r.fn, &pos, &callbacks, &aborts, &wake, !alone)
	}
	if alone && results[0] != nil {
		// No savepoint to undo the lone write by: undo the transaction.
		sqlTx.rollback(ctx)
		batch[0].done <- db.unavailable(results[0])
		return
	}
	if pg {
		// The lone write's queue goes with the commit: its failure is
		// that write's.
		if pos != committed {
			sqlTx.pipe.add(`UPDATE stream_position SET pos = $1`, []any{pos})
		}
		sqlTx.pipe.add(`COMMIT`, nil)
		if err := sqlTx.pipe.flush(ctx); err != nil {
			sqlTx.rollback(ctx)
			fail(fmt.Errorf("commit: %w", err))
			return
		}
	} else {
		if pos != committed {
			if _, err := sqlTx.ExecContext(ctx, `UPDATE stream_position SET pos = $1`, pos); err != nil {
				sqlTx.rollback(ctx)
				fail(fmt.Errorf("saving stream position: %w", err))
				return
			}
		}
		if _, err := db.wconn.ExecContext(ctx, `COMMIT`); err != nil {
			sqlTx.rollback(ctx)
			fail(fmt.Errorf("commit: %w", err))
			return
		}
	}
	if pos != db.streamPos.Load() {
		db.changedMu.Lock()
		db.streamPos.Store(pos)
		close(db.changed)
		db.changed = make(chan struct{})
		db.changedMu.Unlock()
	}
	for _, cb := range callbacks {
		cb()
	}
	if f := db.onWake.Load(); f != nil && (wake.All || len(wake.Users) > 0 || len(wake.Rooms) > 0) {
		(*f)(wake)
	}
	for i, r := range batch {
		r.done <- results[i]
	}
}

// runOne runs fn inside a savepoint; on error or panic its changes and
// stream positions are undone.
func (db *DB) runOne(ctx context.Context, sqlTx txQuerier, fn func(*Tx) error, pos *int64, callbacks, aborts *[]func(), wake *WakeTargets,
	savepoint bool) (err error) {
	pipe := sqlTx.pipe
	if savepoint && pipe == nil {
		if _, err := sqlTx.ExecContext(ctx, `SAVEPOINT w`); err != nil {
			return fmt.Errorf("savepoint: %w", err)
		}
	}
	start := *pos
	tx := &Tx{dialect: db.dialect, w: sqlTx, pos: pos}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("write panicked: %v", p)
		}
		if pipe != nil && err == nil && savepoint {
			// The write's queue must reach the server before the write
			// counts as done; the next write's savepoint goes with it.
			pipe.add(`SAVEPOINT w`, nil)
			err = pipe.flush(ctx)
		}
		if pipe != nil && pipe.err != nil {
			err = pipe.err // the root cause: a queued statement failed
		}
		if err != nil {
			*pos = start
			if pipe != nil {
				pipe.drop()
				pipe.err = nil
			}
			if savepoint { // else the caller rolls the transaction back
				// On PostgreSQL w stays set after ROLLBACK TO: the next
				// write rolls back to the same place.
				if _, rbErr := sqlTx.ExecContext(ctx, `ROLLBACK TO w`); rbErr != nil {
					err = errors.Join(err, fmt.Errorf("rollback to savepoint: %w", rbErr))
				}
			}
			for _, f := range tx.onAbort {
				f()
			}
		} else {
			*callbacks = append(*callbacks, tx.onCommit...)
			*aborts = append(*aborts, tx.onAbort...)
			if tx.advanced && len(tx.wake.Users) == 0 && len(tx.wake.Rooms) == 0 {
				tx.wake.All = true // a change nobody said whom it concerns
			}
			wake.add(tx.wake)
		}
		if !savepoint || pipe != nil {
			// PostgreSQL: a round trip saved. The next write's savepoint
			// nests (ROLLBACK TO w undoes only the latest), and COMMIT
			// releases them all.
			return
		}
		if _, relErr := sqlTx.ExecContext(ctx, `RELEASE w`); relErr != nil && err == nil {
			err = fmt.Errorf("release savepoint: %w", relErr)
		}
	}()
	return fn(tx)
}

// NextStreamPos allocates the next global stream position.
func (tx *Tx) NextStreamPos() int64 {
	tx.advanced = true
	*tx.pos++
	return *tx.pos
}

// OnAbort registers f to run if this write's changes are rolled back (its
// own failure, or the failure of the batch commit). It runs on the writer
// goroutine before any later write, so in-memory state mirrored from the
// write can be invalidated in order.
func (tx *Tx) OnAbort(f func()) { tx.onAbort = append(tx.onAbort, f) }

// OnCommit registers f to run after the transaction is durable (to wake
// waiters or update caches). It does not run when the write fails.
func (tx *Tx) OnCommit(f func()) { tx.onCommit = append(tx.onCommit, f) }

func (tx *Tx) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return tx.w.ExecContext(ctx, query, args...)
}

// execLater runs a statement whose result nothing reads and whose failure
// fails the write: on PostgreSQL it is queued and sent with the next
// statement that returns something, or when the write ends (pgpipe.go), so
// its error may come from a later statement or the write as a whole.
func (tx *Tx) execLater(ctx context.Context, query string, args ...any) error {
	return tx.w.execLater(ctx, query, args...)
}

// querier is what read helpers need, so the same query serves a read-only
// connection and a write transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (tx *Tx) q() querier { return tx.w }
func (db *DB) q() querier { return readQuerier{db.readStmts} }

// Engine names the database engine: "sqlite" or "postgres".
func (db *DB) Engine() string { return db.dialect.String() }

// Backup writes a consistent copy of an SQLite database to path (VACUUM
// INTO). A PostgreSQL database is backed up with its own tools (pg_dump).
func (db *DB) Backup(ctx context.Context, path string) error {
	if db.dialect != dialectSQLite {
		return fmt.Errorf("backing up a %s database: not supported here, use pg_dump", db.dialect)
	}
	// A connection of its own: the read pool is query_only, and the writer
	// must stay free for the server while the copy is made.
	conn, err := sql.Open("sqlite", "file:"+db.path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return fmt.Errorf("opening backup connection: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `VACUUM INTO $1`, path); err != nil {
		return fmt.Errorf("backup to %s: %w", path, err)
	}
	return nil
}

// queryStrings runs a query whose rows are single strings.
func queryStrings(ctx context.Context, q querier, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}
