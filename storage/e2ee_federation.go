package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// End-to-end encryption across servers (internal/e2ee): local device
// changes waiting to be published to other servers, the publisher's cursor
// and chain of stream IDs, other servers' users' device lists, and the
// room-sharing questions they need answered.

// MarkDevicesChanged records a change of a local user's devices that
// everyone sharing a room with the user hears of (MarkDeviceListChanged
// with onlyFor "") and that other servers must be told of: each device
// ("" for the user's cross-signing keys) is noted at the change's position
// for the publisher.
func (tx *Tx) MarkDevicesChanged(ctx context.Context, userID string, deviceIDs ...string) (int64, error) {
	pos, err := tx.MarkDeviceListChanged(ctx, userID, "")
	if err != nil {
		return 0, err
	}
	for _, d := range deviceIDs {
		if _, err := tx.exec(ctx, `INSERT INTO e2e_device_changes_outbound (user_id, device_id, stream_pos) VALUES ($1, $2, $3)
			ON CONFLICT (user_id, device_id) DO UPDATE SET stream_pos = excluded.stream_pos`, userID, d, pos); err != nil {
			return 0, fmt.Errorf("recording a device change for other servers: %w", err)
		}
	}
	return pos, nil
}

// DeviceChange is a change of a local device to publish (DeviceID "": the
// cross-signing keys).
type DeviceChange struct {
	UserID, DeviceID string
	StreamPos        int64
}

