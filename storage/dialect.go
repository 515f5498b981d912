package storage

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// The SQL that differs between SQLite and PostgreSQL lives behind these
// helpers. Queries stay plain $n SQL with the helpers' fragments spliced in;
// a fragment is a marker (a name and its arguments between control
// characters) that each DB renders in its own dialect when it runs the
// query, so a query built once, even into a package-level variable, serves
// both engines.
//
// Outside this file:
//   - Full-text search (FTS5 on SQLite, tsvector on PostgreSQL) is confined
//     to search.go and search_postgres.go.
//   - Open and OpenPostgres (db.go, postgres.go) hold the connection set-up,
//     Backup is SQLite's VACUUM INTO, and each engine has its folder of
//     migrations (migrations/sqlite, migrations/postgres).
//   - Booleans are stored as 0/1 integers on both engines, and compared or
//     summed as integers.
//
// The content fields that queries filter on are columns, not JSON:
// events.state_value (membership, join_rule, history_visibility) and
// current_state.membership.

// dialect is the SQL spoken by one DB's engine.
type dialect int

const (
	dialectSQLite dialect = iota
	dialectPostgres
)

func (d dialect) String() string {
	if d == dialectPostgres {
		return "postgres"
	}
	return "sqlite"
}

// Markers of a fragment: fragStart name fragSep arg fragSep arg fragEnd.
// Control characters never occur in the SQL text of this package.
const (
	fragStart = "\x02"
	fragSep   = "\x1f"
	fragEnd   = "\x03"
)

func fragment(name string, args ...string) string {
	for _, a := range args {
		if strings.ContainsAny(a, fragSep) {
			panic(fmt.Sprintf("storage: fragment argument %q holds a separator", a))
		}
	}
	return fragStart + strings.Join(append([]string{name}, args...), fragSep) + fragEnd
}

// render is query in dialect d: every fragment replaced by its SQL,
// innermost first (a fragment's arguments may hold fragments).
func (d dialect) render(query string) string {
	if !strings.Contains(query, fragStart) {
		return query
	}
	for {
		end := strings.Index(query, fragEnd)
		if end < 0 {
			return query
		}
		start := strings.LastIndex(query[:end], fragStart)
		if start < 0 {
			panic("storage: unbalanced SQL fragment in " + strconv.Quote(query))
		}
		parts := strings.Split(query[start+len(fragStart):end], fragSep)
		query = query[:start] + d.fragmentSQL(parts[0], parts[1:]) + query[end+len(fragEnd):]
	}
}

// fragmentSQL is the SQL of one fragment in dialect d.
func (d dialect) fragmentSQL(name string, a []string) string {
	pg := d == dialectPostgres
	switch name {
	case "jsonText":
		if pg {
			v := pgJSONPath(a[0], a[1:])
			return `(CASE WHEN json_typeof(` + v + `) = 'string' THEN (` + v + ` #>> '{}') END)`
		}
		p := jsonPath(a[1:])
		return `(CASE WHEN json_type(` + a[0] + `, ` + p + `) = 'text' THEN json_extract(` + a[0] + `, ` + p + `) END)`
	case "jsonArray":
		if pg {
			v := pgJSONPath(a[0], a[1:])
			return `(CASE WHEN json_typeof(` + v + `) = 'array' THEN (` + v + `)::text END)`
		}
		p := jsonPath(a[1:])
		return `(CASE WHEN json_type(` + a[0] + `, ` + p + `) = 'array' THEN json_extract(` + a[0] + `, ` + p + `) END)`
	case "jsonIsObject":
		if pg {
			return `(CASE WHEN json_typeof(` + pgJSONPath(a[0], a[1:]) + `) = 'object' THEN 1 ELSE 0 END)`
		}
		return `COALESCE(json_type(` + a[0] + `, ` + jsonPath(a[1:]) + `) = 'object', 0)`
	case "inArray":
		if pg {
			return a[0] + ` = ANY($` + a[1] + `)`
		}
		return a[0] + ` IN (SELECT value FROM json_each($` + a[1] + `))`
	case "notInArray":
		if pg {
			return a[0] + ` <> ALL($` + a[1] + `)`
		}
		return a[0] + ` NOT IN (SELECT value FROM json_each($` + a[1] + `))`
	case "intArrayTable":
		if pg {
			return `unnest($` + a[0] + `::bigint[]) AS ` + a[1] + `(value)`
		}
		return `json_each($` + a[0] + `) AS ` + a[1]
	case "noReprepare":
		if pg {
			return `$` + a[0]
		}
		return `+$` + a[0]
	case "noIndex":
		if pg {
			return a[0]
		}
		return `+` + a[0]
	case "joinInOrder":
		if pg {
			return `JOIN`
		}
		return `CROSS JOIN`
	case "userIDServer":
		if pg {
			return `substr(` + a[0] + `, strpos(` + a[0] + `, ':') + 1)`
		}
		return `substr(` + a[0] + `, instr(` + a[0] + `, ':') + 1)`
	case "containsText":
		if pg {
			return `strpos(` + a[0] + `, ` + a[1] + `) > 0`
		}
		return `instr(` + a[0] + `, ` + a[1] + `) > 0`
	case "tableColumns":
		if pg {
			return `SELECT table_name::text, column_name::text FROM information_schema.columns
	WHERE table_schema = current_schema()`
		}
		return `SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
	WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'`
	case "greatest":
		if pg {
			return `GREATEST(` + a[0] + `, ` + a[1] + `)`
		}
		return `MAX(` + a[0] + `, ` + a[1] + `)`
	}
	panic("storage: unknown SQL fragment " + name)
}

