package storage

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"matrixhs/internal/pgtest"
)

// Both engines' migrations build the same tables with the same columns,
// of the same type family. The full-text index is the one exception: an
// FTS5 virtual table (and its shadow tables) on SQLite, a tsvector table
// on PostgreSQL.
func TestSchemasMatch(t *testing.T) {
	ctx := context.Background()
	lite, err := Open(ctx, filepath.Join(t.TempDir(), "schema.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	pg, err := OpenPostgres(ctx, pgtest.URL(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	a, b := sqliteSchema(t, lite), postgresSchema(t, pg)
	if len(a) < 40 || a["events"]["json"] != "text" {
		t.Fatalf("read %d SQLite tables (events: %v): the schema was not read", len(a), a["events"])
	}
	for _, table := range slices.Sorted(maps.Keys(a)) {
		if b[table] == nil {
			t.Errorf("table %s is missing on PostgreSQL", table)
			continue
		}
		if got, want := columnsOf(b[table]), columnsOf(a[table]); got != want {
			t.Errorf("table %s:\n  sqlite:   %s\n  postgres: %s", table, want, got)
		}
	}
	for table := range b {
		if a[table] == nil {
			t.Errorf("table %s is missing on SQLite", table)
		}
	}
	if av, bv := mustSchemaVersion(t, lite), mustSchemaVersion(t, pg); av != bv {
		t.Errorf("schema versions: sqlite %d, postgres %d", av, bv)
	}
}

func mustSchemaVersion(t *testing.T, db *DB) int {
	v, err := db.SchemaVersion(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// schema maps tables to their columns' type families.
type schema map[string]map[string]string

func columnsOf(cols map[string]string) string {
	var out []string
	for _, c := range slices.Sorted(maps.Keys(cols)) {
		out = append(out, c+" "+cols[c])
	}
	return strings.Join(out, ", ")
}

// typeFamily puts a declared type in a family both engines share.
func typeFamily(t *testing.T, table, column, typ string) string {
	switch strings.ToLower(typ) {
	case "integer", "bigint", "int", "int8", "int4", "smallint":
		return "integer"
	case "text", "character varying":
		return "text"
	case "blob", "bytea":
		return "bytes"
	}
	t.Errorf("%s.%s: type %q in no family", table, column, typ)
	return typ
}

func ftsTable(name string) bool {
	return name == "event_search" || strings.HasPrefix(name, "event_search_") && name != "event_search_docs"
}

func sqliteSchema(t *testing.T, db *DB) schema {
	ctx := context.Background()
	tables, err := queryStrings(ctx, db.q(), `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`)
	if err != nil {
		t.Fatal(err)
	}
	out := schema{}
	for _, table := range tables {
		if ftsTable(table) {
			continue
		}
		rows, err := db.readers.QueryContext(ctx, fmt.Sprintf(`SELECT name, type FROM pragma_table_info('%s')`, table))
		if err != nil {
			t.Fatal(err)
		}
		out[table] = map[string]string{}
		for rows.Next() {
			var name, typ string
			if err := rows.Scan(&name, &typ); err != nil {
				t.Fatal(err)
			}
			out[table][name] = typeFamily(t, table, name, typ)
		}
		rows.Close()
	}
	return out
}

func postgresSchema(t *testing.T, db *DB) schema {
	rows, err := db.readers.QueryContext(context.Background(), `SELECT table_name, column_name, data_type
		FROM information_schema.columns WHERE table_schema = current_schema()`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := schema{}
	for rows.Next() {
		var table, name, typ string
		if err := rows.Scan(&table, &name, &typ); err != nil {
			t.Fatal(err)
		}
		if ftsTable(table) {
			continue
		}
		if out[table] == nil {
			out[table] = map[string]string{}
		}
		out[table][name] = typeFamily(t, table, name, typ)
	}
	return out
}

// Every migration is in an engine's folder (one left in migrations/ itself
// would never run), and each has its counterpart under the same number in
// the other engine's.
func TestMigrationFoldersMatch(t *testing.T) {
	entries, err := os.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			t.Errorf("migrations/%s: put it in migrations/sqlite, with its PostgreSQL form in migrations/postgres", e.Name())
		}
	}
	numbers := func(d dialect) []string {
		all, err := migrations(d)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range all {
			out = append(out, fmt.Sprintf("%04d_%s", m.version, m.name))
		}
		return out
	}
	if a, b := numbers(dialectSQLite), numbers(dialectPostgres); !slices.Equal(a, b) {
		t.Errorf("migrations differ:\n  sqlite:   %v\n  postgres: %v", a, b)
	}
}
