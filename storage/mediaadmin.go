package storage

import (
	"context"
	"fmt"
)

// The media side of the admin API: quarantine, protection, and choosing
// media to delete.

// QuarantineMedia marks media quarantined by an admin (by "": lifts it):
// the rows named, and every other row with the same content (as Synapse,
// which tracks quarantine by hash), except protected ones. It returns how
// many rows changed.
func (tx *Tx) QuarantineMedia(ctx context.Context, keys []MediaKey, by string) (int64, error) {
	var total int64
	for _, k := range keys {
		res, err := tx.exec(ctx, `UPDATE media SET quarantined_by = NULLIF($3, '')
			WHERE (safe_from_quarantine = 0 OR $3 = '') AND (quarantined_by IS NULL) = ($3 != '')
				AND ((origin = $1 AND media_id = $2)
					OR (sha256 != '' AND sha256 = (SELECT s.sha256 FROM media s WHERE s.origin = $1 AND s.media_id = $2)))`,
			k.Origin, k.MediaID, by)
		if err != nil {
			return total, fmt.Errorf("quarantining media: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
	}
	return total, nil
}

// SetMediaProtected protects a media row from quarantine, or lifts that;
// ErrNotFound when there is no such row.
func (tx *Tx) SetMediaProtected(ctx context.Context, origin, mediaID string, on bool) error {
	res, err := tx.exec(ctx, `UPDATE media SET safe_from_quarantine = $3 WHERE origin = $1 AND media_id = $2`, origin, mediaID, boolInt(on))
	if err != nil {
		return fmt.Errorf("protecting media: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// MediaByID finds a media row by its ID alone, whatever its origin
// (Synapse's protect API names media by ID only): local first.
func (db *DB) MediaByID(ctx context.Context, local, mediaID string) (*Media, error) {
	return scanMedia(db.q().QueryRowContext(ctx, `SELECT `+mediaColumns+` FROM media WHERE media_id = $1
		ORDER BY origin = $2 DESC LIMIT 1`, mediaID, local))
}

// UserMediaKeys lists the keys of the media a user uploaded.
func (db *DB) UserMediaKeys(ctx context.Context, userID string) ([]MediaKey, error) {
	return mediaKeys(db.q().QueryContext(ctx, `SELECT origin, media_id FROM media WHERE user_id = $1 ORDER BY created_ts`, userID))
}

// RemoteMediaBefore lists the copies of other servers' media fetched
// before ts (the media cache a purge empties).
func (db *DB) RemoteMediaBefore(ctx context.Context, local string, ts int64) ([]MediaKey, error) {
	return mediaKeys(db.q().QueryContext(ctx, `SELECT origin, media_id FROM media WHERE origin != $1 AND created_ts < $2
		ORDER BY created_ts`, local, ts))
}

// LocalMediaSelection picks local media to delete: uploaded before
// BeforeTS, larger than SizeGT bytes, and not quarantined or protected.
type LocalMediaSelection struct {
	Origin   string
	BeforeTS int64
	SizeGT   int64
}

// LocalMediaToDelete lists the media a LocalMediaSelection picks.
func (db *DB) LocalMediaToDelete(ctx context.Context, sel LocalMediaSelection) ([]MediaKey, error) {
	return mediaKeys(db.q().QueryContext(ctx, `SELECT origin, media_id FROM media
		WHERE origin = $1 AND created_ts < $2 AND size > $3 AND quarantined_by IS NULL AND safe_from_quarantine = 0
		ORDER BY created_ts`, sel.Origin, sel.BeforeTS, sel.SizeGT))
}

func mediaKeys(rows interface {
	Next() bool
	Scan(...any) error
	Close() error
	Err() error
}, err error) ([]MediaKey, error) {
	if err != nil {
		return nil, fmt.Errorf("listing media: %w", err)
	}
	defer rows.Close()
	var out []MediaKey
	for rows.Next() {
		var k MediaKey
		if err := rows.Scan(&k.Origin, &k.MediaID); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// AvatarURIs lists the mxc URIs in use as avatars: users' profiles and
// rooms' current avatars (media deletions keep them by default).
func (db *DB) AvatarURIs(ctx context.Context) (map[string]bool, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT avatar_url FROM accounts WHERE avatar_url IS NOT NULL
		UNION SELECT `+jsonText("e.json", "content", "url")+` FROM current_state c JOIN events e ON e.event_nid = c.event_nid
			WHERE c.type = 'm.room.avatar' AND c.state_key = ''`)
	if err != nil {
		return nil, fmt.Errorf("listing avatars: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var u *string
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		if u != nil {
			out[*u] = true
		}
	}
	return out, rows.Err()
}

// RoomEventContents lists the JSON of a room's events that mention media
// (a room's media list parses them).
func (db *DB) RoomEventContents(ctx context.Context, roomNID int64) ([][]byte, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT json FROM events WHERE room_nid = $1 AND json LIKE '%mxc://%'`, roomNID)
	if err != nil {
		return nil, fmt.Errorf("listing a room's media events: %w", err)
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var js string
		if err := rows.Scan(&js); err != nil {
			return nil, err
		}
		out = append(out, []byte(js))
	}
	return out, rows.Err()
}

// MediaUsage is one user's uploads, counted.
type MediaUsage struct {
	UserID      string
	DisplayName string
	Count       int64
	Length      int64
}

// MediaUsageByUser counts each local user's uploads made in [fromTS, untilTS).
func (db *DB) MediaUsageByUser(ctx context.Context, origin string, fromTS, untilTS int64) ([]MediaUsage, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT m.user_id, COALESCE(a.displayname, ''), COUNT(*), COALESCE(SUM(m.size), 0)
		FROM media m LEFT JOIN accounts a ON a.user_id = m.user_id
		WHERE m.origin = $1 AND m.user_id != '' AND m.created_ts >= $2 AND m.created_ts < $3
		GROUP BY m.user_id, a.displayname`, origin, fromTS, untilTS)
	if err != nil {
		return nil, fmt.Errorf("counting media by user: %w", err)
	}
	defer rows.Close()
	var out []MediaUsage
	for rows.Next() {
		var u MediaUsage
		if err := rows.Scan(&u.UserID, &u.DisplayName, &u.Count, &u.Length); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}
