package dbcopy

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"
)

// DefaultBatchSize is the rows sent to PostgreSQL in one COPY.
const DefaultBatchSize = 5000

// Options tune a copy.
type Options struct {
	// BatchSize is the rows per COPY (DefaultBatchSize when 0).
	BatchSize int
	// Progress receives a line per batch and per verified table (nil:
	// nothing is written).
	Progress io.Writer
	// Finish runs in the target's transaction after the rows are copied
	// and before they are verified: it rebuilds what is not copied (the
	// full-text search index) from what was.
	Finish func(ctx context.Context, tx pgx.Tx) error
}

// TableReport is one copied table.
type TableReport struct {
	Name     string
	Rows     int64
	Checksum string
}

// skipped are tables that each database keeps for itself: the record of
// its own migrations.
var skipped = map[string]bool{"schema_migrations": true}

// Copy copies src (a SQLite database, read in one transaction, so from one
// consistent snapshot, and never written) into dst (a PostgreSQL database
// migrated to the same schema and holding no data). The target's writes
// are one transaction, committed only when every table's row count and
// checksum read back from the target equal the source's: a failed copy
// leaves the target as it found it.
func Copy(ctx context.Context, src *sql.DB, dst *pgx.Conn, opts Options) ([]TableReport, error) {
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	sconn, err := src.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting to the SQLite database: %w", err)
	}
	defer sconn.Close()
	if _, err := sconn.ExecContext(ctx, `BEGIN`); err != nil {
		return nil, fmt.Errorf("starting the SQLite read: %w", err)
	}
	defer sconn.ExecContext(context.WithoutCancel(ctx), `ROLLBACK`)

	tx, err := dst.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("starting the PostgreSQL transaction: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	tables, err := copyPlan(ctx, sconn, tx)
	if err != nil {
		return nil, err
	}
	if err := clearSeeds(ctx, tx, tables); err != nil {
		return nil, err
	}
	sums := make([]*checksum, len(tables))
	for i, t := range tables {
		if sums[i], err = copyTable(ctx, sconn, tx, t, opts); err != nil {
			return nil, fmt.Errorf("copying %s: %w", t.name, err)
		}
	}
	if err := resetSequences(ctx, tx, tables); err != nil {
		return nil, err
	}
	if opts.Finish != nil {
		if err := opts.Finish(ctx, tx); err != nil {
			return nil, err
		}
	}
	reports := make([]TableReport, len(tables))
	for i, t := range tables {
		got, err := targetChecksum(ctx, tx, t)
		if err != nil {
			return nil, fmt.Errorf("verifying %s: %w", t.name, err)
		}
		if got.rows != sums[i].rows || got.String() != sums[i].String() {
			return nil, fmt.Errorf("verifying %s: SQLite has %d rows (checksum %s), PostgreSQL %d (checksum %s)",
				t.name, sums[i].rows, sums[i], got.rows, got)
		}
		reports[i] = TableReport{Name: t.name, Rows: got.rows, Checksum: got.String()}
		fmt.Fprintf(opts.Progress, "verified %s: %d rows, checksum %s\n", t.name, got.rows, got.String()[:16])
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("committing the copy: %w", err)
	}
	return reports, nil
}

// copyPlan reads both schemas and matches them.
func copyPlan(ctx context.Context, sconn *sql.Conn, tx pgx.Tx) ([]table, error) {
	names, err := sqliteTables(ctx, sconn)
	if err != nil {
		return nil, err
	}
	var kept []string
	srcColumns := map[string][]string{}
	for _, n := range names {
		if skipped[n] {
			continue
		}
		kept = append(kept, n)
		if srcColumns[n], err = sqliteColumns(ctx, sconn, n); err != nil {
			return nil, err
		}
	}
	dst, err := postgresTables(ctx, tx)
	if err != nil {
		return nil, err
	}
	refs, err := foreignKeys(ctx, tx)
	if err != nil {
		return nil, err
	}
	return plan(kept, srcColumns, dst, refs)
}

// clearSeeds empties the tables to copy into. They hold nothing but the
// rows the migrations seed (the starting stream position and cursors),
// which the source's rows replace; data is a refusal (see CheckEmpty).
func clearSeeds(ctx context.Context, tx pgx.Tx, tables []table) error {
	if err := checkEmpty(ctx, tx); err != nil {
		return err
	}
	// Referencing tables first.
	for i := len(tables) - 1; i >= 0; i-- {
		if _, err := tx.Exec(ctx, `DELETE FROM `+pgx.Identifier{tables[i].name}.Sanitize()); err != nil {
			return fmt.Errorf("clearing %s: %w", tables[i].name, err)
		}
	}
	return nil
}

// ErrNotEmpty is returned when the target already holds data.
var ErrNotEmpty = errors.New("the PostgreSQL database is not empty")

