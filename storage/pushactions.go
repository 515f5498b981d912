package storage

import (
	"context"
	"fmt"
	"strings"
)

// PushAction is the outcome of a recipient's push rules for one event.
type PushAction struct {
	UserID    string
	Highlight bool
	ThreadID  string // "main" or the thread root
	Actions   []byte // the rule's actions as JSON
}

// pushActionRows is how many push actions one statement inserts at most:
// a message to a room of n members stores n-1, and on PostgreSQL each
// statement costs the server a round of parsing, binding and executing.
const pushActionRows = 50

// InsertPushActions stores the notifying outcomes of an event.
func (tx *Tx) InsertPushActions(ctx context.Context, roomNID, eventNID, pos int64, actions []PushAction) error {
	for len(actions) > 0 {
		chunk := actions[:min(len(actions), pushActionRows)]
		actions = actions[len(chunk):]
		var q strings.Builder
		q.WriteString(`INSERT INTO push_actions (room_nid, event_nid, stream_pos, user_id, highlight, thread_id, actions) VALUES `)
		args := make([]any, 0, 3+4*len(chunk))
		args = append(args, roomNID, eventNID, pos)
		for i, a := range chunk {
			if i > 0 {
				q.WriteString(", ")
			}
			n := len(args)
			fmt.Fprintf(&q, "($1, $2, $3, $%d, $%d, $%d, $%d)", n+1, n+2, n+3, n+4)
			args = append(args, a.UserID, a.Highlight, a.ThreadID, string(a.Actions))
		}
		q.WriteString(` ON CONFLICT DO NOTHING`)
		if err := tx.execLater(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("saving push actions: %w", err)
		}
	}
	return nil
}

// UnreadCounts are a user's notification and highlight counts.
type UnreadCounts struct {
	Notifications int
	Highlights    int
}

// UnreadCounts counts a user's notifying events in a room after their read
// receipts: the main timeline against the unthreaded or main receipt, and
// each thread against its own receipt (or the unthreaded one when
// further). With perThread the threads' counts come apart from the main
// timeline's; without, the first result is the sum of all (as Synapse: a
// client that reads a thread sees the room's count drop either way).
func (db *DB) UnreadCounts(ctx context.Context, roomNID int64, userID string, perThread bool, upTo int64) (UnreadCounts, map[string]UnreadCounts, error) {
	receipts := map[string]int64{}
	rows, err := db.q().QueryContext(ctx, `SELECT thread_id, MAX(event_pos) FROM receipts WHERE room_nid = $1 AND user_id = $2
		GROUP BY thread_id`, roomNID, userID)
	if err != nil {
		return UnreadCounts{}, nil, fmt.Errorf("reading receipts: %w", err)
	}
	for rows.Next() {
		var thread string
		var pos int64
		if err := rows.Scan(&thread, &pos); err != nil {
			rows.Close()
			return UnreadCounts{}, nil, err
		}
		receipts[thread] = pos
	}
	rows.Close()
	mainRead := max(receipts[""], receipts["main"])
	key := unreadKey{user: userID, room: roomNID}
	counts, countedTo, ok := db.unread.get(key, receipts, upTo)
	if ok {
		// Everything after the cached position is above every threshold.
		if upTo > countedTo {
			delta, err := db.countPushActions(ctx, userID, roomNID, countedTo, upTo, "")
			if err != nil {
				return UnreadCounts{}, nil, err
			}
			for thread, d := range delta {
				c := counts[thread]
				c.Notifications += d.Notifications
				c.Highlights += d.Highlights
				counts[thread] = c
			}
		}
	} else {
		if counts, err = db.countUnread(ctx, userID, roomNID, receipts, mainRead, upTo); err != nil {
			return UnreadCounts{}, nil, err
		}
	}
	db.unread.put(key, receipts, upTo, counts)
	var main UnreadCounts
	threads := map[string]UnreadCounts{}
	for thread, c := range counts {
		if !perThread || thread == "main" {
			main.Notifications += c.Notifications
			main.Highlights += c.Highlights
		} else if c.Notifications > 0 {
			threads[thread] = c
		}
	}
	return main, threads, nil
}

