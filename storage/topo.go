package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
)

// TopoPos is a place in a room's topological order (depth, then arrival,
// which event_nid records): just after the event with that depth and NID.
// /messages, /context and /relations page in this order, which backfilled
// and late events join where they belong in the DAG; the zero TopoPos is
// before every event.
type TopoPos struct{ Depth, NID int64 }

// TopoEnd is after every event.
var TopoEnd = TopoPos{math.MaxInt64, math.MaxInt64}

// TopoOf is the position just after e.
func TopoOf(e *Event) TopoPos { return TopoPos{e.Depth, e.NID} }

// TopoBefore is the position just before e.
func TopoBefore(e *Event) TopoPos { return TopoPos{e.Depth, e.NID - 1} }

// Less orders positions.
func (p TopoPos) Less(q TopoPos) bool {
	return p.Depth < q.Depth || (p.Depth == q.Depth && p.NID < q.NID)
}

// TopoTimeline returns up to limit timeline events of a room (backfilled
// history included) between two positions: with backwards, those in
// (to, from], newest first; else those in (from, to], oldest first.
func (db *DB) TopoTimeline(ctx context.Context, roomNID int64, from, to TopoPos, backwards bool, limit int) ([]Event, error) {
	lo, hi, order := from, to, "ASC"
	if backwards {
		lo, hi, order = to, from, "DESC"
	}
	return scanEvents(db.q().QueryContext(ctx, `SELECT `+eventColumns+eventFrom+`
		WHERE e.room_nid = $1 AND e.stream_pos IS NOT NULL
			AND (e.depth, e.event_nid) > ($2, $3) AND (e.depth, e.event_nid) <= ($4, $5)
		ORDER BY e.depth `+order+`, e.event_nid `+order+` LIMIT $6`,
		roomNID, lo.Depth, lo.NID, hi.Depth, hi.NID, limit))
}

// TopoAtStream places a stream position (from a sync token or an older
// pagination token) in the room's topological order: just after the room's
// last timeline event at or before it, the zero position when there is none.
func (db *DB) TopoAtStream(ctx context.Context, roomNID, pos int64) (TopoPos, error) {
	var p TopoPos
	err := db.q().QueryRowContext(ctx, `SELECT depth, event_nid FROM events
		WHERE room_nid = $1 AND stream_pos > 0 AND stream_pos <= $2 ORDER BY stream_pos DESC LIMIT 1`, roomNID, pos).Scan(&p.Depth, &p.NID)
	if errors.Is(err, sql.ErrNoRows) {
		return TopoPos{}, nil
	}
	if err != nil {
		return p, fmt.Errorf("placing stream position %d: %w", pos, err)
	}
	return p, nil
}

// LatestTimelineGap is the stream position of the newest gap in a room's
// timeline in (after, upTo] (0: none): a timeline event stored with prev
// events the server does not hold (EventWrite.Gap).
func (db *DB) LatestTimelineGap(ctx context.Context, roomNID, after, upTo int64) (int64, error) {
	var pos sql.NullInt64
	err := db.q().QueryRowContext(ctx, `SELECT MAX(stream_pos) FROM timeline_gaps WHERE room_nid = $1 AND stream_pos > $2 AND stream_pos <= $3`,
		roomNID, after, upTo).Scan(&pos)
	if err != nil {
		return 0, fmt.Errorf("reading timeline gaps: %w", err)
	}
	return pos.Int64, nil
}
