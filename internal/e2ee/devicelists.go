package e2ee

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"matrixhs/storage"
)

// Device list updates from other servers (m.device_list_update and
// m.signing_key_update EDUs), kept as Synapse keeps them: only for users
// this server shares a room with (it hears of no other); an update applies
// on top of the cached list when its prev_id is the update last applied
// (or one of the same EDU's stream); otherwise updates were missed and the
// whole list is fetched again (/user/devices) in the background. Local
// users' /sync then lists the user in device_lists.changed.

// deviceListUpdate is the content of an m.device_list_update EDU.
type deviceListUpdate struct {
	UserID      string            `json:"user_id"`
	DeviceID    string            `json:"device_id"`
	DisplayName json.RawMessage   `json:"device_display_name"`
	StreamID    json.RawMessage   `json:"stream_id"`
	PrevID      []json.RawMessage `json:"prev_id"`
	Deleted     bool              `json:"deleted"`
	Keys        json.RawMessage   `json:"keys"`
	JoinNotice  bool              `json:"org.matrixhs.join_notice"`
}

// joinNoticeField marks the m.device_list_update EDUs this server sends
// when a local user joins a room whose servers shared none with them (the
// spec asks for them then): the receiving servers hear of the user's join
// through the room already, so when it is a server like this one, the
// first fetch of the list it makes does not list the user in local
// users' device_lists.changed a second time. Other servers ignore the
// field; an EDU without it (a real change) is always told.
const joinNoticeField = "org.matrixhs.join_notice"

// joinNoticeSet is the set of users awaiting a first fetch after a join
// notice (in memory: after a restart the fetch is told, a harmless repeat).
type joinNoticeSet struct {
	mu    sync.Mutex
	users map[string]bool
}

func (j *joinNoticeSet) add(userID string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.users == nil {
		j.users = map[string]bool{}
	}
	if len(j.users) < maxJoinNotices {
		j.users[userID] = true
	}
}

// take reports whether the user awaited a first fetch after a join
// notice, and forgets them.
func (j *joinNoticeSet) take(userID string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	ok := j.users[userID]
	delete(j.users, userID)
	return ok
}

// maxJoinNotices bounds the users remembered (a flood of notices).
const maxJoinNotices = 10000

// ReceiveDeviceListUpdate handles an m.device_list_update EDU from origin.
// An error means the EDU was dropped (malformed, or not origin's to send).
func (s *Service) ReceiveDeviceListUpdate(ctx context.Context, origin string, content json.RawMessage) error {
	var u deviceListUpdate
	if err := json.Unmarshal(content, &u); err != nil {
		return fmt.Errorf("malformed m.device_list_update: %w", err)
	}
	if err := remoteUserOf(u.UserID, origin); err != nil {
		return fmt.Errorf("m.device_list_update: %w", err)
	}
	if u.DeviceID == "" || len(u.DeviceID) > 255 {
		return fmt.Errorf("m.device_list_update for %s without a valid device_id", u.UserID)
	}
	streamID, ok := parseStreamID(u.StreamID)
	if !ok {
		return fmt.Errorf("m.device_list_update for %s without a valid stream_id", u.UserID)
	}
	prev := make([]int64, 0, len(u.PrevID))
	for _, raw := range u.PrevID {
		id, ok := parseStreamID(raw)
		if !ok {
			return fmt.Errorf("m.device_list_update for %s with an invalid prev_id", u.UserID)
		}
		prev = append(prev, id)
	}
	device := storage.RemoteDevice{DeviceID: u.DeviceID}
	_ = json.Unmarshal(u.DisplayName, &device.DisplayName)
	if !u.Deleted && !isJSONNull(u.Keys) {
		keys, err := checkRemoteDeviceKeys(u.Keys, u.UserID, u.DeviceID)
		if err != nil {
			return fmt.Errorf("m.device_list_update: %w", err)
		}
		device.KeyJSON = keys
	}
	tracked, err := s.db.SharesRoomWithServer(ctx, u.UserID, s.serverName)
	if err != nil || !tracked {
		return err // no room shared: no one here needs it, and later ones would be missed
	}
	mu := s.userLock(u.UserID)
	mu.Lock()
	defer mu.Unlock()
	state, err := s.db.RemoteDeviceListState(ctx, u.UserID)
	if err != nil {
		return err
	}
	fresh := state.Cached && !state.Stale
	if fresh && (streamID < state.StreamID || streamID == state.StreamID && !follows(prev, state.StreamID)) {
		return nil // already reflected (a list fetched since, or a repeat)
	}
	if !fresh || !follows(prev, state.StreamID) {
		if err := s.db.Write(ctx, func(tx *storage.Tx) error { return tx.MarkRemoteDeviceListStale(ctx, u.UserID) }); err != nil {
			return err
		}
		if u.JoinNotice && len(prev) == 0 && (!state.Cached || state.StreamID == 0) {
			s.joinNotices.add(u.UserID)
		}
		s.resyncSoon(u.UserID)
		return nil
	}
	if !u.Deleted {
		if err := s.roomForDevice(ctx, u.UserID, u.DeviceID); err != nil {
			return err
		}
	}
	return s.db.Write(ctx, func(tx *storage.Tx) error {
		var err error
		if u.Deleted {
			err = tx.DeleteRemoteDevice(ctx, u.UserID, u.DeviceID)
		} else {
			err = tx.SetRemoteDevice(ctx, u.UserID, device)
		}
		if err != nil {
			return err
		}
		if err := tx.SetRemoteDeviceListStreamID(ctx, u.UserID, streamID); err != nil {
			return err
		}
		_, err = tx.MarkDeviceListChanged(ctx, u.UserID, "")
		return err
	})
}

