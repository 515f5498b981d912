// Package dbcopy copies a homeserver's SQLite database into an empty
// PostgreSQL database migrated to the same schema: generically, table by
// table (the tables and columns come from the two catalogs), in batches,
// with a row count and checksum per table compared on both sides.
package dbcopy

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// table is one table to copy: its name and the columns both sides have,
// with PostgreSQL's type of each.
type table struct {
	name    string
	columns []string
	types   []string
	// serials are the columns whose values a sequence hands out on
	// PostgreSQL (serial or identity), set past the copied values after.
	serials []string
}

// sqliteTables lists the source's tables in creation order (which is
// migration order), without SQLite's own and the virtual tables (full-text
// search) with their shadow tables: the search index is rebuilt on the
// target from the copied events.
func sqliteTables(ctx context.Context, q querier) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT name, COALESCE(sql, '') FROM sqlite_master WHERE type = 'table' ORDER BY rowid`)
	if err != nil {
		return nil, fmt.Errorf("listing the SQLite tables: %w", err)
	}
	defer rows.Close()
	var names, virtual []string
	for rows.Next() {
		var name, ddl string
		if err := rows.Scan(&name, &ddl); err != nil {
			return nil, err
		}
		switch {
		case strings.HasPrefix(name, "sqlite_"):
		case strings.HasPrefix(strings.ToUpper(ddl), "CREATE VIRTUAL TABLE"):
			virtual = append(virtual, name)
		default:
			names = append(names, name)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := names[:0]
	for _, n := range names {
		if !shadowOf(n, virtual) {
			out = append(out, n)
		}
	}
	return out, nil
}

// shadowOf reports whether name is a shadow table of one of the virtual
// tables (FTS5 keeps its index in NAME_data, NAME_idx, NAME_docsize, ...).
func shadowOf(name string, virtual []string) bool {
	for _, v := range virtual {
		switch strings.TrimPrefix(name, v+"_") {
		case "data", "idx", "content", "docsize", "config":
			return strings.HasPrefix(name, v+"_")
		}
	}
	return false
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// sqliteColumns lists a source table's columns.
func sqliteColumns(ctx context.Context, q querier, name string) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT name FROM pragma_table_info($1) ORDER BY cid`, name)
	if err != nil {
		return nil, fmt.Errorf("reading the columns of %s: %w", name, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// pgColumn is one column of a target table.
type pgColumn struct {
	name, typ string
	serial    bool
}

// postgresTables reads the target's tables and their writable columns (not
// generated ones) in the current schema.
func postgresTables(ctx context.Context, tx pgx.Tx) (map[string][]pgColumn, error) {
	rows, err := tx.Query(ctx, `
		SELECT c.table_name, c.column_name, c.data_type,
			c.is_identity = 'YES' OR COALESCE(c.column_default, '') LIKE 'nextval(%'
		FROM information_schema.columns c
		JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
		WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' AND c.is_generated = 'NEVER'
		ORDER BY c.table_name, c.ordinal_position`)
	if err != nil {
		return nil, fmt.Errorf("listing the PostgreSQL tables: %w", err)
	}
	defer rows.Close()
	out := map[string][]pgColumn{}
	for rows.Next() {
		var t string
		var c pgColumn
		if err := rows.Scan(&t, &c.name, &c.typ, &c.serial); err != nil {
			return nil, err
		}
		out[t] = append(out[t], c)
	}
	return out, rows.Err()
}

// foreignKeys maps each target table to the tables it references.
func foreignKeys(ctx context.Context, tx pgx.Tx) (map[string][]string, error) {
	rows, err := tx.Query(ctx, `
		SELECT c.relname, r.relname
		FROM pg_constraint k
		JOIN pg_class c ON c.oid = k.conrelid
		JOIN pg_class r ON r.oid = k.confrelid
		WHERE k.contype = 'f' AND k.connamespace = current_schema()::regnamespace`)
	if err != nil {
		return nil, fmt.Errorf("reading the foreign keys: %w", err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var from, to string
		if err := rows.Scan(&from, &to); err != nil {
			return nil, err
		}
		if from != to {
			out[from] = append(out[from], to)
		}
	}
	return out, rows.Err()
}

// plan matches the source's tables with the target's: every source table
// and column must exist on the target (else the schemas differ and nothing
// is copied); the order is the source's, moved so that a referenced table
// comes before the tables referencing it.
func plan(srcTables []string, srcColumns map[string][]string, dst map[string][]pgColumn, refs map[string][]string) ([]table, error) {
	var problems []string
	byName := map[string]table{}
	for _, name := range srcTables {
		cols, ok := dst[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("table %s is not in the PostgreSQL schema", name))
			continue
		}
		typeOf := map[string]pgColumn{}
		for _, c := range cols {
			typeOf[c.name] = c
		}
		t := table{name: name}
		for _, c := range srcColumns[name] {
			pc, ok := typeOf[c]
			if !ok {
				problems = append(problems, fmt.Sprintf("column %s.%s is not in the PostgreSQL schema", name, c))
				continue
			}
			t.columns = append(t.columns, c)
			t.types = append(t.types, pc.typ)
			if pc.serial {
				t.serials = append(t.serials, c)
			}
		}
		byName[name] = t
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("the databases' schemas differ: %s", strings.Join(problems, "; "))
	}
	return orderByReferences(srcTables, byName, refs), nil
}

// orderByReferences is a depth-first topological order: each table after
// the tables it references, otherwise in the given order.
func orderByReferences(names []string, byName map[string]table, refs map[string][]string) []table {
	var out []table
	state := map[string]int{} // 1: visiting, 2: done
	var visit func(string)
	visit = func(n string) {
		if state[n] != 0 {
			return
		}
		state[n] = 1
		deps := append([]string(nil), refs[n]...)
		sort.Strings(deps)
		for _, d := range deps {
			if _, ok := byName[d]; ok {
				visit(d)
			}
		}
		state[n] = 2
		out = append(out, byName[n])
	}
	for _, n := range names {
		if _, ok := byName[n]; ok {
			visit(n)
		}
	}
	return out
}
