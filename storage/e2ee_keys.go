package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// DeviceKeys is a device's uploaded identity keys.
type DeviceKeys struct {
	UserID      string
	DeviceID    string
	DisplayName string
	KeyJSON     []byte
}

// OneTimeKey is an uploaded one-time or fallback key: KeyID is the part
// after "algorithm:".
type OneTimeKey struct {
	Algorithm string
	KeyID     string
	KeyJSON   []byte
}

// KeyConflictError reports a one-time key ID that is already stored with
// different content.
type KeyConflictError struct{ Algorithm, KeyID string }

func (e *KeyConflictError) Error() string {
	return fmt.Sprintf("one-time key %s:%s already exists with different content", e.Algorithm, e.KeyID)
}

// CrossSignature is a signature uploaded through /keys/signatures/upload.
// TargetKeyID is a device ID or a cross-signing public key; SignerKeyID is
// "ed25519:<key>".
type CrossSignature struct {
	TargetUserID string
	TargetKeyID  string
	SignerUserID string
	SignerKeyID  string
	Signature    string
}

// Cross-signing key types.
const (
	KeyTypeMaster      = "master"
	KeyTypeSelfSigning = "self_signing"
	KeyTypeUserSigning = "user_signing"
)

func getDeviceKeys(ctx context.Context, q querier, userID, deviceID string) ([]byte, error) {
	var js string
	err := q.QueryRowContext(ctx, `SELECT key_json FROM e2e_device_keys WHERE user_id = $1 AND device_id = $2`, userID, deviceID).Scan(&js)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading device keys: %w", err)
	}
	return []byte(js), nil
}

// DeviceKeys returns a device's identity keys, or ErrNotFound.
func (db *DB) DeviceKeys(ctx context.Context, userID, deviceID string) ([]byte, error) {
	return getDeviceKeys(ctx, db.q(), userID, deviceID)
}

// DeviceKeys returns a device's identity keys inside the write.
func (tx *Tx) DeviceKeys(ctx context.Context, userID, deviceID string) ([]byte, error) {
	return getDeviceKeys(ctx, tx.q(), userID, deviceID)
}

// SetDeviceKeys stores a device's identity keys (canonical JSON). When they
// differ from what was stored, the signatures others made of the old keys
// are dropped and the user's device list is marked changed.
func (tx *Tx) SetDeviceKeys(ctx context.Context, userID, deviceID string, keyJSON []byte) (changed bool, err error) {
	old, err := tx.DeviceKeys(ctx, userID, deviceID)
	switch {
	case err == nil && string(old) == string(keyJSON):
		return false, nil
	case err == nil:
		if _, err := tx.exec(ctx, `DELETE FROM e2e_cross_signing_signatures WHERE target_user_id = $1 AND target_key_id = $2`,
			userID, deviceID); err != nil {
			return false, fmt.Errorf("dropping stale device signatures: %w", err)
		}
	case !errors.Is(err, ErrNotFound):
		return false, err
	}
	if _, err := tx.exec(ctx, `INSERT INTO e2e_device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3)
		ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json`, userID, deviceID, string(keyJSON)); err != nil {
		return false, fmt.Errorf("saving device keys: %w", err)
	}
	if _, err := tx.MarkDevicesChanged(ctx, userID, deviceID); err != nil {
		return false, err
	}
	return true, nil
}