// countUnread counts, per thread, the push actions in (threshold, upTo]
// where the threshold is the main read position for the main timeline, and
// a thread's own receipt (or the unthreaded one when further) for a thread.
func (db *DB) countUnread(ctx context.Context, userID string, roomNID int64, receipts map[string]int64, mainRead int64, upTo int64) (map[string]UnreadCounts, error) {
	// Threads may have been read further or less far: scan from the
	// earliest receipt that matters.
	from := min(mainRead, receipts[""])
	for _, p := range receipts {
		from = min(from, p)
	}
	// Count in SQL, grouped by thread, above the lowest threshold that
	// matters; threads read further than that are recounted exactly.
	counts, err := db.countPushActions(ctx, userID, roomNID, from, upTo, "")
	if err != nil {
		return nil, err
	}
	for thread := range counts {
		threshold := mainRead
		if thread != "main" {
			threshold = max(receipts[""], receipts[thread])
		}
		if threshold > from {
			exact, err := db.countPushActions(ctx, userID, roomNID, threshold, upTo, thread)
			if err != nil {
				return nil, err
			}
			counts[thread] = exact[thread]
		}
	}
	return counts, nil
}

// countPushActions counts a user's push actions in a room in (from, to]
// per thread, or for one thread when thread is not "".
func (db *DB) countPushActions(ctx context.Context, userID string, roomNID, from, to int64, thread string) (map[string]UnreadCounts, error) {
	q := `SELECT thread_id, COUNT(*), COALESCE(SUM(highlight), 0) FROM push_actions
		WHERE user_id = $1 AND room_nid = $2 AND stream_pos > $3 AND stream_pos <= $4`
	args := []any{userID, roomNID, from, to}
	if thread != "" {
		q += ` AND thread_id = $5`
		args = append(args, thread)
	}
	rows, err := db.q().QueryContext(ctx, q+` GROUP BY thread_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("counting notifications: %w", err)
	}
	defer rows.Close()
	out := map[string]UnreadCounts{}
	for rows.Next() {
		var t string
		var c UnreadCounts
		if err := rows.Scan(&t, &c.Notifications, &c.Highlights); err != nil {
			return nil, err
		}
		out[t] = c
	}
	return out, rows.Err()
}

// Notification is one entry of GET /notifications.
type Notification struct {
	Event     Event
	Actions   []byte
	Highlight bool
	Read      bool
}

// Notifications lists a user's notifications newest first, before position
// `before` (0: from the newest), at most limit.
func (db *DB) Notifications(ctx context.Context, userID string, before int64, limit int, onlyHighlight bool) ([]Notification, error) {
	if before <= 0 {
		before = 1 << 62
	}
	q := `SELECT p.actions, p.highlight,
			p.stream_pos <= COALESCE((SELECT MAX(event_pos) FROM receipts rc WHERE rc.room_nid = p.room_nid AND rc.user_id = p.user_id), 0),
			` + eventColumns + ` FROM push_actions p JOIN events e ON e.event_nid = p.event_nid JOIN rooms r ON r.room_nid = e.room_nid
		WHERE p.user_id = $1 AND p.stream_pos < $2`
	if onlyHighlight {
		q += ` AND p.highlight = 1`
	}
	rows, err := db.q().QueryContext(ctx, q+` ORDER BY p.stream_pos DESC LIMIT $3`, userID, before, limit)
	if err != nil {
		return nil, fmt.Errorf("listing notifications: %w", err)
	}
	defer rows.Close()
	var out []Notification
	for rows.Next() {
		var n Notification
		var actions string
		dest := []any{&actions, &n.Highlight, &n.Read}
		e, err := scanEventWith(rows, dest...)
		if err != nil {
			return nil, err
		}
		n.Event, n.Actions = *e, []byte(actions)
		out = append(out, n)
	}
	return out, rows.Err()
}
