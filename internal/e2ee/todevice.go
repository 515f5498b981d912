package e2ee

import (
	"bytes"
	"context"
	"encoding/json"
	"sort"

	"matrixhs/storage"
)

// SendToDevice queues a to-device message for each listed device (device
// "*": all of the user's devices) under one stream position; sync delivers
// them. A transaction ID the sending device used before is not queued
// again. Contents must be JSON objects; user IDs must be user IDs. Users
// of other servers are reached through the Remote; without one their
// messages are dropped (and logged).
func (s *Service) SendToDevice(ctx context.Context, from Device, evType, txnID string, messages map[string]map[string]json.RawMessage) error {
	users := make([]string, 0, len(messages))
	for u := range messages {
		users = append(users, u)
	}
	sort.Strings(users)
	var msgs []storage.ToDeviceMessage
	remote := map[string]map[string]map[string]json.RawMessage{}
	for _, userID := range users {
		devices := messages[userID]
		server := serverOf(userID)
		if server == "" {
			return refuse(ErrInvalid, "%q is not a user ID", userID)
		}
		if !s.isLocalUser(userID) {
			if remote[server] == nil {
				remote[server] = map[string]map[string]json.RawMessage{}
			}
			remote[server][userID] = devices
			continue
		}
		ids := make([]string, 0, len(devices))
		for d := range devices {
			ids = append(ids, d)
		}
		sort.Strings(ids)
		for _, deviceID := range ids {
			content := bytes.TrimSpace(devices[deviceID])
			if len(content) == 0 || content[0] != '{' {
				return refuse(ErrMalformed, "message content for %s %s must be an object", userID, deviceID)
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, content); err != nil {
				return refuse(ErrMalformed, "bad message content: %v", err)
			}
			msgs = append(msgs, storage.ToDeviceMessage{UserID: userID, DeviceID: deviceID, Content: compact.Bytes()})
		}
	}
	now := s.now().UnixMilli()
	err := s.db.Write(ctx, func(tx *storage.Tx) error {
		_, _, err := tx.QueueToDevice(ctx, from.UserID, from.DeviceID, txnID, evType, msgs, now)
		return err
	})
	if err != nil {
		return err
	}
	s.sendRemote(ctx, from, evType, txnID, remote)
	return nil
}

// sendRemote hands messages for other servers' users to the Remote, or
// drops them when there is none (or it fails: to-device messages are best
// effort, and the client's retry would be a duplicate for local devices).
func (s *Service) sendRemote(ctx context.Context, from Device, evType, txnID string, remote map[string]map[string]map[string]json.RawMessage) {
	for server, users := range remote {
		n := 0
		for _, devices := range users {
			n += len(devices)
		}
		log := s.log.WithField("messages", n).WithField("type", evType).WithField("server", server)
		if s.remote == nil {
			log.Warn("dropping to-device messages for remote users: federation is not supported yet")
			continue
		}
		// The message ID is unique per sender device and transaction.
		if err := s.remote.SendToDevice(ctx, server, from.UserID, evType, from.DeviceID+"|"+txnID, users); err != nil {
			log.WithError(err).Warn("dropping to-device messages for remote users")
		}
	}
}
