package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Media is the metadata of one mxc:// URI. SHA256 names the content in the
// media store; it is "" (and UploadedTS 0) while an async upload is pending.
type Media struct {
	Origin          string
	MediaID         string
	UserID          string
	CreatedTS       int64
	UploadedTS      int64
	UnusedExpiresTS int64
	ContentType     string
	UploadName      string
	Size            int64
	SHA256          string
	ThumbState      int
	// QuarantinedBy is the admin who quarantined it ("": not quarantined);
	// SafeFromQuarantine protects it from quarantines.
	QuarantinedBy      string
	SafeFromQuarantine bool
}

// Thumbnail states of a media row.
const (
	ThumbUnknown  = 0 // not tried yet
	ThumbOK       = 1 // an image the server can thumbnail
	ThumbNone     = 2 // not an image, or one that failed to decode
	ThumbTooLarge = 3 // an image with more pixels than the server decodes
)

// Pending reports whether the content has not been uploaded yet.
func (m *Media) Pending() bool { return m.UploadedTS == 0 }

// MediaThumbnail is one stored thumbnail, keyed by the requested size and
// method; Width and Height are the produced size.
type MediaThumbnail struct {
	Origin      string
	MediaID     string
	ReqWidth    int
	ReqHeight   int
	Method      string
	Width       int
	Height      int
	ContentType string
	Size        int64
	SHA256      string
	CreatedTS   int64
}

// MediaKey names one media row.
type MediaKey struct {
	Origin  string
	MediaID string
}

const mediaColumns = `origin, media_id, user_id, created_ts, uploaded_ts, unused_expires_ts,
	content_type, upload_name, size, sha256, thumb_state, COALESCE(quarantined_by, ''), safe_from_quarantine`

func scanMedia(row interface{ Scan(...any) error }) (*Media, error) {
	var m Media
	err := row.Scan(&m.Origin, &m.MediaID, &m.UserID, &m.CreatedTS, &m.UploadedTS, &m.UnusedExpiresTS,
		&m.ContentType, &m.UploadName, &m.Size, &m.SHA256, &m.ThumbState, &m.QuarantinedBy, &m.SafeFromQuarantine)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading media: %w", err)
	}
	return &m, nil
}

func media(ctx context.Context, q querier, origin, mediaID string) (*Media, error) {
	return scanMedia(q.QueryRowContext(ctx, `SELECT `+mediaColumns+` FROM media WHERE origin = $1 AND media_id = $2`,
		origin, mediaID))
}

// Media reads one media row; ErrNotFound if absent.
func (db *DB) Media(ctx context.Context, origin, mediaID string) (*Media, error) {
	return media(ctx, db.q(), origin, mediaID)
}

// Media reads one media row inside the write transaction.
func (tx *Tx) Media(ctx context.Context, origin, mediaID string) (*Media, error) {
	return media(ctx, tx.q(), origin, mediaID)
}

