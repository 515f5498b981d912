package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
)

// The SQL that only SQLite speaks lives behind these helpers, so that a
// second engine (PostgreSQL) is a contained change: queries stay plain $n
// SQL with these fragments spliced in, and a port reimplements this file.
//
// Outside it:
//   - Full-text search (FTS5: the event_search table, MATCH, bm25, and the
//     JSON array of search windows) is confined to search.go, which a port
//     replaces as a whole.
//   - Open (db.go) holds the DSN and PRAGMAs, Backup uses VACUUM INTO, and
//     the migrations are SQLite's (a port keeps a folder of its own).
//   - Still written the SQLite way, for a port to rewrite where it meets
//     them: booleans stored as 0/1 and compared or summed as integers, and
//     the bare columns of a MAX() aggregate (relations.go, aggregations).
//
// The content fields that queries filter on are columns, not JSON:
// events.state_value (membership, join_rule, history_visibility) and
// current_state.membership.

// jsonText is an SQL expression for a text field of a JSON column: the
// field's string value, NULL when it is absent, not a string, or the column
// is NULL. keys lead from the document's root to the field ("content",
// "displayname"); they are constants of this package, never input.
func jsonText(column string, keys ...string) string {
	p := jsonPath(keys)
	return `(CASE WHEN json_type(` + column + `, ` + p + `) = 'text' THEN json_extract(` + column + `, ` + p + `) END)`
}

// jsonArray is an SQL expression for an array field of a JSON column: the
// array as JSON text, NULL when the field is absent or no array.
func jsonArray(column string, keys ...string) string {
	p := jsonPath(keys)
	return `(CASE WHEN json_type(` + column + `, ` + p + `) = 'array' THEN json_extract(` + column + `, ` + p + `) END)`
}

// jsonIsObject is an SQL expression that is 1 when a field of a JSON column
// is an object and 0 otherwise.
func jsonIsObject(column string, keys ...string) string {
	return `COALESCE(json_type(` + column + `, ` + jsonPath(keys) + `) = 'object', 0)`
}

// jsonPath is SQLite's path literal for keys: '$.a."b.c"'.
func jsonPath(keys []string) string {
	var b strings.Builder
	b.WriteString(`'$`)
	for _, k := range keys {
		if strings.ContainsAny(k, `'"`) {
			panic(fmt.Sprintf("storage: JSON key %q needs escaping", k))
		}
		b.WriteByte('.')
		if strings.ContainsAny(k, ". []$") {
			b.WriteString(`"` + k + `"`)
		} else {
			b.WriteString(k)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// inArray is an SQL condition: expr is one of the values of the array
// bound to parameter n (built with arrayArg).
func inArray(expr string, n int) string {
	return fmt.Sprintf(`%s IN (SELECT value FROM json_each($%d))`, expr, n)
}

// notInArray is inArray's negation (false for a NULL expr, as NOT IN).
func notInArray(expr string, n int) string {
	return fmt.Sprintf(`%s NOT IN (SELECT value FROM json_each($%d))`, expr, n)
}

// arrayTable is a FROM item with one row per value of the array bound to
// parameter n, its column being alias.value.
func arrayTable(n int, alias string) string {
	return fmt.Sprintf(`json_each($%d) AS %s`, n, alias)
}

// arrayArg is the parameter value of an array of strings or integers for
// inArray, notInArray and arrayTable (never NULL: nil is the empty array).
func arrayArg[T ~string | ~int64](values []T) any {
	if len(values) == 0 {
		return `[]`
	}
	b, err := json.Marshal(values)
	if err != nil {
		panic(fmt.Sprintf("storage: encoding an array parameter: %v", err))
	}
	return string(b)
}

// noReprepare writes parameter n where it is compared for equality with a
// column that a partial index restricts to a constant (events.type and
// current_state.type, indexed WHERE type = 'm.room.member'). SQLite
// otherwise checks the bound value against the index's constant and marks
// the statement to be re-prepared on every new binding, which more than
// doubles the query's cost; the unary plus keeps the column's other indexes
// usable. TestNoBareTypeParameters keeps every such comparison on it.
func noReprepare(n int) string { return fmt.Sprintf(`+$%d`, n) }

// noIndex writes a column so that the planner does not use an index on it
// to satisfy that term (it picks an index on the query's other terms).
func noIndex(column string) string { return `+` + column }

// joinInOrder joins the next table keeping the written join order: SQLite
// never reorders around a CROSS JOIN, so a query runs room by room whatever
// the planner's estimates. (PostgreSQL spells this JOIN with
// join_collapse_limit, and rejects CROSS JOIN ... ON.)
const joinInOrder = `CROSS JOIN`

// userIDServer is an SQL expression for the server name of a user ID
// column: what follows its first ':'.
func userIDServer(column string) string {
	return `substr(` + column + `, instr(` + column + `, ':') + 1)`
}

// greatest is an SQL expression for the larger of two values.
func greatest(a, b string) string { return `MAX(` + a + `, ` + b + `)` }

// isUniqueViolation reports whether err is a unique-constraint failure on
// the named table.column.
func isUniqueViolation(err error, column string) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed: "+column)
}

// tableColumnsQuery lists (table, column) for every table of the schema
// (SQLite's catalogue; FTS5 tables and their shadow tables hold no room or
// event columns but are listed like the others).
const tableColumnsQuery = `SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
	WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'`

// ReclaimSpace returns up to pages free pages of the database file to the
// file system (SQLite's incremental vacuum; the database must have been
// created with auto_vacuum = INCREMENTAL, see Open, else it does nothing).
func (db *DB) ReclaimSpace(ctx context.Context, pages int) error {
	return db.Write(ctx, func(tx *Tx) error {
		rows, err := tx.q().QueryContext(ctx, fmt.Sprintf(`PRAGMA incremental_vacuum(%d)`, pages))
		if err != nil {
			return fmt.Errorf("incremental vacuum: %w", err)
		}
		for rows.Next() {
		}
		rows.Close()
		return rows.Err()
	})
}

// FreePages is how many pages of the database file are free (reusable or
// reclaimable by ReclaimSpace).
func (db *DB) FreePages(ctx context.Context) (int64, error) {
	var n int64
	err := db.q().QueryRowContext(ctx, `PRAGMA freelist_count`).Scan(&n)
	return n, err
}

// useIncrementalVacuum makes a new, empty database one whose free pages
// ReclaimSpace can return (auto_vacuum is fixed when the first table is
// created).
func useIncrementalVacuum(ctx context.Context, w *sql.DB) error {
	var tables int
	if err := w.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master`).Scan(&tables); err != nil {
		return fmt.Errorf("reading the catalogue: %w", err)
	}
	if tables > 0 {
		return nil
	}
	// The WAL switch wrote the file's first page already: the setting
	// takes effect with a VACUUM, which an empty file makes instant.
	for _, q := range []string{`PRAGMA auto_vacuum = INCREMENTAL`, `VACUUM`} {
		if _, err := w.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("setting auto_vacuum: %w", err)
		}
	}
	return nil
}