// jsonText is an SQL expression for a text field of a JSON column: the
// field's string value, NULL when it is absent, not a string, or the column
// is NULL. keys lead from the document's root to the field ("content",
// "displayname"); they are constants of this package, never input.
func jsonText(column string, keys ...string) string {
	checkJSONKeys(keys)
	return fragment("jsonText", append([]string{column}, keys...)...)
}

// jsonArray is an SQL expression for an array field of a JSON column: the
// array as JSON text, NULL when the field is absent or no array.
func jsonArray(column string, keys ...string) string {
	checkJSONKeys(keys)
	return fragment("jsonArray", append([]string{column}, keys...)...)
}

// jsonIsObject is an SQL expression that is 1 when a field of a JSON column
// is an object and 0 otherwise.
func jsonIsObject(column string, keys ...string) string {
	checkJSONKeys(keys)
	return fragment("jsonIsObject", append([]string{column}, keys...)...)
}

func checkJSONKeys(keys []string) {
	for _, k := range keys {
		if strings.ContainsAny(k, `'"`) {
			panic(fmt.Sprintf("storage: JSON key %q needs escaping", k))
		}
	}
}

// jsonPath is SQLite's path literal for keys: '$.a."b.c"'.
func jsonPath(keys []string) string {
	var b strings.Builder
	b.WriteString(`'$`)
	for _, k := range keys {
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

// pgJSONPath is PostgreSQL's expression for the JSON value at keys of a
// column holding JSON text. The column is TEXT, not jsonb: jsonb refuses
// documents with \u0000 escapes, which Matrix events may hold.
func pgJSONPath(column string, keys []string) string {
	quoted := make([]string, len(keys))
	for i, k := range keys {
		quoted[i] = `'` + k + `'`
	}
	return `(` + pgJSONDoc(column) + ` #> ARRAY[` + strings.Join(quoted, ",") + `]::text[])`
}

// pgJSONDoc is a column of JSON text as json that PostgreSQL's operators
// can read. They fail on a document with a \u0000 escape anywhere (text
// holds no NUL), so such escapes are dropped first (where SQLite reads a
// NUL): escaped backslashes are set aside as a character JSON text never
// holds unescaped (U+0001), the escapes removed, the backslashes put back.
func pgJSONDoc(column string) string {
	return `(CASE WHEN strpos(` + column + `, '\u0000') = 0 THEN (` + column + `)::json
		ELSE replace(replace(replace(` + column + `, '\\', chr(1)), '\u0000', ''), chr(1), '\\')::json END)`
}

// inArray is an SQL condition: expr is one of the values of the array
// bound to parameter n (built with arrayArg).
func inArray(expr string, n int) string { return fragment("inArray", expr, strconv.Itoa(n)) }

// notInArray is inArray's negation (false for a NULL expr, as NOT IN).
func notInArray(expr string, n int) string { return fragment("notInArray", expr, strconv.Itoa(n)) }

// arrayTable is a FROM item with one row per value of the array of
// integers bound to parameter n, its column being alias.value.
func arrayTable(n int, alias string) string {
	return fragment("intArrayTable", strconv.Itoa(n), alias)
}

// sqlArray is an array parameter: JSON text on SQLite (for json_each), a
// native array on PostgreSQL (converted by the querier, see pgArgs).
type sqlArray struct {
	values any // []string or []int64, never nil
}

// Value is the SQLite form.
func (a sqlArray) Value() (driver.Value, error) {
	b, err := json.Marshal(a.values)
	if err != nil {
		return nil, fmt.Errorf("storage: encoding an array parameter: %w", err)
	}
	return string(b), nil
}

// arrayArg is the parameter value of an array of strings or integers for
// inArray, notInArray and arrayTable (never NULL: nil is the empty array).
func arrayArg[T ~string | ~int64](values []T) any {
	if values == nil {
		values = []T{}
	}
	switch v := any(values).(type) {
	case []string, []int64:
		return sqlArray{values: v}
	}
	// A named element type: convert to the plain one the drivers know.
	rv := reflect.ValueOf(values)
	if rv.Type().Elem().Kind() == reflect.String {
		out := make([]string, rv.Len())
		for i := range out {
			out[i] = rv.Index(i).String()
		}
		return sqlArray{values: out}
	}
	out := make([]int64, rv.Len())
	for i := range out {
		out[i] = rv.Index(i).Int()
	}
	return sqlArray{values: out}
}

// pgArgs converts parameters to what the PostgreSQL driver binds: arrays
// natively, booleans as the 0/1 integers the columns hold.
func pgArgs(args []any) []any {
	var out []any
	for i, a := range args {
		var conv any
		switch v := a.(type) {
		case sqlArray:
			conv = v.values
		case bool:
			conv = int64(0)
			if v {
				conv = int64(1)
			}
		default:
			continue
		}
		if out == nil {
			out = append([]any(nil), args...)
		}
		out[i] = conv
	}
	if out == nil {
		return args
	}
	return out
}

// noReprepare writes parameter n where it is compared for equality with a
// column that a partial index restricts to a constant (events.type and
// current_state.type, indexed WHERE type = 'm.room.member'). SQLite
// otherwise checks the bound value against the index's constant and marks
// the statement to be re-prepared on every new binding, which more than
// doubles the query's cost; the unary plus keeps the column's other indexes
// usable. TestNoBareTypeParameters keeps every such comparison on it.
// PostgreSQL needs nothing of the sort.
func noReprepare(n int) string { return fragment("noReprepare", strconv.Itoa(n)) }

// noIndex writes a column so that the planner does not use an index on it
// to satisfy that term (it picks an index on the query's other terms). On
// PostgreSQL it is the bare column.
func noIndex(column string) string { return fragment("noIndex", column) }

// joinInOrder joins the next table keeping the written join order: SQLite
// never reorders around a CROSS JOIN, so a query runs room by room whatever
// the planner's estimates. PostgreSQL rejects CROSS JOIN ... ON, and plans
// the join by its statistics.
var joinInOrder = fragment("joinInOrder")

// userIDServer is an SQL expression for the server name of a user ID
// column: what follows its first ':'.
func userIDServer(column string) string { return fragment("userIDServer", column) }

// containsText is an SQL condition: text contains needle literally (no
// LIKE wildcards).
func containsText(text, needle string) string { return fragment("containsText", text, needle) }

// greatest is an SQL expression for the larger of two values.
func greatest(a, b string) string { return fragment("greatest", a, b) }

// isUniqueViolation reports whether err is a unique-constraint failure on
// the named table.column (either engine).
func isUniqueViolation(err error, column string) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		table, col, _ := strings.Cut(column, ".")
		return pgErr.Code == "23505" && pgErr.TableName == table && strings.HasPrefix(pgErr.Detail, "Key ("+col+")=")
	}
	return strings.Contains(err.Error(), "UNIQUE constraint failed: "+column)
}

// tableColumnsQuery lists (table, column) for every table of the schema
// (SQLite's catalogue: FTS5 tables and their shadow tables hold no room or
// event columns but are listed like the others; PostgreSQL's: the tables
// of the current schema).
var tableColumnsQuery = fragment("tableColumns")

// ReclaimSpace returns up to pages free pages of the database file to the
// file system (SQLite's incremental vacuum; the database must have been
// created with auto_vacuum = INCREMENTAL, see Open, else it does nothing).
// PostgreSQL's autovacuum does this itself: nothing to do there.
func (db *DB) ReclaimSpace(ctx context.Context, pages int) error {
	if db.dialect == dialectPostgres {
		return nil
	}
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
// reclaimable by ReclaimSpace); always 0 on PostgreSQL, whose autovacuum
// manages free space.
func (db *DB) FreePages(ctx context.Context) (int64, error) {
	if db.dialect == dialectPostgres {
		return 0, nil
	}
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