// InsertMedia stores a new media row (uploaded or pending); ErrExists if the
// ID is taken.
func (tx *Tx) InsertMedia(ctx context.Context, m Media) error {
	// Content an admin quarantined stays quarantined when it comes again.
	res, err := tx.exec(ctx, `INSERT INTO media (origin, media_id, user_id, created_ts, uploaded_ts, unused_expires_ts,
			content_type, upload_name, size, sha256, thumb_state, quarantined_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
			(SELECT q.quarantined_by FROM media q WHERE $10 != '' AND q.sha256 = $10 AND q.quarantined_by IS NOT NULL LIMIT 1))
		ON CONFLICT DO NOTHING`,
		m.Origin, m.MediaID, m.UserID, m.CreatedTS, m.UploadedTS, m.UnusedExpiresTS,
		m.ContentType, m.UploadName, m.Size, m.SHA256, m.ThumbState)
	if err != nil {
		return fmt.Errorf("inserting media: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrExists
	}
	return nil
}

// CompleteMedia fills in the content of a pending media row. ErrNotFound if
// there is no such row, ErrExists if it already has content.
func (tx *Tx) CompleteMedia(ctx context.Context, m Media) error {
	res, err := tx.exec(ctx, `UPDATE media SET uploaded_ts = $3, unused_expires_ts = 0, content_type = $4,
		upload_name = $5, size = $6, sha256 = $7, thumb_state = $8,
		quarantined_by = COALESCE(quarantined_by,
			(SELECT q.quarantined_by FROM media q WHERE q.sha256 = $7 AND q.quarantined_by IS NOT NULL LIMIT 1))
		WHERE origin = $1 AND media_id = $2 AND uploaded_ts = 0`,
		m.Origin, m.MediaID, m.UploadedTS, m.ContentType, m.UploadName, m.Size, m.SHA256, m.ThumbState)
	if err != nil {
		return fmt.Errorf("completing media: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	if _, err := tx.Media(ctx, m.Origin, m.MediaID); err != nil {
		return err
	}
	return ErrExists
}

// SetMediaThumbState records whether a media row can be thumbnailed.
func (tx *Tx) SetMediaThumbState(ctx context.Context, origin, mediaID string, state int) error {
	_, err := tx.exec(ctx, `UPDATE media SET thumb_state = $3 WHERE origin = $1 AND media_id = $2`, origin, mediaID, state)
	if err != nil {
		return fmt.Errorf("setting thumbnail state: %w", err)
	}
	return nil
}

// MediaUsage is the total size of a user's uploads (for quotas).
func (tx *Tx) MediaUsage(ctx context.Context, userID string) (int64, error) {
	return mediaUsage(ctx, tx.q(), userID)
}

// MediaUsage is the total size of a user's uploads (for quotas).
func (db *DB) MediaUsage(ctx context.Context, userID string) (int64, error) {
	return mediaUsage(ctx, db.q(), userID)
}

func mediaUsage(ctx context.Context, q querier, userID string) (int64, error) {
	var n int64
	if err := q.QueryRowContext(ctx, `SELECT COALESCE(SUM(size), 0) FROM media WHERE user_id = $1`, userID).Scan(&n); err != nil {
		return 0, fmt.Errorf("reading media usage: %w", err)
	}
	return n, nil
}

// PendingMediaCount counts a user's async uploads not yet uploaded and not
// expired at nowTS.
func (tx *Tx) PendingMediaCount(ctx context.Context, userID string, nowTS int64) (int, error) {
	var n int
	err := tx.q().QueryRowContext(ctx, `SELECT COUNT(*) FROM media WHERE user_id = $1 AND uploaded_ts = 0 AND unused_expires_ts > $2`,
		userID, nowTS).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting pending media: %w", err)
	}
	return n, nil
}

// PutMediaThumbnail stores a thumbnail (keeping an existing one for the same
// request).
func (tx *Tx) PutMediaThumbnail(ctx context.Context, t MediaThumbnail) error {
	_, err := tx.exec(ctx, `INSERT INTO media_thumbnails (origin, media_id, req_width, req_height, method,
		width, height, content_type, size, sha256, created_ts)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING`,
		t.Origin, t.MediaID, t.ReqWidth, t.ReqHeight, t.Method, t.Width, t.Height, t.ContentType, t.Size, t.SHA256, t.CreatedTS)
	if err != nil {
		return fmt.Errorf("saving thumbnail: %w", err)
	}
	return nil
}

// MediaThumbnails lists the stored thumbnails of one media row.
func (db *DB) MediaThumbnails(ctx context.Context, origin, mediaID string) ([]MediaThumbnail, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT origin, media_id, req_width, req_height, method, width, height,
		content_type, size, sha256, created_ts FROM media_thumbnails WHERE origin = $1 AND media_id = $2
		ORDER BY width, height`, origin, mediaID)
	if err != nil {
		return nil, fmt.Errorf("listing thumbnails: %w", err)
	}
	defer rows.Close()
	var out []MediaThumbnail
	for rows.Next() {
		var t MediaThumbnail
		if err := rows.Scan(&t.Origin, &t.MediaID, &t.ReqWidth, &t.ReqHeight, &t.Method, &t.Width, &t.Height,
			&t.ContentType, &t.Size, &t.SHA256, &t.CreatedTS); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// ContentReferenced reports whether any media row or thumbnail still uses
// the content with this hash.
func (tx *Tx) ContentReferenced(ctx context.Context, sha256 string) (bool, error) {
	var used bool
	err := tx.q().QueryRowContext(ctx, `SELECT
		EXISTS (SELECT 1 FROM media WHERE sha256 = $1) OR EXISTS (SELECT 1 FROM media_thumbnails WHERE sha256 = $1)`,
		sha256).Scan(&used)
	if err != nil {
		return false, fmt.Errorf("checking content references: %w", err)
	}
	return used, nil
}

// DeleteMedia removes a media row and its thumbnails and returns the content
// hashes they used (the caller deletes the files no longer referenced).
func (tx *Tx) DeleteMedia(ctx context.Context, origin, mediaID string) ([]string, error) {
	rows, err := tx.q().QueryContext(ctx, `SELECT sha256 FROM media WHERE origin = $1 AND media_id = $2 AND sha256 != ''
		UNION SELECT sha256 FROM media_thumbnails WHERE origin = $1 AND media_id = $2`, origin, mediaID)
	if err != nil {
		return nil, fmt.Errorf("listing media content: %w", err)
	}
	var hashes []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			rows.Close()
			return nil, err
		}
		hashes = append(hashes, h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	res, err := tx.exec(ctx, `DELETE FROM media WHERE origin = $1 AND media_id = $2`, origin, mediaID)
	if err != nil {
		return nil, fmt.Errorf("deleting media: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, ErrNotFound
	}
	return hashes, nil
}

// MediaToPurge lists media rows created before beforeTS (when not 0) and
// uploaded by userID (when not ""), plus pending uploads expired at nowTS.
func (db *DB) MediaToPurge(ctx context.Context, beforeTS int64, userID string, nowTS int64) ([]MediaKey, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT origin, media_id FROM media
		WHERE (($1 = 0 OR created_ts < $1) AND ($2 = '' OR user_id = $2) AND ($1 != 0 OR $2 != ''))
		   OR (uploaded_ts = 0 AND unused_expires_ts <= $3)
		ORDER BY created_ts`, beforeTS, userID, nowTS)
	return mediaKeys(rows, err)
}