// CheckEmpty refuses a target that holds data: any table with rows, other
// than the migrations' record and the single rows the migrations seed
// (tables named *_position or *_cursor, holding one row).
func CheckEmpty(ctx context.Context, conn *pgx.Conn) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	return checkEmpty(ctx, tx)
}

func checkEmpty(ctx context.Context, tx pgx.Tx) error {
	tables, err := postgresTables(ctx, tx)
	if err != nil {
		return err
	}
	var full []string
	for name := range tables {
		if skipped[name] {
			continue
		}
		var n int64
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM `+pgx.Identifier{name}.Sanitize()+` LIMIT 2) x`).Scan(&n); err != nil {
			return fmt.Errorf("counting the rows of %s: %w", name, err)
		}
		seed := n == 1 && (strings.HasSuffix(name, "_position") || strings.HasSuffix(name, "_cursor"))
		if n > 0 && !seed {
			full = append(full, name)
		}
	}
	if len(full) > 0 {
		return fmt.Errorf("%w: %s hold rows; migrate into a new, empty database (createdb)", ErrNotEmpty, strings.Join(full, ", "))
	}
	return nil
}

// copyTable streams one table from the source to the target in batches,
// returning the source's checksum.
func copyTable(ctx context.Context, sconn *sql.Conn, tx pgx.Tx, t table, opts Options) (*checksum, error) {
	var total int64
	if err := sconn.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+sqliteIdent(t.name)).Scan(&total); err != nil {
		return nil, err
	}
	sum := &checksum{}
	if len(t.columns) == 0 || total == 0 {
		fmt.Fprintf(opts.Progress, "copied %s: 0 rows\n", t.name)
		return sum, nil
	}
	quoted := make([]string, len(t.columns))
	for i, c := range t.columns {
		quoted[i] = sqliteIdent(c)
	}
	rows, err := sconn.QueryContext(ctx, `SELECT `+strings.Join(quoted, ", ")+` FROM `+sqliteIdent(t.name))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	batch := make([][]any, 0, opts.BatchSize)
	var done int64
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		n, err := tx.CopyFrom(ctx, pgx.Identifier{t.name}, t.columns, pgx.CopyFromRows(batch))
		if err != nil {
			return err
		}
		if n != int64(len(batch)) {
			return fmt.Errorf("COPY wrote %d rows of %d", n, len(batch))
		}
		done += n
		fmt.Fprintf(opts.Progress, "copying %s: %d/%d rows\n", t.name, done, total)
		batch = batch[:0]
		return nil
	}
	scan := make([]any, len(t.columns))
	ptrs := make([]any, len(t.columns))
	for i := range scan {
		ptrs[i] = &scan[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make([]any, len(scan))
		for i, v := range scan {
			if row[i], err = convert(cloneBytes(v), t.types[i]); err != nil {
				return nil, fmt.Errorf("column %s: %w", t.columns[i], err)
			}
		}
		sum.add(row)
		batch = append(batch, row)
		if len(batch) == opts.BatchSize {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return sum, flush()
}

// cloneBytes copies a []byte the driver may reuse for the next row.
func cloneBytes(v any) any {
	if b, ok := v.([]byte); ok {
		return append([]byte(nil), b...)
	}
	return v
}

// resetSequences moves each sequence past the copied values, so the next
// row the server inserts gets a fresh number.
func resetSequences(ctx context.Context, tx pgx.Tx, tables []table) error {
	for _, t := range tables {
		for _, c := range t.serials {
			ident := pgx.Identifier{t.name}.Sanitize()
			col := pgx.Identifier{c}.Sanitize()
			q := `SELECT setval(pg_get_serial_sequence($1, $2), COALESCE(MAX(` + col + `), 0) + 1, false) FROM ` + ident
			if _, err := tx.Exec(ctx, q, ident, c); err != nil {
				return fmt.Errorf("resetting the sequence of %s.%s: %w", t.name, c, err)
			}
		}
	}
	return nil
}

// targetChecksum reads a copied table back from the target.
func targetChecksum(ctx context.Context, tx pgx.Tx, t table) (*checksum, error) {
	sum := &checksum{}
	if len(t.columns) == 0 {
		return sum, nil
	}
	sel := make([]string, len(t.columns))
	for i, c := range t.columns {
		sel[i] = pgx.Identifier{c}.Sanitize()
		switch t.types[i] {
		case "json", "jsonb":
			// As text: decoded, large numbers would lose digits.
			sel[i] += "::text"
		case "numeric":
			sel[i] += "::float8"
		}
	}
	rows, err := tx.Query(ctx, `SELECT `+strings.Join(sel, ", ")+` FROM `+pgx.Identifier{t.name}.Sanitize())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		row := make([]any, len(vals))
		for i, v := range vals {
			if row[i], err = convert(v, t.types[i]); err != nil {
				return nil, fmt.Errorf("column %s: %w", t.columns[i], err)
			}
		}
		sum.add(row)
	}
	return sum, rows.Err()
}

func sqliteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}