// DeviceChangesOutbound lists the device changes at positions in
// (after, upTo], in stream order.
func (db *DB) DeviceChangesOutbound(ctx context.Context, after, upTo int64) ([]DeviceChange, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT user_id, device_id, stream_pos FROM e2e_device_changes_outbound
		WHERE stream_pos > $1 AND stream_pos <= $2 ORDER BY stream_pos, user_id, device_id`, after, upTo)
	if err != nil {
		return nil, fmt.Errorf("listing device changes: %w", err)
	}
	defer rows.Close()
	var out []DeviceChange
	for rows.Next() {
		var c DeviceChange
		if err := rows.Scan(&c.UserID, &c.DeviceID, &c.StreamPos); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// DeleteDeviceChangesOutbound forgets the device changes published (those
// at or before upTo).
func (tx *Tx) DeleteDeviceChangesOutbound(ctx context.Context, upTo int64) error {
	if _, err := tx.exec(ctx, `DELETE FROM e2e_device_changes_outbound WHERE stream_pos <= $1`, upTo); err != nil {
		return fmt.Errorf("deleting published device changes: %w", err)
	}
	return nil
}

// DeviceListCursor is the stream position up to which the publisher has
// handled device changes and memberships.
func (db *DB) DeviceListCursor(ctx context.Context) (int64, error) {
	var pos int64
	if err := db.q().QueryRowContext(ctx, `SELECT pos FROM e2e_device_list_cursor WHERE id = 1`).Scan(&pos); err != nil {
		return 0, fmt.Errorf("reading the device list cursor: %w", err)
	}
	return pos, nil
}

// SetDeviceListCursor moves the publisher's cursor (never back).
func (tx *Tx) SetDeviceListCursor(ctx context.Context, pos int64) error {
	if _, err := tx.exec(ctx, `UPDATE e2e_device_list_cursor SET pos = `+greatest("pos", "$1")+` WHERE id = 1`, pos); err != nil {
		return fmt.Errorf("saving the device list cursor: %w", err)
	}
	return nil
}

// DeviceListPublished is the stream ID of the last device list update
// published for a local user (0: none).
func (db *DB) DeviceListPublished(ctx context.Context, userID string) (int64, error) {
	var id int64
	err := db.q().QueryRowContext(ctx, `SELECT stream_id FROM e2e_device_list_published WHERE user_id = $1`, userID).Scan(&id)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("reading the last published device list update: %w", err)
	}
	return id, nil
}

// SetDeviceListPublished records the stream ID of the last device list
// update published for a local user.
func (tx *Tx) SetDeviceListPublished(ctx context.Context, userID string, streamID int64) error {
	_, err := tx.exec(ctx, `INSERT INTO e2e_device_list_published (user_id, stream_id) VALUES ($1, $2)
		ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id`, userID, streamID)
	if err != nil {
		return fmt.Errorf("saving the last published device list update: %w", err)
	}
	return nil
}

// LatestDeviceListChange is the stream position of the latest change of a
// user's devices or cross-signing keys that everyone hears of (0: none).
func (db *DB) LatestDeviceListChange(ctx context.Context, userID string) (int64, error) {
	var pos int64
	err := db.q().QueryRowContext(ctx, `SELECT stream_pos FROM e2e_device_list_changes WHERE user_id = $1 AND only_for = ''`, userID).Scan(&pos)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("reading the latest device list change: %w", err)
	}
	return pos, nil
}

// MemberChange is a member event of the timeline.
type MemberChange struct {
	StreamPos      int64
	RoomNID        int64
	UserID         string
	Membership     string
	PrevMembership string
}

// MemberChangesAfter lists the accepted member events at positions in
// (after, upTo], in stream order, at most limit.
func (db *DB) MemberChangesAfter(ctx context.Context, after, upTo int64, limit int) ([]MemberChange, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT e.stream_pos, e.room_nid, e.state_key, COALESCE(e.state_value, ''), `+prevMembership+`
		FROM events e WHERE e.stream_pos > $1 AND e.stream_pos <= $2 AND e.status = 0 AND e.type = 'm.room.member'
		AND e.state_key IS NOT NULL ORDER BY e.stream_pos LIMIT $3`, after, upTo, limit)
	if err != nil {
		return nil, fmt.Errorf("listing member events after %d: %w", after, err)
	}
	defer rows.Close()
	var out []MemberChange
	for rows.Next() {
		var c MemberChange
		if err := rows.Scan(&c.StreamPos, &c.RoomNID, &c.UserID, &c.Membership, &c.PrevMembership); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// ServersSharingRooms lists the servers (sorted) with a member joined to a
// room the user is joined to, the user's own included.
func (db *DB) ServersSharingRooms(ctx context.Context, userID string) ([]string, error) {
	servers, err := queryStrings(ctx, db.q(), `SELECT DISTINCT `+userIDServer("o.state_key")+` AS server FROM current_state me
		JOIN current_state o ON o.room_nid = me.room_nid AND o.type = 'm.room.member' AND o.membership = 'join'
		WHERE me.type = 'm.room.member' AND me.state_key = $1 AND me.membership = 'join' ORDER BY server`, userID)
	if err != nil {
		return nil, fmt.Errorf("listing the servers sharing a room with %s: %w", userID, err)
	}
	return servers, nil
}

// ServersJoinedToRoomOnly lists the servers (sorted) with a member joined to
// the room that have none in any other room the user is joined to: those
// that start sharing a room with the user when they join it.
func (db *DB) ServersJoinedToRoomOnly(ctx context.Context, userID string, roomNID int64) ([]string, error) {
	servers, err := queryStrings(ctx, db.q(), `SELECT DISTINCT `+userIDServer("o.state_key")+` AS server FROM current_state o
		WHERE o.room_nid = $2 AND o.type = 'm.room.member' AND o.membership = 'join'
		EXCEPT SELECT DISTINCT `+userIDServer("o.state_key")+` FROM current_state me
		JOIN current_state o ON o.room_nid = me.room_nid AND o.type = 'm.room.member' AND o.membership = 'join'
		WHERE me.type = 'm.room.member' AND me.state_key = $1 AND me.membership = 'join' AND me.room_nid != $2
		ORDER BY server`, userID, roomNID)
	if err != nil {
		return nil, fmt.Errorf("listing the servers new to %s: %w", userID, err)
	}
	return servers, nil
}

// SharesRoomWithServer reports whether the user is joined to a room a user
// of server is joined to: whether server tracks the user's devices.
func (db *DB) SharesRoomWithServer(ctx context.Context, userID, server string) (bool, error) {
	var one int
	err := db.q().QueryRowContext(ctx, `SELECT 1 FROM current_state a
		JOIN current_state b ON b.room_nid = a.room_nid AND b.type = 'm.room.member' AND b.membership = 'join'
		WHERE a.type = 'm.room.member' AND a.state_key = $1 AND a.membership = 'join' AND `+userIDServer("b.state_key")+` = $2
		LIMIT 1`, userID, server).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("checking whether %s shares a room with %s: %w", userID, server, err)
	}
	return true, nil
}

// TrackedMembersOfRoom lists the users with a cached remote device list
// who have a membership in the room.
func (db *DB) TrackedMembersOfRoom(ctx context.Context, roomNID int64) ([]string, error) {
	users, err := queryStrings(ctx, db.q(), `SELECT cs.state_key FROM current_state cs
		JOIN e2e_remote_device_lists r ON r.user_id = cs.state_key
		WHERE cs.room_nid = $1 AND cs.type = 'm.room.member' ORDER BY cs.state_key`, roomNID)
	if err != nil {
		return nil, fmt.Errorf("listing the tracked members of room %d: %w", roomNID, err)
	}
	return users, nil
}

