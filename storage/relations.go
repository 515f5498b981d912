package storage

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// Relations (spec "Forming relationships between events"): a child event
// names its parent in content.m.relates_to, which persist copies into the
// relates_to and rel_type columns (index events_relates). Only timeline
// events of the parent's room with a rel_type count, and a redacted child no
// longer relates to anything: its relationship is broken (spec "Aggregations
// of child events"), so every query here leaves redacted children out.

// Relationship types the server aggregates.
const (
	RelThread    = "m.thread"
	RelReplace   = "m.replace"
	RelReference = "m.reference"
)

// RelationFilter selects the children of one event for /relations.
type RelationFilter struct {
	RoomNID   int64
	EventID   string // the parent
	RelType   string // "" for any relationship type
	EventType string // "" for any event type
	// Depth is how many levels of relations to follow: 1 returns direct
	// children only, 3 also their children and grandchildren. The filters
	// apply at every level: a child reached only through a non-matching
	// intermediate event is not returned.
	Depth int
}

// Relations returns up to limit children of an event in topological
// order: with backwards, those in (to, from], newest first; else those in
// (from, to], oldest first.
func (db *DB) Relations(ctx context.Context, f RelationFilter, from, to TopoPos, backwards bool, limit int) ([]Event, error) {
	depth := max(f.Depth, 1)
	lo, hi, order := from, to, "ASC"
	if backwards {
		lo, hi, order = to, from, "DESC"
	}
	match := func(alias string) string {
		return fmt.Sprintf(`%[1]s.room_nid = $2 AND %[1]s.stream_pos IS NOT NULL AND %[1]s.redacted_by IS NULL
			AND %[1]s.rel_type IS NOT NULL AND ($3 = '' OR %[1]s.rel_type = $3) AND ($4 = '' OR %[1]s.type = %[2]s)`, alias, noReprepare(4))
	}
	return scanEvents(db.q().QueryContext(ctx, `WITH RECURSIVE rel(event_nid, event_id, depth) AS (
			SELECT c.event_nid, c.event_id, 1 FROM events c WHERE c.relates_to = $1 AND `+match("c")+`
			UNION
			SELECT c.event_nid, c.event_id, rel.depth + 1 FROM rel JOIN events c ON c.relates_to = rel.event_id
			WHERE rel.depth < $5 AND `+match("c")+`
		)
		SELECT `+eventColumns+` FROM rel JOIN events e ON e.event_nid = rel.event_nid JOIN rooms r ON r.room_nid = e.room_nid
		WHERE (e.depth, e.event_nid) > ($6, $7) AND (e.depth, e.event_nid) <= ($8, $9)
		ORDER BY e.depth `+order+`, e.event_nid `+order+` LIMIT $10`,
		f.EventID, f.RoomNID, f.RelType, f.EventType, depth, lo.Depth, lo.NID, hi.Depth, hi.NID, limit))
}

// ThreadRoot is a thread root with the place of its latest reply.
type ThreadRoot struct {
	Event
	Latest TopoPos
}

