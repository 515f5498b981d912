package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Queries for room federation: received transactions, what a state
// snapshot says of another server, and where a room's known history stops.

// FederationTxnResponse is the answer stored for a transaction an origin
// sent before (found is false for a new one).
func (db *DB) FederationTxnResponse(ctx context.Context, origin, txnID string) (resp []byte, found bool, err error) {
	var s string
	err = db.q().QueryRowContext(ctx, `SELECT response_json FROM federation_inbound_txns WHERE origin = $1 AND txn_id = $2`,
		origin, txnID).Scan(&s)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading transaction %s of %s: %w", txnID, origin, err)
	}
	return []byte(s), true, nil
}

// StoreFederationTxn records the answer given to an origin's transaction.
func (tx *Tx) StoreFederationTxn(ctx context.Context, origin, txnID string, resp []byte, nowMS int64) error {
	_, err := tx.exec(ctx, `INSERT INTO federation_inbound_txns (origin, txn_id, response_json, received_ts) VALUES ($1, $2, $3, $4)
		ON CONFLICT (origin, txn_id) DO UPDATE SET response_json = excluded.response_json, received_ts = excluded.received_ts`,
		origin, txnID, string(resp), nowMS)
	if err != nil {
		return fmt.Errorf("recording transaction %s of %s: %w", txnID, origin, err)
	}
	return nil
}

// PruneFederationTxns forgets transactions received before beforeMS.
func (tx *Tx) PruneFederationTxns(ctx context.Context, beforeMS int64) error {
	if _, err := tx.exec(ctx, `DELETE FROM federation_inbound_txns WHERE received_ts < $1`, beforeMS); err != nil {
		return fmt.Errorf("pruning received transactions: %w", err)
	}
	return nil
}

// SnapshotServerView is what a state snapshot says of one server: the
// room's history visibility and the memberships of that server's users.
type SnapshotServerView struct {
	Visibility string
	// Members maps the server's users to their membership.
	Members map[string]string
}

// SnapshotServerMembers reads the history visibility and the memberships
// of server's users in a state snapshot (along its delta chain).
func (db *DB) SnapshotServerMembers(ctx context.Context, snapshotNID int64, server string) (SnapshotServerView, error) {
	v := SnapshotServerView{Members: map[string]string{}}
	if snapshotNID == 0 {
		return v, nil
	}
	rows, err := db.q().QueryContext(ctx, snapshotChainCTE+`
		SELECT e.type, e.state_key, COALESCE(ev.state_value, '') FROM chain c
		JOIN state_entries e ON e.snapshot_nid = c.nid
			AND ((e.type = 'm.room.history_visibility' AND e.state_key = '')
				OR (e.type = 'm.room.member' AND `+userIDServer("e.state_key")+` = $2))
		JOIN events ev ON ev.event_nid = e.event_nid
		ORDER BY c.lvl DESC`, snapshotNID, server)
	if err != nil {
		return v, fmt.Errorf("reading members of %s in snapshot %d: %w", server, snapshotNID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var typ, key, val string
		if err := rows.Scan(&typ, &key, &val); err != nil {
			return v, err
		}
		if typ == "m.room.member" {
			v.Members[key] = val
		} else {
			v.Visibility = val
		}
	}
	return v, rows.Err()
}

// EventsNearTimestamp lists up to limit of the room's timeline events
// (backfilled history included) nearest to ts in one direction: forwards,
// those at or after ts, earliest first; else those at or before it, latest
// first.
func (db *DB) EventsNearTimestamp(ctx context.Context, roomNID, ts int64, forwards bool, limit int) ([]Event, error) {
	q := `SELECT ` + eventColumns + eventFrom + `WHERE e.room_nid = $1 AND e.stream_pos IS NOT NULL AND e.origin_server_ts <= $2
		ORDER BY e.origin_server_ts DESC, e.depth DESC, e.event_nid DESC LIMIT $3`
	if forwards {
		q = `SELECT ` + eventColumns + eventFrom + `WHERE e.room_nid = $1 AND e.stream_pos IS NOT NULL AND e.origin_server_ts >= $2
		ORDER BY e.origin_server_ts ASC, e.depth ASC, e.event_nid ASC LIMIT $3`
	}
	return scanEvents(db.q().QueryContext(ctx, q, roomNID, ts, limit))
}

// HistoryGaps lists the prev events that the room does not hold in its
// timeline of its timeline events in (lo, hi] (topological positions; the
// newest scan of them): where the history this server knows stops, at the
// room's start after a late join or in the middle after downtime. The
// events nearest hi come first. Events held as outliers count as missing
// (backfill promotes them); rejected and soft-failed ones do not.
func (db *DB) HistoryGaps(ctx context.Context, roomNID int64, lo, hi TopoPos, scan int) ([]string, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT ed.prev_event_id, MAX(o.depth) AS d FROM
		(SELECT event_nid, depth FROM events WHERE room_nid = $1 AND stream_pos IS NOT NULL
			AND (depth, event_nid) > ($2, $3) AND (depth, event_nid) <= ($4, $5)
			ORDER BY depth DESC, event_nid DESC LIMIT $6) o
		JOIN event_edges ed ON ed.event_nid = o.event_nid
		WHERE NOT EXISTS (SELECT 1 FROM events p WHERE p.event_id = ed.prev_event_id AND (p.stream_pos IS NOT NULL OR p.status IN (2, 3)))
		GROUP BY ed.prev_event_id ORDER BY d DESC, ed.prev_event_id`, roomNID, lo.Depth, lo.NID, hi.Depth, hi.NID, scan)
	if err != nil {
		return nil, fmt.Errorf("finding history gaps: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		var depth int64
		if err := rows.Scan(&id, &depth); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// JoinedServers lists the servers with joined members in a room's current
// state, those whose first current member joined earliest first (they are
// likeliest to hold the room's history).
func (db *DB) JoinedServers(ctx context.Context, roomNID int64) ([]string, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT `+userIDServer("state_key")+` AS server, MIN(stream_pos)
		FROM current_state WHERE room_nid = $1 AND type = 'm.room.member' AND membership = 'join'
		GROUP BY server ORDER BY 2, 1`, roomNID)
	if err != nil {
		return nil, fmt.Errorf("listing servers in room: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		var pos int64
		if err := rows.Scan(&s, &pos); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// PrevEventIDs lists an event's prev events (its DAG edges).
func (db *DB) PrevEventIDs(ctx context.Context, eventNID int64) ([]string, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT prev_event_id FROM event_edges WHERE event_nid = $1 ORDER BY prev_event_id`, eventNID)
	if err != nil {
		return nil, fmt.Errorf("reading prev events: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}
