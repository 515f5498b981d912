package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

// ErrExists is returned when inserting a row whose key is taken.
var ErrExists = errors.New("already exists")

// Account is a local user.
type Account struct {
	UserID       string
	Localpart    string
	PasswordHash string
	IsAdmin      bool
	Deactivated  bool
	CreatedTS    int64
	DisplayName  string
	AvatarURL    string
	// Admin flags (see migration 0100).
	ShadowBanned bool
	Locked       bool
	Suspended    bool
}

const accountColumns = `user_id, localpart, password_hash, is_admin, deactivated, created_ts,
	COALESCE(displayname, ''), COALESCE(avatar_url, ''), shadow_banned, locked, suspended`

func scanAccount(row interface{ Scan(...any) error }) (*Account, error) {
	var a Account
	err := row.Scan(&a.UserID, &a.Localpart, &a.PasswordHash, &a.IsAdmin, &a.Deactivated, &a.CreatedTS, &a.DisplayName, &a.AvatarURL,
		&a.ShadowBanned, &a.Locked, &a.Suspended)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading account: %w", err)
	}
	return &a, nil
}

func getAccount(ctx context.Context, q querier, userID string) (*Account, error) {
	return scanAccount(q.QueryRowContext(ctx, `SELECT `+accountColumns+` FROM accounts WHERE user_id = $1`, userID))
}

// Account looks up a local account by user ID.
func (db *DB) Account(ctx context.Context, userID string) (*Account, error) {
	return getAccount(ctx, db.q(), userID)
}

// Account looks up a local account inside the write.
func (tx *Tx) Account(ctx context.Context, userID string) (*Account, error) {
	return getAccount(ctx, tx.q(), userID)
}

// AccountByLocalpart looks up a local account case-insensitively by localpart,
// as login does ("Alice" logs in as @alice).
func (db *DB) AccountByLocalpart(ctx context.Context, localpart string) (*Account, error) {
	return scanAccount(db.q().QueryRowContext(ctx,
		`SELECT `+accountColumns+` FROM accounts WHERE localpart = $1`, strings.ToLower(localpart)))
}

// Accounts lists every local account ordered by user ID.
func (db *DB) Accounts(ctx context.Context) ([]Account, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT `+accountColumns+` FROM accounts ORDER BY user_id`)
	if err != nil {
		return nil, fmt.Errorf("listing accounts: %w", err)
	}
	defer rows.Close()
	var out []Account
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *a)
	}
	return out, rows.Err()
}

// InsertAccount creates an account; ErrExists if the localpart is taken.
func (tx *Tx) InsertAccount(ctx context.Context, a Account) error {
	res, err := tx.exec(ctx, `INSERT INTO accounts (user_id, localpart, password_hash, is_admin, created_ts, displayname)
		VALUES ($1, $2, $3, $4, $5, NULLIF($6, '')) ON CONFLICT DO NOTHING`,
		a.UserID, a.Localpart, a.PasswordHash, a.IsAdmin, a.CreatedTS, a.DisplayName)
	if err != nil {
		return fmt.Errorf("inserting account: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrExists
	}
	return nil
}

func (tx *Tx) updateAccount(ctx context.Context, userID, set string, args ...any) error {
	res, err := tx.exec(ctx, `UPDATE accounts SET `+set+` WHERE user_id = $1`, append([]any{userID}, args...)...)
	if err != nil {
		return fmt.Errorf("updating account: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// SetPasswordHash replaces an account's password hash.
func (tx *Tx) SetPasswordHash(ctx context.Context, userID, hash string) error {
	return tx.updateAccount(ctx, userID, `password_hash = $2`, hash)
}

// SetAdmin grants or revokes server admin.
func (tx *Tx) SetAdmin(ctx context.Context, userID string, admin bool) error {
	return tx.updateAccount(ctx, userID, `is_admin = $2`, admin)
}

// Deactivate marks an account deactivated and removes its password, so it
// can never log in again; the user ID stays reserved.
func (tx *Tx) Deactivate(ctx context.Context, userID string, erase bool) error {
	set := `deactivated = 1, password_hash = ''`
	if erase {
		set += `, displayname = NULL, avatar_url = NULL`
	}
	return tx.updateAccount(ctx, userID, set)
}

// SetDisplayName sets (or with "" clears) the profile display name.
func (tx *Tx) SetDisplayName(ctx context.Context, userID, name string) error {
	return tx.updateAccount(ctx, userID, `displayname = NULLIF($2, '')`, name)
}

// SetAvatarURL sets (or with "" clears) the profile avatar.
func (tx *Tx) SetAvatarURL(ctx context.Context, userID, url string) error {
	return tx.updateAccount(ctx, userID, `avatar_url = NULLIF($2, '')`, url)
}