// RemoteDeviceList is what is cached of another server's user's device
// list.
type RemoteDeviceList struct {
	// Cached: there is an entry (the user's devices are tracked).
	Cached bool
	// StreamID is the last update of the user's server reflected.
	StreamID int64
	// Stale: updates were missed; the list must be fetched again.
	Stale bool
}

// RemoteDeviceListState reads the cache entry of a remote user.
func (db *DB) RemoteDeviceListState(ctx context.Context, userID string) (RemoteDeviceList, error) {
	return remoteDeviceListState(ctx, db.q(), userID)
}

// RemoteDeviceListState reads it inside the write.
func (tx *Tx) RemoteDeviceListState(ctx context.Context, userID string) (RemoteDeviceList, error) {
	return remoteDeviceListState(ctx, tx.q(), userID)
}

func remoteDeviceListState(ctx context.Context, q querier, userID string) (RemoteDeviceList, error) {
	var l RemoteDeviceList
	err := q.QueryRowContext(ctx, `SELECT stream_id, stale FROM e2e_remote_device_lists WHERE user_id = $1`, userID).Scan(&l.StreamID, &l.Stale)
	if errors.Is(err, sql.ErrNoRows) {
		return RemoteDeviceList{}, nil
	}
	if err != nil {
		return l, fmt.Errorf("reading the device list of %s: %w", userID, err)
	}
	l.Cached = true
	return l, nil
}

// RemoteDevice is a cached device of another server's user.
type RemoteDevice struct {
	DeviceID    string
	DisplayName string
	// KeyJSON is nil for a device without keys.
	KeyJSON []byte
}

// RemoteDevices lists a remote user's cached devices (only the named ones
// when deviceIDs is not empty), ordered by device ID.
func (db *DB) RemoteDevices(ctx context.Context, userID string, deviceIDs []string) ([]RemoteDevice, error) {
	return remoteDevices(ctx, db.q(), userID, deviceIDs)
}

// RemoteDevices lists them inside the write.
func (tx *Tx) RemoteDevices(ctx context.Context, userID string, deviceIDs []string) ([]RemoteDevice, error) {
	return remoteDevices(ctx, tx.q(), userID, deviceIDs)
}

