package e2ee

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"matrixhs/internal/ids"
	"matrixhs/storage"
)

// MaxToDeviceContentBytes bounds one to-device message's content (as
// Synapse: larger ones could not travel over federation).
const MaxToDeviceContentBytes = 64 << 10

// maxToDeviceEDUBytes is the size up to which a server's messages of one
// request are packed into one m.direct_to_device EDU.
const maxToDeviceEDUBytes = 64 << 10

// EDU types of end-to-end encryption.
const (
	EDUDirectToDevice   = "m.direct_to_device"
	EDUDeviceListUpdate = "m.device_list_update"
	EDUSigningKeyUpdate = "m.signing_key_update"
)

// SendToDevice queues a to-device message for each listed device (device
// "*": all of the user's devices) under one stream position; sync delivers
// them. Messages for other servers' users are queued for their servers
// (m.direct_to_device) in the same write, so a request is delivered
// everywhere or nowhere. A transaction ID the sending device used before
// is not queued again. Contents must be JSON objects of at most
// MaxToDeviceContentBytes; user IDs must be user IDs. Without a Remote,
// messages for other servers' users are dropped (and logged).
func (s *Service) SendToDevice(ctx context.Context, from Device, evType, txnID string, messages map[string]map[string]json.RawMessage) error {
	var msgs []storage.ToDeviceMessage
	remote := map[string]map[string]map[string]json.RawMessage{}
	for _, userID := range sortedKeys(messages) {
		devices := messages[userID]
		server := serverOf(userID)
		if server == "" {
			return refuse(ErrInvalid, "%q is not a user ID", userID)
		}
		for _, deviceID := range sortedKeys(devices) {
			content, err := compactObject(devices[deviceID], userID, deviceID)
			if err != nil {
				return err
			}
			if s.isLocalUser(userID) {
				msgs = append(msgs, storage.ToDeviceMessage{UserID: userID, DeviceID: deviceID, Content: content})
				continue
			}
			if remote[server] == nil {
				remote[server] = map[string]map[string]json.RawMessage{}
			}
			if remote[server][userID] == nil {
				remote[server][userID] = map[string]json.RawMessage{}
			}
			remote[server][userID][deviceID] = content
		}
	}
	if len(remote) > 0 && s.remote == nil {
		s.log.WithField("servers", len(remote)).Warn("dropping to-device messages for remote users: federation is off")
		remote = nil
	}
	now := s.now().UnixMilli()
	return s.db.Write(ctx, func(tx *storage.Tx) error {
		_, dup, err := tx.QueueToDevice(ctx, from.UserID, from.DeviceID, txnID, evType, msgs, now)
		if err != nil || dup {
			return err
		}
		for _, server := range sortedKeys(remote) {
			for _, edu := range toDeviceEDUs(from.UserID, evType, remote[server]) {
				if err := s.remote.QueueEDU(ctx, tx, []string{server}, EDUDirectToDevice, edu); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// compactObject checks a message's content (a JSON object within the
// size bound) and compacts it.
func compactObject(raw json.RawMessage, userID, deviceID string) (json.RawMessage, error) {
	content := bytes.TrimSpace(raw)
	if len(content) == 0 || content[0] != '{' {
		return nil, refuse(ErrMalformed, "message content for %s %s must be an object", userID, deviceID)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, content); err != nil {
		return nil, refuse(ErrMalformed, "bad message content: %v", err)
	}
	if compact.Len() > MaxToDeviceContentBytes {
		return nil, refuse(ErrTooLarge, "to-device message for %s %s is too large (%d > %d bytes)",
			userID, deviceID, compact.Len(), MaxToDeviceContentBytes)
	}
	return compact.Bytes(), nil
}

// toDeviceEDU is the content of an m.direct_to_device EDU.
type toDeviceEDU struct {
	Sender    string                                `json:"sender"`
	Type      string                                `json:"type"`
	MessageID string                                `json:"message_id"`
	Messages  map[string]map[string]json.RawMessage `json:"messages"`
}

// toDeviceEDUs packs one server's messages into EDUs of about
// maxToDeviceEDUBytes at most, each with its own message ID.
func toDeviceEDUs(sender, evType string, messages map[string]map[string]json.RawMessage) [][]byte {
	var out [][]byte
	cur := map[string]map[string]json.RawMessage{}
	size := 0
	flush := func() {
		if len(cur) == 0 {
			return
		}
		b, _ := json.Marshal(toDeviceEDU{Sender: sender, Type: evType, MessageID: newMessageID(), Messages: cur})
		out = append(out, b)
		cur, size = map[string]map[string]json.RawMessage{}, 0
	}
	for _, userID := range sortedKeys(messages) {
		for _, deviceID := range sortedKeys(messages[userID]) {
			content := messages[userID][deviceID]
			n := len(content) + len(userID) + len(deviceID) + 8
			if size > 0 && size+n > maxToDeviceEDUBytes {
				flush()
			}
			if cur[userID] == nil {
				cur[userID] = map[string]json.RawMessage{}
			}
			cur[userID][deviceID] = content
			size += n
		}
	}
	flush()
	return out
}

// newMessageID is a random message_id.
func newMessageID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ReceiveToDevice delivers an m.direct_to_device EDU from origin to the
// local devices it names, once: an EDU whose message_id origin sent before
// is dropped. The sender must be a user of origin and every recipient a
// local user, else the EDU is dropped (an error).
func (s *Service) ReceiveToDevice(ctx context.Context, origin string, content json.RawMessage) error {
	var e struct {
		Sender    string                                `json:"sender"`
		Type      string                                `json:"type"`
		MessageID string                                `json:"message_id"`
		Messages  map[string]map[string]json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(content, &e); err != nil {
		return fmt.Errorf("malformed m.direct_to_device: %w", err)
	}
	if err := remoteUserOf(e.Sender, origin); err != nil {
		return fmt.Errorf("m.direct_to_device: %w", err)
	}
	if e.Type == "" || len(e.Type) > 255 || e.MessageID == "" || len(e.MessageID) > 255 {
		return fmt.Errorf("m.direct_to_device from %s without a valid type and message_id", e.Sender)
	}
	var msgs []storage.ToDeviceMessage
	for _, userID := range sortedKeys(e.Messages) {
		if ids.UserID(userID) != nil || !s.isLocalUser(userID) {
			return fmt.Errorf("m.direct_to_device for %q, not a user of this server", userID)
		}
		for _, deviceID := range sortedKeys(e.Messages[userID]) {
			c, err := compactObject(e.Messages[userID][deviceID], userID, deviceID)
			if err != nil {
				return fmt.Errorf("m.direct_to_device: %w", err)
			}
			msgs = append(msgs, storage.ToDeviceMessage{UserID: userID, DeviceID: deviceID, Content: c})
		}
	}
	now := s.now().UnixMilli()
	return s.db.Write(ctx, func(tx *storage.Tx) error {
		_, _, err := tx.QueueRemoteToDevice(ctx, origin, e.MessageID, e.Sender, e.Type, msgs, now)
		return err
	})
}
