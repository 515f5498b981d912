package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Device is one login session of a user.
type Device struct {
	UserID      string
	DeviceID    string
	DisplayName string
	CreatedTS   int64
	LastSeenTS  int64
	LastSeenIP  string
	// AccessExpiresTS is when the access token expires (ms); 0 means never.
	AccessExpiresTS int64
}

// DeviceTokens are the hashed credentials of a device.
type DeviceTokens struct {
	AccessHash      []byte
	AccessExpiresTS int64  // 0: never
	RefreshHash     []byte // nil: no refresh token
}

const deviceColumns = `user_id, device_id, COALESCE(display_name, ''), created_ts, COALESCE(last_seen_ts, 0),
	COALESCE(last_seen_ip, ''), COALESCE(access_expires_ts, 0)`

func scanDevice(row interface{ Scan(...any) error }) (*Device, error) {
	var d Device
	err := row.Scan(&d.UserID, &d.DeviceID, &d.DisplayName, &d.CreatedTS, &d.LastSeenTS, &d.LastSeenIP, &d.AccessExpiresTS)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading device: %w", err)
	}
	return &d, nil
}

func nullIfZero(v int64) any {
	if v == 0 {
		return nil
	}
	return v
}

// UpsertDevice creates a device or, when the user already has one with that
// ID (a login that reuses its device ID), replaces its tokens. A new device
// is a device list change, as on Synapse: the user's other devices hear of
// it before it uploads keys.
func (tx *Tx) UpsertDevice(ctx context.Context, d Device, t DeviceTokens) error {
	_, err := tx.Device(ctx, d.UserID, d.DeviceID)
	isNew := errors.Is(err, ErrNotFound)
	if err != nil && !isNew {
		return err
	}
	_, err = tx.exec(ctx, `INSERT INTO devices (user_id, device_id, display_name, access_token_hash, access_expires_ts,
			refresh_token_hash, created_ts, last_seen_ts, last_seen_ip)
		VALUES ($1, $2, NULLIF($3, ''), $4, $5, $6, $7, $7, NULLIF($8, ''))
		ON CONFLICT (user_id, device_id) DO UPDATE SET
			access_token_hash = excluded.access_token_hash,
			access_expires_ts = excluded.access_expires_ts,
			refresh_token_hash = excluded.refresh_token_hash,
			prev_refresh_token_hash = NULL,
			display_name = COALESCE(excluded.display_name, devices.display_name),
			last_seen_ts = excluded.last_seen_ts,
			last_seen_ip = COALESCE(excluded.last_seen_ip, devices.last_seen_ip)`,
		d.UserID, d.DeviceID, d.DisplayName, t.AccessHash, nullIfZero(t.AccessExpiresTS), t.RefreshHash, d.CreatedTS, d.LastSeenIP)
	if err != nil {
		return fmt.Errorf("saving device: %w", err)
	}
	if isNew {
		if _, err := tx.MarkDevicesChanged(ctx, d.UserID, d.DeviceID); err != nil {
			return err
		}
	}
	return nil
}

// DeviceByAccessToken finds the device owning a hashed access token.
func (db *DB) DeviceByAccessToken(ctx context.Context, hash []byte) (*Device, error) {
	return scanDevice(db.q().QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE access_token_hash = $1`, hash))
}

// DeviceByRefreshToken finds the device owning a hashed refresh token,
// either its current one or (retry) the one it held before its last refresh.
func (tx *Tx) DeviceByRefreshToken(ctx context.Context, hash []byte) (*Device, error) {
	return scanDevice(tx.q().QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices
		WHERE refresh_token_hash = $1 OR prev_refresh_token_hash = $1`, hash))
}