func remoteDevices(ctx context.Context, q querier, userID string, deviceIDs []string) ([]RemoteDevice, error) {
	query := `SELECT device_id, COALESCE(display_name, ''), key_json FROM e2e_remote_devices WHERE user_id = $1`
	args := []any{userID}
	if len(deviceIDs) > 0 {
		query += ` AND ` + inArray("device_id", 2)
		args = append(args, arrayArg(deviceIDs))
	}
	rows, err := q.QueryContext(ctx, query+` ORDER BY device_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("reading the devices of %s: %w", userID, err)
	}
	defer rows.Close()
	var out []RemoteDevice
	for rows.Next() {
		var d RemoteDevice
		var keys sql.NullString
		if err := rows.Scan(&d.DeviceID, &d.DisplayName, &keys); err != nil {
			return nil, err
		}
		if keys.Valid {
			d.KeyJSON = []byte(keys.String)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// CountRemoteDevices counts a remote user's cached devices.
func (db *DB) CountRemoteDevices(ctx context.Context, userID string) (int, error) {
	var n int
	if err := db.q().QueryRowContext(ctx, `SELECT COUNT(*) FROM e2e_remote_devices WHERE user_id = $1`, userID).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting the devices of %s: %w", userID, err)
	}
	return n, nil
}

// ReplaceRemoteDevices caches a remote user's whole device list as of the
// stream ID, fresh.
func (tx *Tx) ReplaceRemoteDevices(ctx context.Context, userID string, devices []RemoteDevice, streamID int64) error {
	if _, err := tx.exec(ctx, `DELETE FROM e2e_remote_devices WHERE user_id = $1`, userID); err != nil {
		return fmt.Errorf("replacing the devices of %s: %w", userID, err)
	}
	for _, d := range devices {
		if err := tx.SetRemoteDevice(ctx, userID, d); err != nil {
			return err
		}
	}
	_, err := tx.exec(ctx, `INSERT INTO e2e_remote_device_lists (user_id, stream_id, stale) VALUES ($1, $2, 0)
		ON CONFLICT (user_id) DO UPDATE SET stream_id = excluded.stream_id, stale = 0`, userID, streamID)
	if err != nil {
		return fmt.Errorf("saving the device list of %s: %w", userID, err)
	}
	return nil
}

// SetRemoteDevice caches (replacing) one device of a remote user.
func (tx *Tx) SetRemoteDevice(ctx context.Context, userID string, d RemoteDevice) error {
	var keys any
	if d.KeyJSON != nil {
		keys = string(d.KeyJSON)
	}
	_, err := tx.exec(ctx, `INSERT INTO e2e_remote_devices (user_id, device_id, display_name, key_json) VALUES ($1, $2, NULLIF($3, ''), $4)
		ON CONFLICT (user_id, device_id) DO UPDATE SET display_name = excluded.display_name, key_json = excluded.key_json`,
		userID, d.DeviceID, d.DisplayName, keys)
	if err != nil {
		return fmt.Errorf("saving device %s of %s: %w", d.DeviceID, userID, err)
	}
	return nil
}

// DeleteRemoteDevice forgets a deleted device of a remote user, and the
// signatures made of its keys.
func (tx *Tx) DeleteRemoteDevice(ctx context.Context, userID, deviceID string) error {
	for _, q := range []string{
		`DELETE FROM e2e_remote_devices WHERE user_id = $1 AND device_id = $2`,
		`DELETE FROM e2e_cross_signing_signatures WHERE target_user_id = $1 AND target_key_id = $2`,
	} {
		if _, err := tx.exec(ctx, q, userID, deviceID); err != nil {
			return fmt.Errorf("deleting device %s of %s: %w", deviceID, userID, err)
		}
	}
	return nil
}

// SetRemoteDeviceListStreamID records the last update of a remote user's
// server applied to the cached list.
func (tx *Tx) SetRemoteDeviceListStreamID(ctx context.Context, userID string, streamID int64) error {
	if _, err := tx.exec(ctx, `UPDATE e2e_remote_device_lists SET stream_id = $2 WHERE user_id = $1`, userID, streamID); err != nil {
		return fmt.Errorf("saving the stream ID of %s: %w", userID, err)
	}
	return nil
}

// MarkRemoteDeviceListStale records that a tracked remote user's device
// list missed updates (an entry is made when there is none).
func (tx *Tx) MarkRemoteDeviceListStale(ctx context.Context, userID string) error {
	_, err := tx.exec(ctx, `INSERT INTO e2e_remote_device_lists (user_id, stream_id, stale) VALUES ($1, 0, 1)
		ON CONFLICT (user_id) DO UPDATE SET stale = 1`, userID)
	if err != nil {
		return fmt.Errorf("marking the device list of %s stale: %w", userID, err)
	}
	return nil
}

// StaleRemoteDeviceLists lists up to limit remote users whose cached
// device lists are stale.
func (db *DB) StaleRemoteDeviceLists(ctx context.Context, limit int) ([]string, error) {
	users, err := queryStrings(ctx, db.q(), `SELECT user_id FROM e2e_remote_device_lists WHERE stale = 1 ORDER BY user_id LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("listing stale device lists: %w", err)
	}
	return users, nil
}

// ForgetRemoteDeviceList drops everything cached of a remote user's keys:
// this server no longer shares a room with them, so it would miss their
// updates.
func (tx *Tx) ForgetRemoteDeviceList(ctx context.Context, userID string) error {
	for _, q := range []string{
		`DELETE FROM e2e_remote_device_lists WHERE user_id = $1`,
		`DELETE FROM e2e_remote_devices WHERE user_id = $1`,
		`DELETE FROM e2e_cross_signing_keys WHERE user_id = $1`,
	} {
		if _, err := tx.exec(ctx, q, userID); err != nil {
			return fmt.Errorf("forgetting the device list of %s: %w", userID, err)
		}
	}
	return nil
}

// DeleteCrossSigningKey removes one of a user's cross-signing keys (a
// remote user's, gone from their server's answer).
func (tx *Tx) DeleteCrossSigningKey(ctx context.Context, userID, keyType string) error {
	if _, err := tx.exec(ctx, `DELETE FROM e2e_cross_signing_keys WHERE user_id = $1 AND key_type = $2`, userID, keyType); err != nil {
		return fmt.Errorf("deleting a cross-signing key: %w", err)
	}
	return nil
}
