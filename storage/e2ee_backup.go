package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// BackupVersion is one server-side key backup of a user.
type BackupVersion struct {
	Version   int64
	Algorithm string
	AuthData  []byte
	Etag      int64
	Count     int64
	Deleted   bool
}

// BackupKey is one megolm session key stored in a backup.
type BackupKey struct {
	RoomID            string
	SessionID         string
	FirstMessageIndex int64
	ForwardedCount    int64
	IsVerified        bool
	SessionData       []byte
}

// BetterBackupKey reports whether candidate should replace existing: a
// verified key beats an unverified one; then the lower first message index
// wins; then the lower forwarded count. Equal keys do not replace.
func BetterBackupKey(candidate, existing BackupKey) bool {
	if candidate.IsVerified != existing.IsVerified {
		return candidate.IsVerified
	}
	if candidate.FirstMessageIndex != existing.FirstMessageIndex {
		return candidate.FirstMessageIndex < existing.FirstMessageIndex
	}
	return candidate.ForwardedCount < existing.ForwardedCount
}

func getBackupVersion(ctx context.Context, q querier, userID string, version int64) (*BackupVersion, error) {
	query := `SELECT v.version, v.algorithm, v.auth_data, v.etag, v.deleted,
			(SELECT COUNT(*) FROM e2e_backup_keys k WHERE k.user_id = v.user_id AND k.version = v.version)
		FROM e2e_backup_versions v WHERE v.user_id = $1 AND `
	args := []any{userID}
	if version == 0 {
		query += `v.deleted = 0 ORDER BY v.version DESC LIMIT 1`
	} else {
		query += `v.version = $2`
		args = append(args, version)
	}
	var b BackupVersion
	var auth string
	err := q.QueryRowContext(ctx, query, args...).Scan(&b.Version, &b.Algorithm, &auth, &b.Etag, &b.Deleted, &b.Count)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading backup version: %w", err)
	}
	b.AuthData = []byte(auth)
	return &b, nil
}

// BackupVersion returns a backup version of the user (0: the current one,
// the newest not deleted); ErrNotFound if there is none. A deleted version
// is returned with Deleted set.
func (db *DB) BackupVersion(ctx context.Context, userID string, version int64) (*BackupVersion, error) {
	return getBackupVersion(ctx, db.q(), userID, version)
}

// BackupVersion reads a backup version inside the write.
func (tx *Tx) BackupVersion(ctx context.Context, userID string, version int64) (*BackupVersion, error) {
	return getBackupVersion(ctx, tx.q(), userID, version)
}

// CreateBackupVersion adds a new backup, which becomes the current one, and
// returns its version number.
func (tx *Tx) CreateBackupVersion(ctx context.Context, userID, algorithm string, authData []byte) (int64, error) {
	var version int64
	err := tx.q().QueryRowContext(ctx, `INSERT INTO e2e_backup_versions (user_id, version, algorithm, auth_data)
		VALUES ($1, (SELECT COALESCE(MAX(version), 0) + 1 FROM e2e_backup_versions WHERE user_id = $1), $2, $3)
		RETURNING version`, userID, algorithm, string(authData)).Scan(&version)
	if err != nil {
		return 0, fmt.Errorf("creating backup version: %w", err)
	}
	return version, nil
}