// QueryDeviceKeys returns the keys of the named devices of a user (of all
// its devices with keys when deviceIDs is empty), ordered by device ID.
func (db *DB) QueryDeviceKeys(ctx context.Context, userID string, deviceIDs []string) ([]DeviceKeys, error) {
	query := `SELECT k.device_id, COALESCE(d.display_name, ''), k.key_json FROM e2e_device_keys k
		JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id WHERE k.user_id = $1`
	args := []any{userID}
	if len(deviceIDs) > 0 {
		ph := make([]string, len(deviceIDs))
		for i, id := range deviceIDs {
			args = append(args, id)
			ph[i] = fmt.Sprintf("$%d", i+2)
		}
		query += ` AND k.device_id IN (` + strings.Join(ph, ", ") + `)`
	}
	rows, err := db.q().QueryContext(ctx, query+` ORDER BY k.device_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("querying device keys: %w", err)
	}
	defer rows.Close()
	var out []DeviceKeys
	for rows.Next() {
		d := DeviceKeys{UserID: userID}
		var js string
		if err := rows.Scan(&d.DeviceID, &d.DisplayName, &js); err != nil {
			return nil, err
		}
		d.KeyJSON = []byte(js)
		out = append(out, d)
	}
	return out, rows.Err()
}

// AddOneTimeKeys stores one-time keys. A key ID already stored with the same
// content is skipped; with different content the write fails with a
// *KeyConflictError.
func (tx *Tx) AddOneTimeKeys(ctx context.Context, userID, deviceID string, keys []OneTimeKey) error {
	for _, k := range keys {
		var old string
		err := tx.q().QueryRowContext(ctx, `SELECT key_json FROM e2e_one_time_keys
			WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND key_id = $4`, userID, deviceID, k.Algorithm, k.KeyID).Scan(&old)
		if err == nil {
			if old != string(k.KeyJSON) {
				return &KeyConflictError{Algorithm: k.Algorithm, KeyID: k.KeyID}
			}
			continue
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("reading one-time key: %w", err)
		}
		if _, err := tx.exec(ctx, `INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json)
			VALUES ($1, $2, $3, $4, $5)`, userID, deviceID, k.Algorithm, k.KeyID, string(k.KeyJSON)); err != nil {
			return fmt.Errorf("saving one-time key: %w", err)
		}
	}
	return nil
}

func oneTimeKeyCounts(ctx context.Context, q querier, userID, deviceID string) (map[string]int, error) {
	rows, err := q.QueryContext(ctx, `SELECT algorithm, COUNT(*) FROM e2e_one_time_keys
		WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm`, userID, deviceID)
	if err != nil {
		return nil, fmt.Errorf("counting one-time keys: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var alg string
		var n int
		if err := rows.Scan(&alg, &n); err != nil {
			return nil, err
		}
		out[alg] = n
	}
	return out, rows.Err()
}

// OneTimeKeyCounts counts a device's unclaimed one-time keys per algorithm.
func (db *DB) OneTimeKeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, error) {
	return oneTimeKeyCounts(ctx, db.q(), userID, deviceID)
}

// OneTimeKeyCounts counts inside the write.
func (tx *Tx) OneTimeKeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, error) {
	return oneTimeKeyCounts(ctx, tx.q(), userID, deviceID)
}

// SetFallbackKey replaces a device's fallback key for an algorithm. The same
// key uploaded again keeps its used flag.
func (tx *Tx) SetFallbackKey(ctx context.Context, userID, deviceID string, k OneTimeKey) error {
	_, err := tx.exec(ctx, `INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)
		VALUES ($1, $2, $3, $4, $5, 0)
		ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET key_id = excluded.key_id, key_json = excluded.key_json, used = 0
		WHERE e2e_fallback_keys.key_id != excluded.key_id OR e2e_fallback_keys.key_json != excluded.key_json`,
		userID, deviceID, k.Algorithm, k.KeyID, string(k.KeyJSON))
	if err != nil {
		return fmt.Errorf("saving fallback key: %w", err)
	}
	return nil
}

// DeviceKeyCounts counts a device's unclaimed one-time keys per algorithm
// and lists the algorithms whose fallback key was never handed out: what
// every /sync carries, in one statement.
func (db *DB) DeviceKeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, []string, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT algorithm, COUNT(*), 0 FROM e2e_one_time_keys
		WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm
		UNION ALL SELECT algorithm, 0, 1 FROM e2e_fallback_keys WHERE user_id = $1 AND device_id = $2 AND used = 0`, userID, deviceID)
	if err != nil {
		return nil, nil, fmt.Errorf("counting device keys: %w", err)
	}
	defer rows.Close()
	counts, fallback := map[string]int{}, []string{}
	for rows.Next() {
		var alg string
		var n int
		var isFallback bool
		if err := rows.Scan(&alg, &n, &isFallback); err != nil {
			return nil, nil, err
		}
		if isFallback {
			fallback = append(fallback, alg)
		} else {
			counts[alg] = n
		}
	}
	sort.Strings(fallback)
	return counts, fallback, rows.Err()
}

