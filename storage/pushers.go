package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// PusherKey identifies a pusher: a user's pusher for one app and pushkey.
type PusherKey struct {
	UserID  string
	AppID   string
	PushKey string
}

// Pusher is a user's registered push gateway target (POST /pushers/set).
type Pusher struct {
	PusherKey
	// DeviceID is the device whose access token set the pusher; the pusher
	// goes away with the device.
	DeviceID          string
	Kind              string
	AppDisplayName    string
	DeviceDisplayName string
	ProfileTag        string
	Lang              string
	Data              []byte // the data object as JSON, url included
	PushKeyTS         int64  // ms
	// LastPos is the stream position up to which the user's push actions
	// have been dealt with (delivered, dropped or skipped as read).
	LastPos int64
	// Orphaned: the pusher's device no longer exists.
	Orphaned bool
}

const pusherColumns = `p.user_id, p.app_id, p.pushkey, p.device_id, p.kind, p.app_display_name, p.device_display_name,
	p.profile_tag, p.lang, p.data, p.pushkey_ts, p.last_pos,
	p.device_id != '' AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.user_id = p.user_id AND d.device_id = p.device_id)`

func scanPusher(row interface{ Scan(...any) error }) (*Pusher, error) {
	var p Pusher
	var data string
	err := row.Scan(&p.UserID, &p.AppID, &p.PushKey, &p.DeviceID, &p.Kind, &p.AppDisplayName, &p.DeviceDisplayName,
		&p.ProfileTag, &p.Lang, &data, &p.PushKeyTS, &p.LastPos, &p.Orphaned)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading pusher: %w", err)
	}
	p.Data = []byte(data)
	return &p, nil
}

// SetPusher creates or replaces the user's pusher with p's app ID and
// pushkey. Its delivery starts at the current stream position: only push
// actions stored from now on are sent. Unless appendOthers, pushers of other
// users with the same app ID and pushkey are removed (the spec's append
// false, its default).
func (tx *Tx) SetPusher(ctx context.Context, p Pusher, appendOthers bool) error {
	if !appendOthers {
		if _, err := tx.exec(ctx, `DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id != $3`,
			p.AppID, p.PushKey, p.UserID); err != nil {
			return fmt.Errorf("removing other users' pushers: %w", err)
		}
	}
	_, err := tx.exec(ctx, `INSERT INTO pushers (user_id, app_id, pushkey, device_id, kind, app_display_name, device_display_name,
			profile_tag, lang, data, pushkey_ts, last_pos)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
		ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET
			device_id = excluded.device_id, kind = excluded.kind, app_display_name = excluded.app_display_name,
			device_display_name = excluded.device_display_name, profile_tag = excluded.profile_tag, lang = excluded.lang,
			data = excluded.data, pushkey_ts = excluded.pushkey_ts, last_pos = excluded.last_pos`,
		p.UserID, p.AppID, p.PushKey, p.DeviceID, p.Kind, p.AppDisplayName, p.DeviceDisplayName,
		p.ProfileTag, p.Lang, string(p.Data), p.PushKeyTS, *tx.pos)
	if err != nil {
		return fmt.Errorf("saving pusher: %w", err)
	}
	return nil
}