// roomForDevice refuses a new device beyond maxRemoteDevices for a user
// (a server adding devices without end).
func (s *Service) roomForDevice(ctx context.Context, userID, deviceID string) error {
	known, err := s.db.RemoteDevices(ctx, userID, []string{deviceID})
	if err != nil || len(known) > 0 {
		return err
	}
	n, err := s.db.CountRemoteDevices(ctx, userID)
	if err != nil {
		return err
	}
	if n >= maxRemoteDevices {
		return fmt.Errorf("m.device_list_update: %s has %d devices cached already", userID, n)
	}
	return nil
}

// follows reports whether an update with these prev_ids applies on top of
// a list at stream ID last: there is one and every one is last. (Devices
// changed together share a stream ID: the second's prev_id is the first's
// stream ID, which is its own.)
func follows(prev []int64, last int64) bool {
	if len(prev) == 0 {
		return false
	}
	for _, p := range prev {
		if p != last {
			return false
		}
	}
	return true
}

// signingKeyUpdate is the content of an m.signing_key_update EDU.
type signingKeyUpdate struct {
	UserID         string          `json:"user_id"`
	MasterKey      json.RawMessage `json:"master_key"`
	SelfSigningKey json.RawMessage `json:"self_signing_key"`
}

// ReceiveSigningKeyUpdate handles an m.signing_key_update EDU from origin:
// a user's new master and/or self-signing key. An error means the EDU was
// dropped.
func (s *Service) ReceiveSigningKeyUpdate(ctx context.Context, origin string, content json.RawMessage) error {
	var u signingKeyUpdate
	if err := json.Unmarshal(content, &u); err != nil {
		return fmt.Errorf("malformed m.signing_key_update: %w", err)
	}
	if err := remoteUserOf(u.UserID, origin); err != nil {
		return fmt.Errorf("m.signing_key_update: %w", err)
	}
	tracked, err := s.db.SharesRoomWithServer(ctx, u.UserID, s.serverName)
	if err != nil || !tracked {
		return err
	}
	mu := s.userLock(u.UserID)
	mu.Lock()
	defer mu.Unlock()
	var cs remoteCrossSigning
	if !isJSONNull(u.MasterKey) {
		if cs.master, cs.masterPub, err = checkRemoteCrossSigningKey(u.MasterKey, u.UserID, "master", ""); err != nil {
			return fmt.Errorf("m.signing_key_update: %w", err)
		}
	}
	if !isJSONNull(u.SelfSigningKey) {
		masterPub := cs.masterPub
		if masterPub == "" {
			cached, err := s.db.CrossSigningKeys(ctx, u.UserID)
			if err != nil {
				return err
			}
			masterPub = crossSigningPub(cached[storage.KeyTypeMaster])
		}
		if cs.selfSigning, _, err = checkRemoteCrossSigningKey(u.SelfSigningKey, u.UserID, "self_signing", masterPub); err != nil {
			return fmt.Errorf("m.signing_key_update: %w", err)
		}
	}
	return s.db.Write(ctx, func(tx *storage.Tx) error {
		changed, err := applyRemoteCrossSigning(ctx, tx, u.UserID, cs, false)
		if err != nil || !changed {
			return err
		}
		_, err = tx.MarkDeviceListChanged(ctx, u.UserID, "")
		return err
	})
}