// ClaimKey takes the oldest one-time key of the device for algorithm out
// of the store, or else marks its fallback key used and returns it.
// ErrNotFound when it has neither. Run inside one write, a key can never be
// handed out twice.
func (tx *Tx) ClaimKey(ctx context.Context, userID, deviceID, algorithm string) (OneTimeKey, bool, error) {
	k := OneTimeKey{Algorithm: algorithm}
	var js string
	err := tx.q().QueryRowContext(ctx, `DELETE FROM e2e_one_time_keys WHERE id = (
			SELECT id FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 ORDER BY id LIMIT 1)
		RETURNING key_id, key_json`, userID, deviceID, algorithm).Scan(&k.KeyID, &js)
	if err == nil {
		k.KeyJSON = []byte(js)
		return k, false, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return k, false, fmt.Errorf("claiming one-time key: %w", err)
	}
	err = tx.q().QueryRowContext(ctx, `UPDATE e2e_fallback_keys SET used = 1
		WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 RETURNING key_id, key_json`, userID, deviceID, algorithm).Scan(&k.KeyID, &js)
	if errors.Is(err, sql.ErrNoRows) {
		return k, false, ErrNotFound
	}
	if err != nil {
		return k, false, fmt.Errorf("claiming fallback key: %w", err)
	}
	k.KeyJSON = []byte(js)
	return k, true, nil
}

// MarkKeyCountsChanged records that a device's one-time or fallback keys
// were claimed at stream position pos (one position per claim request).
func (tx *Tx) MarkKeyCountsChanged(ctx context.Context, pos int64, userID, deviceID string) error {
	tx.WakeUsers(userID)
	_, err := tx.exec(ctx, `INSERT INTO e2e_key_count_changes (user_id, device_id, stream_pos) VALUES ($1, $2, $3)
		ON CONFLICT (user_id, device_id) DO UPDATE SET stream_pos = excluded.stream_pos`, userID, deviceID, pos)
	if err != nil {
		return fmt.Errorf("recording key count change: %w", err)
	}
	return nil
}

// KeyCountsChanged reports whether the device's keys were claimed at a
// position in (from, to].
func (db *DB) KeyCountsChanged(ctx context.Context, userID, deviceID string, from, to int64) (bool, error) {
	var n int
	err := db.q().QueryRowContext(ctx, `SELECT COUNT(*) FROM e2e_key_count_changes
		WHERE user_id = $1 AND device_id = $2 AND stream_pos > $3 AND stream_pos <= $4`, userID, deviceID, from, to).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("checking key count changes: %w", err)
	}
	return n > 0, nil
}

