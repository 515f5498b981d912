package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// On PostgreSQL every statement is a round trip to another process, and a
// message runs over a dozen in the writer's one connection. Most of them
// are inserts whose outcome nothing reads: the writer queues those
// (Tx.execLater) and sends them together, pipelined in one round trip,
// ahead of the next statement that returns something, at the end of the
// write, or with the batch's COMMIT. A queued statement that fails fails
// its write (as if it had failed when queued): every write ends with its
// queue sent, except a write alone in its batch, whose queue goes with the
// COMMIT (the commit's failure is then that write's).

// pgPipe is the queue of the writer's PostgreSQL connection during one
// batch (commitBatch).
type pgPipe struct {
	conn  *sql.Conn
	queue []queuedStmt
	// err is the failure of a sent queue, kept until the write it failed
	// ends (statements after it fail as the transaction is aborted; this
	// says why).
	err error
}

// queuedStmt is a statement rendered for PostgreSQL, with its arguments.
type queuedStmt struct {
	query string
	args  []any
}

// add queues a rendered statement.
func (p *pgPipe) add(query string, args []any) {
	p.queue = append(p.queue, queuedStmt{query: query, args: args})
}

// drop forgets the queued statements (their write failed before sending
// them).
func (p *pgPipe) drop() { p.queue = p.queue[:0] }

// flush sends the queued statements in one round trip and reports the
// first failure.
func (p *pgPipe) flush(ctx context.Context) error {
	if len(p.queue) == 0 {
		return p.err
	}
	queue := p.queue
	p.queue = p.queue[:0]
	err := p.conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("the writer connection is a %T, not pgx's", dc)
		}
		var b pgx.Batch
		for _, s := range queue {
			b.Queue(s.query, s.args...)
		}
		res := c.Conn().SendBatch(ctx, &b)
		var first error
		for _, s := range queue {
			if _, err := res.Exec(); err != nil {
				first = fmt.Errorf("%s: %w", summarize(s.query), err)
				break
			}
		}
		if err := res.Close(); first == nil {
			first = err
		}
		return first
	})
	if err != nil && p.err == nil {
		p.err = err
	}
	return err
}

// begin starts the batch's transaction and locks and reads the stream
// position, in one round trip; with savepoint, it also sets the savepoint
// the first write rolls back to.
func (p *pgPipe) begin(ctx context.Context, savepoint bool) (int64, error) {
	query := `BEGIN; SELECT pos FROM stream_position FOR UPDATE`
	if savepoint {
		query += `; SAVEPOINT w`
	}
	var pos int64
	err := p.conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("the writer connection is a %T, not pgx's", dc)
		}
		results, err := c.Conn().PgConn().Exec(ctx, query).ReadAll()
		if err != nil {
			return err
		}
		if len(results) < 2 || len(results[1].Rows) != 1 || len(results[1].Rows[0]) != 1 {
			return errors.New("no stream position row")
		}
		pos, err = strconv.ParseInt(string(results[1].Rows[0][0]), 10, 64)
		return err
	})
	return pos, err
}

// summarize is the start of a statement, for errors.
func summarize(query string) string {
	q := strings.Join(strings.Fields(query), " ")
	if len(q) > 60 {
		q = q[:60] + "..."
	}
	return q
}