// ThreadRoots returns up to limit thread roots of a room (timeline events
// of the room with m.thread children) whose latest reply, in topological
// order, is at or before before; most recently active first, as Synapse
// orders them (a backfilled reply counts where it sits in the DAG, not when
// it arrived). With participant set, only threads the user started or
// replied in.
func (db *DB) ThreadRoots(ctx context.Context, roomNID int64, before TopoPos, participant string, limit int) ([]ThreadRoot, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT `+eventColumns+`, t.depth, t.event_nid FROM (
			SELECT relates_to, depth, event_nid, mine FROM (
				SELECT relates_to, depth, event_nid,
					ROW_NUMBER() OVER (PARTITION BY relates_to ORDER BY depth DESC, event_nid DESC) AS rn,
					MAX(CASE WHEN sender = $4 THEN 1 ELSE 0 END) OVER (PARTITION BY relates_to) AS mine
				FROM events
				WHERE room_nid = $1 AND rel_type = 'm.thread' AND stream_pos IS NOT NULL AND redacted_by IS NULL
			) replies WHERE rn = 1
		) t JOIN events e ON e.event_id = t.relates_to JOIN rooms r ON r.room_nid = e.room_nid
		WHERE e.room_nid = $1 AND e.stream_pos IS NOT NULL AND (t.depth, t.event_nid) <= ($2, $3)
			AND ($4 = '' OR t.mine = 1 OR e.sender = $4)
		ORDER BY t.depth DESC, t.event_nid DESC LIMIT $5`, roomNID, before.Depth, before.NID, participant, limit)
	if err != nil {
		return nil, fmt.Errorf("querying thread roots: %w", err)
	}
	defer rows.Close()
	var out []ThreadRoot
	for rows.Next() {
		var latest TopoPos
		e, err := scanEvent(scanPlus{rows, []any{&latest.Depth, &latest.NID}})
		if err != nil {
			return nil, err
		}
		out = append(out, ThreadRoot{Event: *e, Latest: latest})
	}
	return out, rows.Err()
}

// scanPlus scans an event row followed by extra columns.
type scanPlus struct {
	row   interface{ Scan(...any) error }
	extra []any
}

func (s scanPlus) Scan(dest ...any) error { return s.row.Scan(append(dest, s.extra...)...) }

// AggregationRow is one line of what the server bundles with parent events
// (spec "Aggregations of child events"). For m.thread it summarises one
// sender's replies to the parent: Count of them, the child fields being
// those of the sender's latest reply. For m.replace and m.reference it is
// one child event (Count 1).
type AggregationRow struct {
	Parent        string
	RoomNID       int64
	RelType       string
	Sender        string
	Count         int
	NID           int64
	EventID       string
	Type          string
	IsState       bool
	StreamPos     int64
	OriginTS      int64
	HasNewContent bool // content.m.new_content is an object (edits)
}

// aggregationBatch bounds the parent IDs bound into one statement (SQLite
// allows 32766 variables; each ID is bound twice).
const aggregationBatch = 500

// Aggregations returns the aggregation rows of the given parent events:
// m.thread replies summarised per sender, and every m.replace and
// m.reference child. One statement per 500 parents.
func (db *DB) Aggregations(ctx context.Context, parents []string) ([]AggregationRow, error) {
	var out []AggregationRow
	for len(parents) > 0 {
		n := min(len(parents), aggregationBatch)
		rows, err := db.aggregations(ctx, parents[:n])
		if err != nil {
			return nil, err
		}
		out = append(out, rows...)
		parents = parents[n:]
	}
	return out, nil
}

func (db *DB) aggregations(ctx context.Context, parents []string) ([]AggregationRow, error) {
	args := make([]any, len(parents))
	marks := make([]string, len(parents))
	for i, p := range parents {
		args[i] = p
		marks[i] = fmt.Sprintf("$%d", i+1)
	}
	in := strings.Join(marks, ",")
	// Per thread and sender: the count of replies and the latest of them.
	rows, err := db.q().QueryContext(ctx, `
		SELECT relates_to, room_nid, rel_type, sender, n, event_nid, event_id, type, is_state, stream_pos, origin_server_ts, 0
		FROM (SELECT relates_to, room_nid, rel_type, sender, event_nid, event_id, type, state_key IS NOT NULL AS is_state,
				stream_pos, origin_server_ts, COUNT(*) OVER senders AS n,
				ROW_NUMBER() OVER (senders ORDER BY stream_pos DESC) AS rn
			FROM events WHERE relates_to IN (`+in+`) AND rel_type = 'm.thread' AND stream_pos IS NOT NULL AND redacted_by IS NULL
			WINDOW senders AS (PARTITION BY relates_to, room_nid, sender)) AS replies
		WHERE rn = 1
		UNION ALL
		SELECT relates_to, room_nid, rel_type, sender, 1, event_nid, event_id, type, state_key IS NOT NULL,
			stream_pos, origin_server_ts, `+jsonIsObject("json", "content", "m.new_content")+`
		FROM events WHERE relates_to IN (`+in+`) AND rel_type IN ('m.replace', 'm.reference') AND stream_pos IS NOT NULL
			AND redacted_by IS NULL`, args...)
	if err != nil {
		return nil, fmt.Errorf("querying aggregations: %w", err)
	}
	defer rows.Close()
	var out []AggregationRow
	for rows.Next() {
		var r AggregationRow
		var pos sql.NullInt64
		if err := rows.Scan(&r.Parent, &r.RoomNID, &r.RelType, &r.Sender, &r.Count, &r.NID, &r.EventID, &r.Type, &r.IsState,
			&pos, &r.OriginTS, &r.HasNewContent); err != nil {
			return nil, fmt.Errorf("reading aggregation: %w", err)
		}
		r.StreamPos = pos.Int64
		out = append(out, r)
	}
	return out, rows.Err()
}