// DeletePusher removes a pusher; it reports whether one existed.
func (tx *Tx) DeletePusher(ctx context.Context, k PusherKey) (bool, error) {
	res, err := tx.exec(ctx, `DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3`, k.UserID, k.AppID, k.PushKey)
	if err != nil {
		return false, fmt.Errorf("deleting pusher: %w", err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// AdvancePusher records that a pusher dealt with the push actions up to pos
// (never moving it back: the pusher may have been set again meanwhile).
func (tx *Tx) AdvancePusher(ctx context.Context, k PusherKey, pos int64) error {
	_, err := tx.exec(ctx, `UPDATE pushers SET last_pos = `+greatest("last_pos", "$4")+` WHERE user_id = $1 AND app_id = $2 AND pushkey = $3`,
		k.UserID, k.AppID, k.PushKey, pos)
	if err != nil {
		return fmt.Errorf("advancing pusher: %w", err)
	}
	return nil
}

// DeleteOrphanedPushers removes the pushers whose device is gone.
func (tx *Tx) DeleteOrphanedPushers(ctx context.Context) (int, error) {
	res, err := tx.exec(ctx, `DELETE FROM pushers WHERE device_id != '' AND NOT EXISTS
		(SELECT 1 FROM devices d WHERE d.user_id = pushers.user_id AND d.device_id = pushers.device_id)`)
	if err != nil {
		return 0, fmt.Errorf("deleting orphaned pushers: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// Pushers lists a user's pushers (those of devices that still exist).
func (db *DB) Pushers(ctx context.Context, userID string) ([]Pusher, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT `+pusherColumns+` FROM pushers p WHERE p.user_id = $1
		ORDER BY p.app_id, p.pushkey`, userID)
	if err != nil {
		return nil, fmt.Errorf("listing pushers: %w", err)
	}
	defer rows.Close()
	out := []Pusher{}
	for rows.Next() {
		p, err := scanPusher(rows)
		if err != nil {
			return nil, err
		}
		if !p.Orphaned {
			out = append(out, *p)
		}
	}
	return out, rows.Err()
}

// Pusher reads one pusher (ErrNotFound when there is none).
func (db *DB) Pusher(ctx context.Context, k PusherKey) (*Pusher, error) {
	return scanPusher(db.q().QueryRowContext(ctx, `SELECT `+pusherColumns+` FROM pushers p
		WHERE p.user_id = $1 AND p.app_id = $2 AND p.pushkey = $3`, k.UserID, k.AppID, k.PushKey))
}

// PushersDue lists the pushers with push actions after their position, up
// to upTo, and whether any pusher's device is gone.
func (db *DB) PushersDue(ctx context.Context, upTo int64) (due []PusherKey, orphans bool, err error) {
	rows, err := db.q().QueryContext(ctx, `SELECT p.user_id, p.app_id, p.pushkey,
			p.device_id != '' AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.user_id = p.user_id AND d.device_id = p.device_id),
			EXISTS (SELECT 1 FROM push_actions a WHERE a.user_id = p.user_id AND a.stream_pos > p.last_pos AND a.stream_pos <= $1)
		FROM pushers p`, upTo)
	if err != nil {
		return nil, false, fmt.Errorf("listing due pushers: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k PusherKey
		var orphan, pending bool
		if err := rows.Scan(&k.UserID, &k.AppID, &k.PushKey, &orphan, &pending); err != nil {
			return nil, false, err
		}
		orphans = orphans || orphan
		if pending && !orphan {
			due = append(due, k)
		}
	}
	return due, orphans, rows.Err()
}

// PendingPush is a push action a pusher has yet to deal with.
type PendingPush struct {
	StreamPos int64
	Highlight bool
	Actions   []byte
	// Read: the user's read receipt (unthreaded, or of the event's thread)
	// is already at or past the event.
	Read  bool
	Event Event
}

// receiptCovers is true when the push action p is at or before the user's
// unthreaded receipt or the receipt of its thread in its room.
const receiptCovers = `p.stream_pos <= COALESCE((SELECT MAX(rc.event_pos) FROM receipts rc
	WHERE rc.room_nid = p.room_nid AND rc.user_id = p.user_id AND rc.thread_id IN ('', p.thread_id)), 0)`

// PendingPushes lists a user's push actions after position `after` up to
// upTo, oldest first, at most limit.
func (db *DB) PendingPushes(ctx context.Context, userID string, after, upTo int64, limit int) ([]PendingPush, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT p.stream_pos, p.highlight, p.actions, `+receiptCovers+`, `+eventColumns+`
		FROM push_actions p JOIN events e ON e.event_nid = p.event_nid JOIN rooms r ON r.room_nid = e.room_nid
		WHERE p.user_id = $1 AND p.stream_pos > $2 AND p.stream_pos <= $3 ORDER BY p.stream_pos LIMIT $4`,
		userID, after, upTo, limit)
	if err != nil {
		return nil, fmt.Errorf("listing pending pushes: %w", err)
	}
	defer rows.Close()
	var out []PendingPush
	for rows.Next() {
		var pp PendingPush
		var actions string
		e, err := scanEventWith(rows, &pp.StreamPos, &pp.Highlight, &actions, &pp.Read)
		if err != nil {
			return nil, err
		}
		pp.Actions, pp.Event = []byte(actions), *e
		out = append(out, pp)
	}
	return out, rows.Err()
}

// UnreadNotificationTotal is a user's badge count as of position upTo: the
// notifying events not yet read in the rooms the user is joined to (each
// against the unthreaded receipt or its thread's), plus pending invites.
func (db *DB) UnreadNotificationTotal(ctx context.Context, userID string, upTo int64) (int, error) {
	var n int
	// Room by room (joinInOrder fixes the loop order), the unthreaded receipt
	// bounds the scan from below (the effective receipt of any thread is at
	// least it), so the index on (user_id, room_nid, stream_pos) is
	// range-scanned from there.
	err := db.q().QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM current_state c `+joinInOrder+` push_actions p ON p.user_id = c.state_key AND p.room_nid = c.room_nid
			WHERE c.type = 'm.room.member' AND c.state_key = $1 AND c.membership = 'join' AND p.stream_pos <= $2
			AND p.stream_pos > COALESCE((SELECT MAX(u.event_pos) FROM receipts u
				WHERE u.room_nid = c.room_nid AND u.user_id = $1 AND u.thread_id = ''), 0)
			AND NOT (`+receiptCovers+`))
		+ (SELECT COUNT(*) FROM current_state WHERE type = 'm.room.member' AND state_key = $1 AND membership = 'invite')`,
		userID, upTo).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting unread notifications: %w", err)
	}
	return n, nil
}

// PushRoomState is the current state a push notification describes its room
// and sender with: the JSON of the m.room.name, m.room.canonical_alias and
// sender's m.room.member events (nil when absent).
type PushRoomState struct {
	Name, CanonicalAlias, SenderMember []byte
}

// PushRoomState reads a room's name, canonical alias and a sender's
// membership from its current state.
func (db *DB) PushRoomState(ctx context.Context, roomNID int64, sender string) (PushRoomState, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT c.type, e.json FROM current_state c JOIN events e ON e.event_nid = c.event_nid
		WHERE c.room_nid = $1 AND ((c.type IN ('m.room.name', 'm.room.canonical_alias') AND c.state_key = '')
			OR (c.type = 'm.room.member' AND c.state_key = $2))`, roomNID, sender)
	if err != nil {
		return PushRoomState{}, fmt.Errorf("reading room state for push: %w", err)
	}
	defer rows.Close()
	var out PushRoomState
	for rows.Next() {
		var typ, js string
		if err := rows.Scan(&typ, &js); err != nil {
			return PushRoomState{}, err
		}
		switch typ {
		case "m.room.name":
			out.Name = []byte(js)
		case "m.room.canonical_alias":
			out.CanonicalAlias = []byte(js)
		default:
			out.SenderMember = []byte(js)
		}
	}
	return out, rows.Err()
}
