package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// InsertOpenIDToken stores a token (by hash) for userID until expiresTS
// (ms), and drops the tokens expired by nowTS.
func (tx *Tx) InsertOpenIDToken(ctx context.Context, hash []byte, userID string, expiresTS, nowTS int64) error {
	if _, err := tx.exec(ctx, `DELETE FROM openid_tokens WHERE expires_ts <= $1`, nowTS); err != nil {
		return fmt.Errorf("dropping expired openid tokens: %w", err)
	}
	if _, err := tx.exec(ctx, `INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES ($1, $2, $3)`,
		hash, userID, expiresTS); err != nil {
		return fmt.Errorf("saving openid token: %w", err)
	}
	return nil
}

// OpenIDTokenOwner is the user a token was issued to, if it has not expired
// by nowTS (ErrNotFound otherwise).
func (db *DB) OpenIDTokenOwner(ctx context.Context, hash []byte, nowTS int64) (string, error) {
	var userID string
	err := db.q().QueryRowContext(ctx, `SELECT user_id FROM openid_tokens WHERE token_hash = $1 AND expires_ts > $2`,
		hash, nowTS).Scan(&userID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("reading openid token: %w", err)
	}
	return userID, nil
}
