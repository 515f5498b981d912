package storage

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
)

// toDeviceTxnLifetime is how long a /sendToDevice transaction ID is
// remembered: long enough for any client retry.
const toDeviceTxnLifetime = 7 * 24 * 60 * 60 * 1000 // ms

// ToDeviceMessage is one message of a /sendToDevice request; DeviceID "*"
// means every device of the user.
type ToDeviceMessage struct {
	UserID   string
	DeviceID string
	Content  []byte
}

// ToDeviceEvent is a queued message as /sync delivers it.
type ToDeviceEvent struct {
	StreamPos int64
	Sender    string
	Type      string
	Content   []byte
}

// QueueToDevice stores the messages of one /sendToDevice request under one
// stream position. Messages for devices that do not exist are dropped; an
// explicitly named device wins over "*". dup reports a transaction ID the
// sending device already used (nothing is stored again).
func (tx *Tx) QueueToDevice(ctx context.Context, sender, senderDevice, txnID, typ string, msgs []ToDeviceMessage, nowMS int64) (queued int, dup bool, err error) {
	res, err := tx.exec(ctx, `INSERT INTO e2e_to_device_txns (user_id, device_id, txn_id, ts) VALUES ($1, $2, $3, $4)
		ON CONFLICT DO NOTHING`, sender, senderDevice, txnID, nowMS)
	if err != nil {
		return 0, false, fmt.Errorf("saving to-device transaction: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return 0, true, nil
	}
	if _, err := tx.exec(ctx, `DELETE FROM e2e_to_device_txns WHERE user_id = $1 AND device_id = $2 AND ts < $3`,
		sender, senderDevice, nowMS-toDeviceTxnLifetime); err != nil {
		return 0, false, fmt.Errorf("pruning to-device transactions: %w", err)
	}
	n, err := tx.deliverToDevice(ctx, sender, typ, msgs)
	return n, false, err
}

// QueueRemoteToDevice stores the messages of an m.direct_to_device EDU from
// another server under one stream position, as QueueToDevice does. dup
// reports a message ID the origin already used (nothing is stored again).
func (tx *Tx) QueueRemoteToDevice(ctx context.Context, origin, messageID, sender, typ string, msgs []ToDeviceMessage, nowMS int64) (queued int, dup bool, err error) {
	res, err := tx.exec(ctx, `INSERT INTO e2e_to_device_inbound (origin, message_id, ts) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`, origin, messageID, nowMS)
	if err != nil {
		return 0, false, fmt.Errorf("saving to-device message ID: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return 0, true, nil
	}
	if _, err := tx.exec(ctx, `DELETE FROM e2e_to_device_inbound WHERE origin = $1 AND ts < $2`,
		origin, nowMS-toDeviceTxnLifetime); err != nil {
		return 0, false, fmt.Errorf("pruning to-device message IDs: %w", err)
	}
	n, err := tx.deliverToDevice(ctx, sender, typ, msgs)
	return n, false, err
}

// deliverToDevice queues messages for their devices under one stream
// position and returns how many were queued.
func (tx *Tx) deliverToDevice(ctx context.Context, sender, typ string, msgs []ToDeviceMessage) (int, error) {
	// Resolve the targets: explicit device IDs first, then "*".
	type target struct{ user, device string }
	content := map[target][]byte{}
	var order []target
	explicit := map[target]bool{}
	for _, m := range msgs {
		if m.DeviceID == "*" {
			continue
		}
		t := target{m.UserID, m.DeviceID}
		if _, err := tx.Device(ctx, m.UserID, m.DeviceID); err != nil {
			if errors.Is(err, ErrNotFound) {
				continue
			}
			return 0, err
		}
		if _, seen := content[t]; !seen {
			order = append(order, t)
		}
		content[t] = m.Content
		explicit[t] = true
	}
	for _, m := range msgs {
		if m.DeviceID != "*" {
			continue
		}
		ids, err := tx.deviceIDs(ctx, m.UserID)
		if err != nil {
			return 0, err
		}
		for _, id := range ids {
			t := target{m.UserID, id}
			if explicit[t] {
				continue
			}
			if _, seen := content[t]; !seen {
				order = append(order, t)
			}
			content[t] = m.Content
		}
	}
	if len(order) == 0 {
		return 0, nil
	}
	pos := tx.NextStreamPos()
	for _, t := range order {
		tx.WakeUsers(t.user)
		if _, err := tx.exec(ctx, `INSERT INTO e2e_to_device (user_id, device_id, stream_pos, sender, type, content)
			VALUES ($1, $2, $3, $4, $5, $6)`, t.user, t.device, pos, sender, typ, string(content[t])); err != nil {
			return 0, fmt.Errorf("queueing to-device message: %w", err)
		}
	}
	return len(order), nil
}

func (tx *Tx) deviceIDs(ctx context.Context, userID string) ([]string, error) {
	rows, err := tx.q().QueryContext(ctx, `SELECT device_id FROM devices WHERE user_id = $1`, userID)
	if err != nil {
		return nil, fmt.Errorf("listing devices: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	sort.Strings(out)
	return out, rows.Err()
}

// ToDeviceMessages returns a device's queued messages with positions in
// (from, to], in the order they were sent.
func (db *DB) ToDeviceMessages(ctx context.Context, userID, deviceID string, from, to int64) ([]ToDeviceEvent, error) {
	return db.ToDeviceMessagesLimit(ctx, userID, deviceID, from, to, -1)
}

// ToDeviceMessagesLimit is ToDeviceMessages returning at most limit
// messages (the oldest; a negative limit is no limit). A device has at most
// one message per position, so a page ends at a position boundary.
func (db *DB) ToDeviceMessagesLimit(ctx context.Context, userID, deviceID string, from, to int64, limit int) ([]ToDeviceEvent, error) {
	if limit < 0 {
		limit = math.MaxInt32 // PostgreSQL refuses SQLite's LIMIT -1
	}
	rows, err := db.q().QueryContext(ctx, `SELECT stream_pos, sender, type, content FROM e2e_to_device
		WHERE user_id = $1 AND device_id = $2 AND stream_pos > $3 AND stream_pos <= $4 ORDER BY stream_pos, id LIMIT $5`,
		userID, deviceID, from, to, limit)
	if err != nil {
		return nil, fmt.Errorf("reading to-device messages: %w", err)
	}
	defer rows.Close()
	var out []ToDeviceEvent
	for rows.Next() {
		var e ToDeviceEvent
		var content string
		if err := rows.Scan(&e.StreamPos, &e.Sender, &e.Type, &content); err != nil {
			return nil, err
		}
		e.Content = []byte(content)
		out = append(out, e)
	}
	return out, rows.Err()
}

// HasToDeviceUpTo reports whether the device has messages at or before upTo
// (so an acknowledging /sync knows whether there is anything to delete).
func (db *DB) HasToDeviceUpTo(ctx context.Context, userID, deviceID string, upTo int64) (bool, error) {
	var n int
	err := db.q().QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM e2e_to_device
		WHERE user_id = $1 AND device_id = $2 AND stream_pos <= $3 LIMIT 1) AS found`, userID, deviceID, upTo).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("checking to-device messages: %w", err)
	}
	return n > 0, nil
}

// DeleteToDeviceUpTo deletes the device's messages the client acknowledged
// (positions at or before upTo).
func (tx *Tx) DeleteToDeviceUpTo(ctx context.Context, userID, deviceID string, upTo int64) error {
	_, err := tx.exec(ctx, `DELETE FROM e2e_to_device WHERE user_id = $1 AND device_id = $2 AND stream_pos <= $3`,
		userID, deviceID, upTo)
	if err != nil {
		return fmt.Errorf("deleting to-device messages: %w", err)
	}
	return nil
}