func crossSigningKeys(ctx context.Context, q querier, userID string) (map[string][]byte, error) {
	rows, err := q.QueryContext(ctx, `SELECT key_type, key_json FROM e2e_cross_signing_keys WHERE user_id = $1`, userID)
	if err != nil {
		return nil, fmt.Errorf("reading cross-signing keys: %w", err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var typ, js string
		if err := rows.Scan(&typ, &js); err != nil {
			return nil, err
		}
		out[typ] = []byte(js)
	}
	return out, rows.Err()
}

// CrossSigningKeys returns a user's cross-signing keys by type (empty map: none).
func (db *DB) CrossSigningKeys(ctx context.Context, userID string) (map[string][]byte, error) {
	return crossSigningKeys(ctx, db.q(), userID)
}

// CrossSigningKeys reads them inside the write.
func (tx *Tx) CrossSigningKeys(ctx context.Context, userID string) (map[string][]byte, error) {
	return crossSigningKeys(ctx, tx.q(), userID)
}

// SetCrossSigningKey stores (replacing) one of a user's cross-signing keys.
func (tx *Tx) SetCrossSigningKey(ctx context.Context, userID, keyType string, keyJSON []byte) error {
	_, err := tx.exec(ctx, `INSERT INTO e2e_cross_signing_keys (user_id, key_type, key_json) VALUES ($1, $2, $3)
		ON CONFLICT (user_id, key_type) DO UPDATE SET key_json = excluded.key_json`, userID, keyType, string(keyJSON))
	if err != nil {
		return fmt.Errorf("saving cross-signing key: %w", err)
	}
	return nil
}

// DeleteSignaturesBy drops the signatures a user made with one key (a
// replaced self-signing or user-signing key).
func (tx *Tx) DeleteSignaturesBy(ctx context.Context, signerUserID, signerKeyID string) error {
	_, err := tx.exec(ctx, `DELETE FROM e2e_cross_signing_signatures WHERE signer_user_id = $1 AND signer_key_id = $2`,
		signerUserID, signerKeyID)
	if err != nil {
		return fmt.Errorf("dropping signatures: %w", err)
	}
	return nil
}

// DeleteSignaturesOf drops the signatures made of one key (a replaced master key).
func (tx *Tx) DeleteSignaturesOf(ctx context.Context, targetUserID, targetKeyID string) error {
	_, err := tx.exec(ctx, `DELETE FROM e2e_cross_signing_signatures WHERE target_user_id = $1 AND target_key_id = $2`,
		targetUserID, targetKeyID)
	if err != nil {
		return fmt.Errorf("dropping signatures: %w", err)
	}
	return nil
}

// AddCrossSignature stores (replacing) a signature.
func (tx *Tx) AddCrossSignature(ctx context.Context, s CrossSignature) error {
	_, err := tx.exec(ctx, `INSERT INTO e2e_cross_signing_signatures (target_user_id, target_key_id, signer_user_id, signer_key_id, signature)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (target_user_id, target_key_id, signer_user_id, signer_key_id) DO UPDATE SET signature = excluded.signature`,
		s.TargetUserID, s.TargetKeyID, s.SignerUserID, s.SignerKeyID, s.Signature)
	if err != nil {
		return fmt.Errorf("saving signature: %w", err)
	}
	return nil
}

// CrossSignatures returns the signatures made of a user's keys by any of
// signers, ordered for stable output.
func (db *DB) CrossSignatures(ctx context.Context, targetUserID string, signers []string) ([]CrossSignature, error) {
	if len(signers) == 0 {
		return nil, nil
	}
	args := []any{targetUserID}
	ph := make([]string, len(signers))
	for i, s := range signers {
		args = append(args, s)
		ph[i] = fmt.Sprintf("$%d", i+2)
	}
	rows, err := db.q().QueryContext(ctx, `SELECT target_key_id, signer_user_id, signer_key_id, signature FROM e2e_cross_signing_signatures
		WHERE target_user_id = $1 AND signer_user_id IN (`+strings.Join(ph, ", ")+`)
		ORDER BY target_key_id, signer_user_id, signer_key_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("reading signatures: %w", err)
	}
	defer rows.Close()
	var out []CrossSignature
	for rows.Next() {
		s := CrossSignature{TargetUserID: targetUserID}
		if err := rows.Scan(&s.TargetKeyID, &s.SignerUserID, &s.SignerKeyID, &s.Signature); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// MarkDeviceListChanged records, at a new stream position, that a user's
// devices or keys changed. onlyFor "" tells everyone who shares a room with
// the user; otherwise only that user hears of it.
func (tx *Tx) MarkDeviceListChanged(ctx context.Context, userID, onlyFor string) (int64, error) {
	pos := tx.NextStreamPos()
	if err := tx.wakeDeviceListWatchers(ctx, userID, onlyFor); err != nil {
		return 0, err
	}
	_, err := tx.exec(ctx, `INSERT INTO e2e_device_list_changes (user_id, only_for, stream_pos) VALUES ($1, $2, $3)
		ON CONFLICT (user_id, only_for) DO UPDATE SET stream_pos = excluded.stream_pos`, userID, onlyFor, pos)
	if err != nil {
		return 0, fmt.Errorf("recording device list change: %w", err)
	}
	return pos, nil
}

// deleteDevicesE2EE removes everything end-to-end encryption keeps for
// deleted devices (in the write that deletes them) and marks the user's
// device list changed.
func (tx *Tx) deleteDevicesE2EE(ctx context.Context, userID string, deviceIDs []string) error {
	if len(deviceIDs) == 0 {
		return nil
	}
	for _, id := range deviceIDs {
		for _, q := range []string{
			`DELETE FROM e2e_device_keys WHERE user_id = $1 AND device_id = $2`,
			`DELETE FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2`,
			`DELETE FROM e2e_fallback_keys WHERE user_id = $1 AND device_id = $2`,
			`DELETE FROM e2e_key_count_changes WHERE user_id = $1 AND device_id = $2`,
			`DELETE FROM e2e_to_device WHERE user_id = $1 AND device_id = $2`,
			`DELETE FROM e2e_to_device_txns WHERE user_id = $1 AND device_id = $2`,
			`DELETE FROM e2e_cross_signing_signatures WHERE target_user_id = $1 AND target_key_id = $2`,
			`DELETE FROM e2e_cross_signing_signatures WHERE signer_user_id = $1 AND signer_key_id = 'ed25519:' || $2`,
		} {
			if _, err := tx.exec(ctx, q, userID, id); err != nil {
				return fmt.Errorf("deleting keys of device %s: %w", id, err)
			}
		}
	}
	_, err := tx.MarkDevicesChanged(ctx, userID, deviceIDs...)
	return err
}

// prevMembership is the membership a member event replaced, from its
// unsigned prev_content (its own is events.state_value). Only the member
// events of a sync's range read it, too few to make it a column.
var prevMembership = `COALESCE(` + jsonText("e.unsigned_extra", "prev_content", "membership") + `, '')`

// deviceListChangesQuery is DeviceListChanges's one statement ($1 viewer,
// range ($2, $3]), each part tagged: 'c' changed if they (still) share a
// room, 'p' changed regardless, 'l' left if they share no room any more.
var deviceListChangesQuery = `
	-- Key and device changes everyone sharing a room hears about.
	SELECT 'c', user_id FROM e2e_device_list_changes WHERE stream_pos > $2 AND stream_pos <= $3 AND only_for = ''
	-- Changes only the viewer hears about (signatures they made).
	UNION ALL SELECT 'p', user_id FROM e2e_device_list_changes WHERE stream_pos > $2 AND stream_pos <= $3 AND only_for = $1
	-- Users who joined a room the viewer is in.
	UNION ALL SELECT 'c', e.state_key FROM events e
		JOIN current_state me ON me.room_nid = e.room_nid AND me.type = 'm.room.member' AND me.state_key = $1 AND me.membership = 'join'
		WHERE e.type = 'm.room.member' AND e.stream_pos > $2 AND e.stream_pos <= $3
		  AND e.state_value = 'join' AND ` + prevMembership + ` != 'join'
	-- Members of rooms the viewer joined.
	UNION ALL SELECT 'c', o.state_key FROM events e
		JOIN current_state o ON o.room_nid = e.room_nid AND o.type = 'm.room.member' AND o.membership = 'join'
		WHERE e.type = 'm.room.member' AND e.state_key = $1 AND e.stream_pos > $2 AND e.stream_pos <= $3
		  AND e.state_value = 'join' AND ` + prevMembership + ` != 'join'
	-- Users who left a room the viewer has a membership in.
	UNION ALL SELECT 'l', e.state_key FROM events e
		WHERE e.type = 'm.room.member' AND e.stream_pos > $2 AND e.stream_pos <= $3
		  AND e.state_value IN ('leave', 'ban') AND ` + prevMembership + ` = 'join'
		  AND e.room_nid IN (SELECT room_nid FROM current_state WHERE type = 'm.room.member' AND state_key = $1)
	-- Members of rooms the viewer left.
	UNION ALL SELECT 'l', o.state_key FROM events e
		JOIN current_state o ON o.room_nid = e.room_nid AND o.type = 'm.room.member' AND o.membership IN ('join', 'leave', 'ban')
		WHERE e.type = 'm.room.member' AND e.state_key = $1 AND e.stream_pos > $2 AND e.stream_pos <= $3
		  AND e.state_value IN ('leave', 'ban') AND ` + prevMembership + ` = 'join'`

// DeviceListChanges computes /sync's device_lists for viewer over the
// stream range (from, to]: changed holds the users sharing a room with the
// viewer (and the viewer) whose device lists changed, the users who joined a
// room the viewer is in, the members of rooms the viewer joined, and users
// whose keys the viewer signed; left holds the users who no longer share
// any room after someone left.
func (db *DB) DeviceListChanges(ctx context.Context, viewer string, from, to int64) (changed, left []string, err error) {
	changed, left = []string{}, []string{}
	if to <= from {
		return changed, left, nil
	}
	rows, err := db.q().QueryContext(ctx, deviceListChangesQuery, viewer, from, to)
	if err != nil {
		return nil, nil, fmt.Errorf("computing device list changes: %w", err)
	}
	candidates := map[string]bool{}
	private := map[string]bool{}
	leaving := map[string]bool{}
	for rows.Next() {
		var kind, u string
		if err := rows.Scan(&kind, &u); err != nil {
			rows.Close()
			return nil, nil, err
		}
		switch kind {
		case "c":
			candidates[u] = true
		case "p":
			private[u] = true
		default:
			leaving[u] = true
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("computing device list changes: %w", err)
	}
	if len(candidates)+len(private)+len(leaving) == 0 {
		return changed, left, nil
	}
	shared, err := db.usersSharingRooms(ctx, viewer)
	if err != nil {
		return nil, nil, err
	}
	out := map[string]bool{}
	for u := range candidates {
		if u == viewer || shared[u] {
			out[u] = true
		}
	}
	for u := range private {
		out[u] = true
	}
	for u := range leaving {
		if u != viewer && !shared[u] {
			left = append(left, u)
			delete(out, u)
		}
	}
	for u := range out {
		changed = append(changed, u)
	}
	sort.Strings(changed)
	sort.Strings(left)
	return changed, left, nil
}

// usersSharingRooms is the set of users joined to a room the viewer is joined to.
func (db *DB) usersSharingRooms(ctx context.Context, viewer string) (map[string]bool, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT DISTINCT o.state_key FROM current_state me
		JOIN current_state o ON o.room_nid = me.room_nid AND o.type = 'm.room.member' AND o.membership = 'join'
		WHERE me.type = 'm.room.member' AND me.state_key = $1 AND me.membership = 'join'`, viewer)
	if err != nil {
		return nil, fmt.Errorf("listing users sharing rooms: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		out[u] = true
	}
	return out, rows.Err()
}

// wakeDeviceListWatchers declares who hears of a device-list change: the
// user, and everyone in a room with them (or only onlyFor).
func (tx *Tx) wakeDeviceListWatchers(ctx context.Context, userID, onlyFor string) error {
	if onlyFor != "" {
		tx.WakeUsers(onlyFor)
		return nil
	}
	tx.WakeUsers(userID)
	rows, err := tx.q().QueryContext(ctx, `SELECT room_nid FROM current_state WHERE type = 'm.room.member' AND state_key = $1 AND membership = 'join'`, userID)
	if err != nil {
		return fmt.Errorf("listing rooms of %s: %w", userID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var nid int64
		if err := rows.Scan(&nid); err != nil {
			return err
		}
		tx.WakeRooms(nid)
	}
	return rows.Err()
}
