package dbcopy

import (
	"strings"
	"testing"
)

func TestPlanOrdersByReferencesAndRefusesMissingColumns(t *testing.T) {
	src := []string{"devices", "accounts", "events", "rooms"}
	cols := map[string][]string{"devices": {"id", "user_id"}, "accounts": {"user_id"}, "events": {"nid", "room_nid"}, "rooms": {"room_nid"}}
	dst := map[string][]pgColumn{
		"devices":  {{name: "id", typ: "bigint", serial: true}, {name: "user_id", typ: "text"}},
		"accounts": {{name: "user_id", typ: "text"}},
		"events":   {{name: "nid", typ: "bigint"}, {name: "room_nid", typ: "bigint"}, {name: "extra", typ: "text"}},
		"rooms":    {{name: "room_nid", typ: "bigint"}},
	}
	refs := map[string][]string{"devices": {"accounts"}, "events": {"rooms"}}
	tables, err := plan(src, cols, dst, refs)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, tb := range tables {
		order = append(order, tb.name)
	}
	if got := strings.Join(order, ","); got != "accounts,devices,rooms,events" {
		t.Errorf("order = %s, want referenced tables first, else the source's order", got)
	}
	if tables[1].serials[0] != "id" {
		t.Errorf("devices' serial columns = %v", tables[1].serials)
	}

	cols["rooms"] = append(cols["rooms"], "gone")
	if _, err := plan(src, cols, dst, refs); err == nil || !strings.Contains(err.Error(), "rooms.gone") {
		t.Errorf("a source column missing on the target: err = %v", err)
	}
	if _, err := plan(append(src, "lost"), cols, dst, refs); err == nil || !strings.Contains(err.Error(), "lost") {
		t.Errorf("a source table missing on the target: err = %v", err)
	}
}

// TestChecksumSameOnBothSides: a row as SQLite gives it and as PostgreSQL
// gives it back sum the same, in any order; any change of a value does not.
func TestChecksumSameOnBothSides(t *testing.T) {
	types := []string{"bigint", "integer", "text", "bytea", "jsonb", "double precision", "text"}
	sqliteRows := [][]any{
		{int64(1), int64(7), "alice", "raw", `{"b":1,"a":[1,2]}`, int64(2), nil},
		{int64(2), int64(8), []byte("bob"), []byte{0, 1}, `{"x":12345678901234567890}`, 1.5, "t"},
	}
	pgRows := [][]any{
		{int64(2), int32(8), "bob", []byte{0, 1}, `{"x": 12345678901234567890}`, 1.5, "t"},
		{int64(1), int32(7), "alice", []byte("raw"), `{"a": [1, 2], "b": 1}`, float64(2), nil},
	}
	sum := func(rows [][]any) string {
		c := &checksum{}
		for _, r := range rows {
			conv := make([]any, len(r))
			for i, v := range r {
				var err error
				if conv[i], err = convert(v, types[i]); err != nil {
					t.Fatalf("convert %v (%s): %v", v, types[i], err)
				}
			}
			c.add(conv)
		}
		return c.String()
	}
	if a, b := sum(sqliteRows), sum(pgRows); a != b {
		t.Errorf("checksums differ: SQLite %s, PostgreSQL %s", a, b)
	}
	pgRows[0][2] = "bobby"
	if sum(sqliteRows) == sum(pgRows) {
		t.Error("a changed value left the checksum alone")
	}
	if _, err := convert("a\x00b", "text"); err == nil {
		t.Error("text with a NUL byte accepted")
	}
}

func TestShadowTables(t *testing.T) {
	virtual := []string{"event_search"}
	for name, want := range map[string]bool{
		"event_search_data": true, "event_search_idx": true, "event_search_docsize": true, "event_search_config": true,
		"event_search_docs": false, "events": false,
	} {
		if got := shadowOf(name, virtual); got != want {
			t.Errorf("shadowOf(%s) = %v, want %v", name, got, want)
		}
	}
}
