package storage

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"testing"
)

// The JSON helpers read a field's value only when it has the asked-for
// type: anything else, an absent field or a NULL column reads as NULL.
func TestDialectJSONFields(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	for _, c := range []struct {
		doc  any
		keys []string
		text sql.NullString
	}{
		{`{"content":{"name":"Room"}}`, []string{"content", "name"}, sql.NullString{String: "Room", Valid: true}},
		{`{"content":{"name":7}}`, []string{"content", "name"}, sql.NullString{}},
		{`{"content":{"name":null}}`, []string{"content", "name"}, sql.NullString{}},
		{`{"content":{}}`, []string{"content", "name"}, sql.NullString{}},
		{nil, []string{"content", "name"}, sql.NullString{}},
		{`{"content":{"m.new_content":"x"}}`, []string{"content", "m.new_content"}, sql.NullString{String: "x", Valid: true}},
		{`{"prev_content":{"membership":"join"}}`, []string{"prev_content", "membership"}, sql.NullString{String: "join", Valid: true}},
	} {
		var got sql.NullString
		if err := db.q().QueryRowContext(ctx, `SELECT `+jsonText("$1", c.keys...), c.doc).Scan(&got); err != nil {
			t.Fatalf("jsonText(%v, %v): %v", c.doc, c.keys, err)
		}
		if got != c.text {
			t.Errorf("jsonText(%v, %v) = %+v, want %+v", c.doc, c.keys, got, c.text)
		}
	}
	// A \u0000 escape: SQLite reads a NUL, PostgreSQL (whose text holds
	// none) drops it; an escaped backslash before u0000 is no escape.
	pg := db.dialect == dialectPostgres
	for _, c := range []struct{ doc, sqlite, postgres string }{
		{`{"content":{"name":"a\u0000b"}}`, "a\x00b", "ab"},
		{`{"content":{"name":"\u0000\u0000x"}}`, "\x00\x00x", "x"},
		{`{"content":{"name":"a\\u0000b\\"}}`, `a\u0000b\`, `a\u0000b\`},
		{`{"content":{"name":"n","x":"\u0000"}}`, "n", "n"},
	} {
		var got string
		// From a table, as in real queries: PostgreSQL's planner would fold
		// a constant document, evaluating both branches of CASE.
		if err := db.q().QueryRowContext(ctx, `WITH t(doc) AS MATERIALIZED (SELECT CAST($1 AS TEXT))
			SELECT `+jsonText("t.doc", "content", "name")+` FROM t`, c.doc).Scan(&got); err != nil {
			t.Fatalf("jsonText(%s): %v", c.doc, err)
		}
		if want := map[bool]string{false: c.sqlite, true: c.postgres}[pg]; got != want {
			t.Errorf("jsonText(%s) = %q, want %q", c.doc, got, want)
		}
	}
	for _, c := range []struct {
		doc    any
		array  sql.NullString
		object int
	}{
		{`{"content":{"m.new_content":{"body":"x"},"allow":[{"type":"m.room_membership"}]}}`,
			sql.NullString{String: `[{"type":"m.room_membership"}]`, Valid: true}, 1},
		{`{"content":{"m.new_content":"x","allow":"nope"}}`, sql.NullString{}, 0},
		{`{"content":{}}`, sql.NullString{}, 0},
		{nil, sql.NullString{}, 0},
	} {
		var array sql.NullString
		var object int
		err := db.q().QueryRowContext(ctx, `SELECT `+jsonArray("$1", "content", "allow")+`, `+jsonIsObject("$1", "content", "m.new_content"),
			c.doc).Scan(&array, &object)
		if err != nil {
			t.Fatalf("jsonArray/jsonIsObject(%v): %v", c.doc, err)
		}
		if array != c.array || object != c.object {
			t.Errorf("jsonArray, jsonIsObject of %v = %+v, %d; want %+v, %d", c.doc, array, object, c.array, c.object)
		}
	}
	if got := jsonPath([]string{"content", "m.new_content", "body"}); got != `'$.content."m.new_content".body'` {
		t.Errorf("jsonPath = %s", got)
	}
}

// Array parameters: membership, its negation and a table of the values;
// an empty (or nil) array matches nothing and excludes nothing.
func TestDialectArrayParameters(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	const values = `WITH t(v) AS (VALUES ('a'), ('b'), ('c')) `
	pick := func(cond string, arg any) string {
		t.Helper()
		got, err := queryStrings(ctx, db.q(), values+`SELECT v FROM t WHERE `+cond+` ORDER BY v`, arg)
		if err != nil {
			t.Fatalf("%s: %v", cond, err)
		}
		return strings.Join(got, ",")
	}
	if got := pick(inArray("v", 1), arrayArg([]string{"c", "a", "zz"})); got != "a,c" {
		t.Errorf("inArray = %q, want a,c", got)
	}
	if got := pick(inArray("v", 1), arrayArg([]string(nil))); got != "" {
		t.Errorf("inArray of nil = %q, want nothing", got)
	}
	if got := pick(notInArray("v", 1), arrayArg([]string{"b"})); got != "a,c" {
		t.Errorf("notInArray = %q, want a,c", got)
	}
	if got := pick(notInArray("v", 1), arrayArg([]string{})); got != "a,b,c" {
		t.Errorf("notInArray of empty = %q, want all", got)
	}
	var n, sum int64
	if err := db.q().QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(r.value), 0) FROM `+arrayTable(1, "r"),
		arrayArg([]int64{3, 4, 5})).Scan(&n, &sum); err != nil || n != 3 || sum != 12 {
		t.Errorf("arrayTable: %d rows summing to %d, %v; want 3 and 12", n, sum, err)
	}
	if err := db.q().QueryRowContext(ctx, `SELECT COUNT(*) FROM `+arrayTable(1, "r"), arrayArg([]int64(nil))).Scan(&n); err != nil || n != 0 {
		t.Errorf("arrayTable of nil: %d rows, %v", n, err)
	}
	var g int64
	if err := db.q().QueryRowContext(ctx, `SELECT `+greatest("CAST($1 AS BIGINT)", "CAST($2 AS BIGINT)")+`, `+noIndex("CAST($1 AS BIGINT)"), 4, 9).Scan(&g, &n); err != nil || g != 9 || n != 4 {
		t.Errorf("greatest(4, 9) = %d, noIndex(4) = %d, %v", g, n, err)
	}
	var server string
	if err := db.q().QueryRowContext(ctx, `SELECT `+userIDServer("$1"), "@u:example.org:8448").Scan(&server); err != nil || server != "example.org:8448" {
		t.Errorf("userIDServer = %q, %v", server, err)
	}
}

func TestDialectUniqueViolation(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	insert := func() error {
		return db.Write(ctx, func(tx *Tx) error {
			_, err := tx.exec(ctx, `INSERT INTO rooms (room_id, room_version, created_ts) VALUES ('!dup:x', '11', 1)`)
			return err
		})
	}
	if err := insert(); err != nil {
		t.Fatal(err)
	}
	err := insert()
	if !isUniqueViolation(err, "rooms.room_id") {
		t.Fatalf("second insert: %v, not a unique violation on rooms.room_id", err)
	}
	if isUniqueViolation(err, "rooms.room_nid") || isUniqueViolation(nil, "rooms.room_id") ||
		isUniqueViolation(errors.New("disk I/O error"), "rooms.room_id") {
		t.Fatal("isUniqueViolation matched another column, nil or another error")
	}
	want := map[dialect]string{dialectSQLite: "+$3", dialectPostgres: "$3"}[db.dialect]
	if got := db.dialect.render(noReprepare(3)); got != want {
		t.Fatalf("noReprepare(3) = %q, want %q", got, want)
	}
}

// queryPlan is SQLite's plan for query, one step per line.
func queryPlan(t *testing.T, db *DB, query string, args ...any) []string {
	t.Helper()
	rows, err := db.q().QueryContext(context.Background(), `EXPLAIN QUERY PLAN `+query, args...)
	if err != nil {
		t.Fatalf("explaining: %v\n%s", err, query)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	return plan
}

// TestHotQueriesUseIndexes: the queries that read the state_value and
// membership columns, the JSON helpers and array parameters look rows up
// by index. A full scan is allowed only of array parameters, of the
// query's own CTEs and where a query means to walk every room.
func TestHotQueriesUseIndexes(t *testing.T) {
	sqliteOnly(t, "reads SQLite's query plans")
	db, _ := openTestDB(t)
	nids, types := arrayArg([]int64{1, 2}), arrayArg(BumpEventTypes)
	for _, c := range []struct {
		name  string
		query string
		args  []any
		scans []string // tables (by alias) the query may scan
		uses  []string // index uses the plan must contain
	}{
		{"user directory", userDirectoryCandidates, []any{"@a:x"}, []string{"r", "v"},
			[]string{"SEARCH je USING INTEGER PRIMARY KEY", "SEARCH he USING INTEGER PRIMARY KEY", "SEARCH m USING PRIMARY KEY"}},
		{"published rooms", publishedRoomsQuery, nil, []string{"r"}, []string{"SEARCH c USING PRIMARY KEY"}},
		{"admin rooms", adminRoomsQuery, nil, []string{"r"}, []string{"SEARCH c USING PRIMARY KEY", "SEARCH e USING INTEGER PRIMARY KEY"}},
		{"room preview", roomPreviewQuery, []any{"!r:x"}, nil, []string{"SEARCH r USING INDEX", "SEARCH c USING PRIMARY KEY"}},
		{"searchable rooms", searchRoomsQuery, []any{"@a:x"}, nil, []string{"SEARCH e USING INDEX events_user_membership"}},
		{"device list changes", deviceListChangesQuery, []any{"@a:x", 1, 5}, nil,
			[]string{"SEARCH e USING INDEX events_room_stream", "SEARCH e USING INDEX events_user_membership"}},
		{"bump stamps", bumpStampsQuery, []any{nids, 5, types}, nil, []string{"SEARCH e USING INDEX events_room_stream"}},
		{"room flags", roomFlagsQuery, []any{nids}, nil, []string{"SEARCH c USING PRIMARY KEY"}},
		{"newly joined", newlyJoinedQuery, []any{nids, 5, nids}, nil, []string{"SEARCH current_state USING PRIMARY KEY"}},
		{"room account data", roomAccountDataQuery, []any{"@a:x", arrayArg([]string{"!a"}), 5}, nil,
			[]string{"(user_id=? AND room_id=?)"}},
		{"account data", accountDataQuery, []any{"@a:x", "!a", "m.tag"}, nil, []string{"(user_id=? AND room_id=? AND type=?)"}},
		{"state history", stateHistoryQuery, []any{1, "m.room.member", "@a:x"}, nil, []string{"SEARCH e USING INDEX events_state"}},
		{"delete current state", deleteCurrentStateQuery, []any{1, "m.room.member", "@a:x"}, nil,
			[]string{"SEARCH current_state USING PRIMARY KEY (room_nid=? AND type=? AND state_key=?)"}},
		{"cancel delayed state", cancelDelayedStateQuery, []any{"!r", "m.room.topic", "", "@a:x"}, nil,
			[]string{"USING INDEX delayed_events_state (room_id=? AND type=? AND state_key=?)"}},
	} {
		plan := queryPlan(t, db, c.query, c.args...)
		joined := strings.Join(plan, "\n")
		for _, step := range plan {
			table, scanned := strings.CutPrefix(step, "SCAN ")
			if !scanned || strings.Contains(step, "VIRTUAL TABLE") {
				continue
			}
			table, _, _ = strings.Cut(table, " ")
			if !slices.Contains(c.scans, table) {
				t.Errorf("%s scans %s:\n%s", c.name, table, joined)
			}
		}
		for _, want := range c.uses {
			if !strings.Contains(joined, want) {
				t.Errorf("%s: plan lacks %q:\n%s", c.name, want, joined)
			}
		}
	}
}
