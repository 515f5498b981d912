package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ErrTokenUnusable means a registration token is unknown, used up or expired.
var ErrTokenUnusable = errors.New("registration token unknown, used up or expired")

// RegistrationToken lets someone register while registration is in token mode.
type RegistrationToken struct {
	Token       string
	UsesAllowed int64 // 0: unlimited
	Completed   int64
	ExpiryTS    int64 // ms; 0: never
	CreatedTS   int64
}

// Usable reports whether the token can still be used at now (ms).
func (t *RegistrationToken) Usable(now int64) bool {
	return (t.UsesAllowed == 0 || t.Completed < t.UsesAllowed) && (t.ExpiryTS == 0 || now < t.ExpiryTS)
}

const regTokenColumns = `token, COALESCE(uses_allowed, 0), completed, COALESCE(expiry_ts, 0), created_ts`

func scanRegToken(row interface{ Scan(...any) error }) (*RegistrationToken, error) {
	var t RegistrationToken
	err := row.Scan(&t.Token, &t.UsesAllowed, &t.Completed, &t.ExpiryTS, &t.CreatedTS)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading registration token: %w", err)
	}
	return &t, nil
}

// InsertRegistrationToken creates a token; ErrExists if taken.
func (tx *Tx) InsertRegistrationToken(ctx context.Context, t RegistrationToken) error {
	res, err := tx.exec(ctx, `INSERT INTO registration_tokens (token, uses_allowed, expiry_ts, created_ts)
		VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`, t.Token, nullIfZero(t.UsesAllowed), nullIfZero(t.ExpiryTS), t.CreatedTS)
	if err != nil {
		return fmt.Errorf("inserting registration token: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrExists
	}
	return nil
}

// RegistrationToken looks up one token.
func (db *DB) RegistrationToken(ctx context.Context, token string) (*RegistrationToken, error) {
	return scanRegToken(db.q().QueryRowContext(ctx, `SELECT `+regTokenColumns+` FROM registration_tokens WHERE token = $1`, token))
}

// RegistrationTokens lists every token.
func (db *DB) RegistrationTokens(ctx context.Context) ([]RegistrationToken, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT `+regTokenColumns+` FROM registration_tokens ORDER BY created_ts, token`)
	if err != nil {
		return nil, fmt.Errorf("listing registration tokens: %w", err)
	}
	defer rows.Close()
	var out []RegistrationToken
	for rows.Next() {
		t, err := scanRegToken(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *t)
	}
	return out, rows.Err()
}

// UseRegistrationToken counts one completed registration against the token,
// atomically refusing a token that is used up or expired at now (ms).
func (tx *Tx) UseRegistrationToken(ctx context.Context, token string, now int64) error {
	res, err := tx.exec(ctx, `UPDATE registration_tokens SET completed = completed + 1
		WHERE token = $1 AND (uses_allowed IS NULL OR completed < uses_allowed) AND (expiry_ts IS NULL OR expiry_ts > $2)`, token, now)
	if err != nil {
		return fmt.Errorf("using registration token: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrTokenUnusable
	}
	return nil
}

// DeleteRegistrationToken removes a token; ErrNotFound if absent.
func (tx *Tx) DeleteRegistrationToken(ctx context.Context, token string) error {
	res, err := tx.exec(ctx, `DELETE FROM registration_tokens WHERE token = $1`, token)
	if err != nil {
		return fmt.Errorf("deleting registration token: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// SetRegistrationTokenLimits replaces a token's use limit and expiry (0:
// none); ErrNotFound if there is no such token.
func (tx *Tx) SetRegistrationTokenLimits(ctx context.Context, token string, usesAllowed, expiryTS int64) error {
	res, err := tx.exec(ctx, `UPDATE registration_tokens SET uses_allowed = $2, expiry_ts = $3 WHERE token = $1`,
		token, nullIfZero(usesAllowed), nullIfZero(expiryTS))
	if err != nil {
		return fmt.Errorf("updating registration token: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}