// UpdateBackupAuthData replaces the auth_data of a live backup version.
func (tx *Tx) UpdateBackupAuthData(ctx context.Context, userID string, version int64, authData []byte) error {
	res, err := tx.exec(ctx, `UPDATE e2e_backup_versions SET auth_data = $3 WHERE user_id = $1 AND version = $2 AND deleted = 0`,
		userID, version, string(authData))
	if err != nil {
		return fmt.Errorf("updating backup version: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// DeleteBackupVersion deletes a backup version and its keys. Deleting a
// version again succeeds; a version that never existed is ErrNotFound.
func (tx *Tx) DeleteBackupVersion(ctx context.Context, userID string, version int64) error {
	res, err := tx.exec(ctx, `UPDATE e2e_backup_versions SET deleted = 1 WHERE user_id = $1 AND version = $2`, userID, version)
	if err != nil {
		return fmt.Errorf("deleting backup version: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	if _, err := tx.exec(ctx, `DELETE FROM e2e_backup_keys WHERE user_id = $1 AND version = $2`, userID, version); err != nil {
		return fmt.Errorf("deleting backup keys: %w", err)
	}
	return nil
}

// PutBackupKeys stores keys in a backup version, each replacing the stored
// key of its session only when BetterBackupKey says so. When anything
// changed the version's etag advances. It returns the etag and key count.
func (tx *Tx) PutBackupKeys(ctx context.Context, userID string, version int64, keys []BackupKey) (etag, count int64, err error) {
	changed := false
	for _, k := range keys {
		var old BackupKey
		err := tx.q().QueryRowContext(ctx, `SELECT first_message_index, forwarded_count, is_verified FROM e2e_backup_keys
			WHERE user_id = $1 AND version = $2 AND room_id = $3 AND session_id = $4`, userID, version, k.RoomID, k.SessionID).
			Scan(&old.FirstMessageIndex, &old.ForwardedCount, &old.IsVerified)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return 0, 0, fmt.Errorf("reading backup key: %w", err)
		case !BetterBackupKey(k, old):
			continue
		}
		_, err = tx.exec(ctx, `INSERT INTO e2e_backup_keys (user_id, version, room_id, session_id, first_message_index,
				forwarded_count, is_verified, session_data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET first_message_index = excluded.first_message_index,
				forwarded_count = excluded.forwarded_count, is_verified = excluded.is_verified, session_data = excluded.session_data`,
			userID, version, k.RoomID, k.SessionID, k.FirstMessageIndex, k.ForwardedCount, k.IsVerified, string(k.SessionData))
		if err != nil {
			return 0, 0, fmt.Errorf("saving backup key: %w", err)
		}
		changed = true
	}
	if changed {
		if err := tx.bumpBackupEtag(ctx, userID, version); err != nil {
			return 0, 0, err
		}
	}
	return tx.backupEtagCount(ctx, userID, version)
}

// DeleteBackupKeys deletes the keys of a backup version: all of them
// (roomID ""), a room's, or one session's. It returns the etag and count.
func (tx *Tx) DeleteBackupKeys(ctx context.Context, userID string, version int64, roomID, sessionID string) (etag, count int64, err error) {
	query := `DELETE FROM e2e_backup_keys WHERE user_id = $1 AND version = $2`
	args := []any{userID, version}
	if roomID != "" {
		query += ` AND room_id = $3`
		args = append(args, roomID)
		if sessionID != "" {
			query += ` AND session_id = $4`
			args = append(args, sessionID)
		}
	}
	res, err := tx.exec(ctx, query, args...)
	if err != nil {
		return 0, 0, fmt.Errorf("deleting backup keys: %w", err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		if err := tx.bumpBackupEtag(ctx, userID, version); err != nil {
			return 0, 0, err
		}
	}
	return tx.backupEtagCount(ctx, userID, version)
}

func (tx *Tx) bumpBackupEtag(ctx context.Context, userID string, version int64) error {
	if _, err := tx.exec(ctx, `UPDATE e2e_backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2`, userID, version); err != nil {
		return fmt.Errorf("updating backup etag: %w", err)
	}
	return nil
}

func (tx *Tx) backupEtagCount(ctx context.Context, userID string, version int64) (etag, count int64, err error) {
	err = tx.q().QueryRowContext(ctx, `SELECT v.etag, (SELECT COUNT(*) FROM e2e_backup_keys k WHERE k.user_id = v.user_id AND k.version = v.version)
		FROM e2e_backup_versions v WHERE v.user_id = $1 AND v.version = $2`, userID, version).Scan(&etag, &count)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, ErrNotFound
	}
	if err != nil {
		return 0, 0, fmt.Errorf("reading backup etag: %w", err)
	}
	return etag, count, nil
}

// BackupKeys returns the keys of a backup version: all (roomID ""), a
// room's, or one session's, ordered by room and session.
func (db *DB) BackupKeys(ctx context.Context, userID string, version int64, roomID, sessionID string) ([]BackupKey, error) {
	query := `SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data
		FROM e2e_backup_keys WHERE user_id = $1 AND version = $2`
	args := []any{userID, version}
	if roomID != "" {
		query += ` AND room_id = $3`
		args = append(args, roomID)
		if sessionID != "" {
			query += ` AND session_id = $4`
			args = append(args, sessionID)
		}
	}
	rows, err := db.q().QueryContext(ctx, query+` ORDER BY room_id, session_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("reading backup keys: %w", err)
	}
	defer rows.Close()
	var out []BackupKey
	for rows.Next() {
		var k BackupKey
		var data string
		if err := rows.Scan(&k.RoomID, &k.SessionID, &k.FirstMessageIndex, &k.ForwardedCount, &k.IsVerified, &data); err != nil {
			return nil, err
		}
		k.SessionData = []byte(data)
		out = append(out, k)
	}
	return out, rows.Err()
}