// ReferencedContent returns every content hash used by a media row or a
// thumbnail.
func (db *DB) ReferencedContent(ctx context.Context) (map[string]bool, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT sha256 FROM media WHERE sha256 != '' UNION SELECT sha256 FROM media_thumbnails`)
	if err != nil {
		return nil, fmt.Errorf("listing media content: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			return nil, err
		}
		out[h] = true
	}
	return out, rows.Err()
}

// URLPreview returns a cached preview (Open Graph JSON) and when it was fetched.
func (db *DB) URLPreview(ctx context.Context, url string) ([]byte, int64, error) {
	var og string
	var ts int64
	err := db.q().QueryRowContext(ctx, `SELECT og, fetched_ts FROM url_previews WHERE url = $1`, url).Scan(&og, &ts)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading url preview: %w", err)
	}
	return []byte(og), ts, nil
}

// PutURLPreview caches (replacing) the preview of a URL.
func (tx *Tx) PutURLPreview(ctx context.Context, url string, fetchedTS int64, og []byte) error {
	_, err := tx.exec(ctx, `INSERT INTO url_previews (url, fetched_ts, og) VALUES ($1, $2, $3)
		ON CONFLICT (url) DO UPDATE SET fetched_ts = excluded.fetched_ts, og = excluded.og`, url, fetchedTS, string(og))
	if err != nil {
		return fmt.Errorf("saving url preview: %w", err)
	}
	return nil
}

// DeleteURLPreviews drops cached previews fetched before beforeTS and
// returns how many were dropped.
func (tx *Tx) DeleteURLPreviews(ctx context.Context, beforeTS int64) (int64, error) {
	res, err := tx.exec(ctx, `DELETE FROM url_previews WHERE fetched_ts < $1`, beforeTS)
	if err != nil {
		return 0, fmt.Errorf("deleting url previews: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// UserMedia lists the media a user uploaded, newest first.
func (db *DB) UserMedia(ctx context.Context, userID string) ([]Media, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT `+mediaColumns+` FROM media WHERE user_id = $1 ORDER BY created_ts DESC, media_id`, userID)
	if err != nil {
		return nil, fmt.Errorf("listing a user's media: %w", err)
	}
	defer rows.Close()
	var out []Media
	for rows.Next() {
		m, err := scanMedia(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *m)
	}
	return out, rows.Err()
}