// RefreshDeviceTokens installs a new token pair after a refresh with used
// (a hashed refresh token). The refresh token used stays valid as the
// previous one until the new pair is used.
func (tx *Tx) RefreshDeviceTokens(ctx context.Context, userID, deviceID string, used []byte, t DeviceTokens) error {
	res, err := tx.exec(ctx, `UPDATE devices SET access_token_hash = $3, access_expires_ts = $4, refresh_token_hash = $5,
			prev_refresh_token_hash = $6
		WHERE user_id = $1 AND device_id = $2`, userID, deviceID, t.AccessHash, nullIfZero(t.AccessExpiresTS), t.RefreshHash, used)
	if err != nil {
		return fmt.Errorf("rotating device tokens: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// RevokePrevRefreshToken forgets a device's previous refresh token, once its
// new access token has been used.
func (tx *Tx) RevokePrevRefreshToken(ctx context.Context, userID, deviceID string) error {
	_, err := tx.exec(ctx, `UPDATE devices SET prev_refresh_token_hash = NULL WHERE user_id = $1 AND device_id = $2`, userID, deviceID)
	if err != nil {
		return fmt.Errorf("revoking previous refresh token: %w", err)
	}
	return nil
}

func getDevice(ctx context.Context, q querier, userID, deviceID string) (*Device, error) {
	return scanDevice(q.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE user_id = $1 AND device_id = $2`, userID, deviceID))
}

// Device returns one device of a user.
func (db *DB) Device(ctx context.Context, userID, deviceID string) (*Device, error) {
	return getDevice(ctx, db.q(), userID, deviceID)
}

// Device returns one device of a user inside the write.
func (tx *Tx) Device(ctx context.Context, userID, deviceID string) (*Device, error) {
	return getDevice(ctx, tx.q(), userID, deviceID)
}

// Devices lists a user's devices ordered by ID.
func (db *DB) Devices(ctx context.Context, userID string) ([]Device, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE user_id = $1 AND puppet_of IS NULL ORDER BY device_id`, userID)
	if err != nil {
		return nil, fmt.Errorf("listing devices: %w", err)
	}
	defer rows.Close()
	var out []Device
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *d)
	}
	return out, rows.Err()
}

// SetDeviceDisplayName renames a device; ErrNotFound if it does not exist.
// The name is part of /keys/query's answer, so a new one is a device list
// change.
func (tx *Tx) SetDeviceDisplayName(ctx context.Context, userID, deviceID, name string) error {
	d, err := tx.Device(ctx, userID, deviceID)
	if err != nil {
		return err
	}
	if d.DisplayName == name {
		return nil
	}
	if _, err := tx.exec(ctx, `UPDATE devices SET display_name = NULLIF($3, '') WHERE user_id = $1 AND device_id = $2`,
		userID, deviceID, name); err != nil {
		return fmt.Errorf("renaming device: %w", err)
	}
	_, err = tx.MarkDevicesChanged(ctx, userID, deviceID)
	return err
}

// TouchDevice records when and from where a device was last seen.
func (tx *Tx) TouchDevice(ctx context.Context, userID, deviceID string, ts int64, ip string) error {
	_, err := tx.exec(ctx, `UPDATE devices SET last_seen_ts = $3, last_seen_ip = $4 WHERE user_id = $1 AND device_id = $2`, userID, deviceID, ts, ip)
	if err != nil {
		return fmt.Errorf("touching device: %w", err)
	}
	return nil
}

// DeleteDevices removes the named devices of a user (all of them when ids is
// nil, except the one named by keep) and returns the IDs removed.
func (tx *Tx) DeleteDevices(ctx context.Context, userID string, ids []string, keep string) ([]string, error) {
	var targets []string
	if ids == nil {
		// Not the sessions an admin opened as the user (login as a user):
		// those end with the admin's logout of all devices.
		rows, err := tx.q().QueryContext(ctx, `SELECT device_id FROM devices WHERE user_id = $1 AND device_id != $2 AND puppet_of IS NULL`,
			userID, keep)
		if err != nil {
			return nil, fmt.Errorf("listing devices: %w", err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, err
			}
			targets = append(targets, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	} else {
		targets = ids
	}
	var deleted []string
	for _, id := range targets {
		if id == keep {
			continue
		}
		res, err := tx.exec(ctx, `DELETE FROM devices WHERE user_id = $1 AND device_id = $2`, userID, id)
		if err != nil {
			return nil, fmt.Errorf("deleting device: %w", err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			deleted = append(deleted, id)
		}
	}
	// Their keys, queued to-device messages and signatures go with them.
	if err := tx.deleteDevicesE2EE(ctx, userID, deleted); err != nil {
		return nil, err
	}
	if ids == nil && keep == "" {
		if _, err := tx.exec(ctx, `DELETE FROM devices WHERE puppet_of = $1`, userID); err != nil {
			return nil, fmt.Errorf("ending sessions opened as other users: %w", err)
		}
	}
	return deleted, nil
}

// TokenOwner is who an access token belongs to.
type TokenOwner struct {
	UserID          string
	DeviceID        string
	IsAdmin         bool
	Deactivated     bool
	AccessExpiresTS int64
	// HasPrevRefresh: the device still honours its previous refresh token.
	HasPrevRefresh bool
	// The account's admin flags (migration 0100).
	ShadowBanned, Locked, Suspended bool
}

// TokenOwner resolves a hashed access token in one indexed lookup. It reads
// the database on every request (no cache), so changes made by the admin CLI
// in another process take effect at once.
func (db *DB) TokenOwner(ctx context.Context, hash []byte) (*TokenOwner, error) {
	var o TokenOwner
	err := db.q().QueryRowContext(ctx, `SELECT d.user_id, d.device_id, a.is_admin, a.deactivated, COALESCE(d.access_expires_ts, 0),
			d.prev_refresh_token_hash IS NOT NULL, a.shadow_banned, a.locked, a.suspended
		FROM devices d JOIN accounts a ON a.user_id = d.user_id WHERE d.access_token_hash = $1`, hash).
		Scan(&o.UserID, &o.DeviceID, &o.IsAdmin, &o.Deactivated, &o.AccessExpiresTS, &o.HasPrevRefresh,
			&o.ShadowBanned, &o.Locked, &o.Suspended)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("resolving access token: %w", err)
	}
	return &o, nil
}

// InsertPuppetDevice adds a session an admin opens as a user (Synapse's
// login as a user): a device the user's device list does not show, whose
// token may expire (expiresTS, 0: never), ended by the admin's logout of
// all devices.
func (tx *Tx) InsertPuppetDevice(ctx context.Context, userID, deviceID, adminID string, accessHash []byte, expiresTS, nowTS int64) error {
	_, err := tx.exec(ctx, `INSERT INTO devices (user_id, device_id, access_token_hash, access_expires_ts, created_ts, puppet_of)
		VALUES ($1, $2, $3, $4, $5, $6)`, userID, deviceID, accessHash, nullIfZero(expiresTS), nowTS, adminID)
	if err != nil {
		return fmt.Errorf("saving a session opened as %s: %w", userID, err)
	}
	return nil
}
