package appservice

// Ephemeral data for appservices that asked for it (receive_ephemeral,
// MSC2409) and their devices (MSC3202). Receipts, to-device messages,
// device list and key count changes are stream rows: each transaction
// takes those of the same window of the stream as its events, so they are
// as durable and ordered as events. Typing and presence live in memory:
// their changes are queued (appservice_queue) as they happen.

import (
	"context"
	"encoding/json"
	"slices"

	"matrixhs/internal/ephemeral"
	"matrixhs/storage"
)

// addStreamEphemeral adds the receipts, to-device messages and device
// changes in (from, to] that concern the appservice.
func (s *Service) addStreamEphemeral(ctx context.Context, sd *sender, body *txnBody, t *storage.AppServiceTxn, from, to int64) error {
	r := sd.reg
	if !r.Ephemeral() && !r.MSC3202 {
		return nil
	}
	e, err := s.db.AppServiceEphemeralRange(ctx, from, to)
	if err != nil {
		return err
	}
	if r.Ephemeral() {
		if err := s.addReceipts(ctx, sd, body, e.Receipts); err != nil {
			return err
		}
		for _, m := range e.ToDevice {
			if !r.IsUserInNamespace(m.UserID) {
				continue
			}
			raw, _ := json.Marshal(map[string]any{"type": m.Type, "sender": m.Sender, "content": json.RawMessage(m.Content),
				"to_user_id": m.UserID, "to_device_id": m.DeviceID})
			body.ToDevice = append(body.ToDevice, raw)
			if r.IsExclusiveUser(m.UserID) && !slices.Contains(t.ToDeviceUsers, m.UserID) {
				t.ToDeviceUsers = append(t.ToDeviceUsers, m.UserID)
			}
		}
	}
	if r.MSC3202 {
		if err := s.addDeviceChanges(ctx, sd, body, e); err != nil {
			return err
		}
	}
	return nil
}

// addReceipts adds the public read receipts of rooms the appservice is
// interested in now, one m.receipt EDU per room.
func (s *Service) addReceipts(ctx context.Context, sd *sender, body *txnBody, receipts []storage.AppServiceReceipt) error {
	type userReceipt struct {
		TS       int64  `json:"ts"`
		ThreadID string `json:"thread_id,omitempty"`
	}
	byRoom := map[int64]map[string]map[string]map[string]userReceipt{}
	var order []int64
	for _, rc := range receipts {
		ok, err := s.roomInterestingNow(ctx, sd, rc.RoomNID)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if byRoom[rc.RoomNID] == nil {
			byRoom[rc.RoomNID] = map[string]map[string]map[string]userReceipt{}
			order = append(order, rc.RoomNID)
		}
		content := byRoom[rc.RoomNID]
		if content[rc.EventID] == nil {
			content[rc.EventID] = map[string]map[string]userReceipt{"m.read": {}}
		}
		content[rc.EventID]["m.read"][rc.UserID] = userReceipt{TS: rc.TS, ThreadID: rc.Thread}
	}
	for _, nid := range order {
		ri, err := s.room(ctx, sd, nid)
		if err != nil {
			return err
		}
		raw, _ := json.Marshal(map[string]any{"type": "m.receipt", "room_id": ri.id, "content": byRoom[nid]})
		body.Ephemeral = append(body.Ephemeral, raw)
	}
	return nil
}

// addDeviceChanges adds the device list changes of the appservice's users
// and of those who share a room with them, and the key counts of its
// users' devices (MSC3202).
func (s *Service) addDeviceChanges(ctx context.Context, sd *sender, body *txnBody, e storage.AppServiceEphemeral) error {
	r := sd.reg
	for _, c := range e.DeviceLists {
		told := r.IsUserInNamespace(c.UserID) || (c.OnlyFor != "" && r.IsUserInNamespace(c.OnlyFor))
		if !told && c.OnlyFor == "" {
			mates, err := s.db.RoomMates(ctx, c.UserID)
			if err != nil {
				return err
			}
			told = slices.ContainsFunc(mates, r.IsUserInNamespace)
		}
		if told {
			raw, _ := json.Marshal(deviceLists{Changed: []string{c.UserID}})
			addQueued(body, storage.AppServiceQueued{Kind: kindDeviceLists, Content: raw})
		}
	}
	for _, c := range e.KeyCounts {
		if !r.IsUserInNamespace(c.UserID) {
			continue
		}
		counts, fallback, err := s.db.DeviceKeyCounts(ctx, c.UserID, c.DeviceID)
		if err != nil {
			return err
		}
		raw, _ := json.Marshal(map[string]any{"user_id": c.UserID, "device_id": c.DeviceID,
			"one_time_keys_count": counts, "unused_fallback_key_types": fallback})
		addQueued(body, storage.AppServiceQueued{Kind: kindKeyCounts, Content: raw})
	}
	return nil
}

// roomInterestingNow reports whether the appservice is interested in a
// room as it is now: by ID or alias, or a user of its namespaces joined.
func (s *Service) roomInterestingNow(ctx context.Context, sd *sender, roomNID int64) (bool, error) {
	ri, err := s.room(ctx, sd, roomNID)
	if err != nil || ri.interested {
		return ri.interested, err
	}
	members, err := s.db.JoinedMembersNow(ctx, roomNID)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(members, sd.reg.IsUserInNamespace), nil
}

// Listening to typing and presence (ephemeral.Federation).

// maxPendingChanges bounds the typing and presence changes waiting to be
// queued; beyond it new ones are dropped (they are soon stale anyway).
const maxPendingChanges = 1024

type change struct {
	roomID, userID string // roomID "" for presence
}

// AttachEphemeral makes the appservices that asked for ephemeral data hear
// of typing and presence changes (also those a reload adds). Call before
// Start.
func (s *Service) AttachEphemeral(eph *ephemeral.Service) {
	s.eph = eph
	s.changes = make(chan change, maxPendingChanges)
	eph.AddListener(ephemeralListener{s})
	eph.SetRemoteListener(ephemeralListener{s})
}

type ephemeralListener struct{ s *Service }

func (l ephemeralListener) TypingChanged(roomID, userID string) { l.s.pend(change{roomID, userID}) }
func (l ephemeralListener) ReceiptStored(ephemeral.Receipt)     {}
func (l ephemeralListener) PresenceChanged(userID string)       { l.s.pend(change{"", userID}) }

// Other servers' users' typing and presence reach appservices too.
func (l ephemeralListener) RemoteTypingChanged(roomID, userID string) {
	l.s.pend(change{roomID, userID})
}
func (l ephemeralListener) RemotePresenceChanged(userID string) { l.s.pend(change{"", userID}) }

func (s *Service) pend(c change) {
	if !slices.ContainsFunc(s.All(), (*Registration).Ephemeral) {
		return
	}
	select {
	case s.changes <- c:
	default:
		s.log.Warn("appservices: too many typing and presence changes pending: dropping one")
	}
}

// runChanges queues typing and presence EDUs for the appservices they
// concern.
func (s *Service) runChanges() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case c := <-s.changes:
			if err := s.queueChange(c); err != nil && s.ctx.Err() == nil {
				s.log.WithError(err).Warn("queueing a typing or presence change for appservices")
			}
		}
	}
}

func (s *Service) queueChange(c change) error {
	ctx := s.ctx
	var edu []byte
	var concerned func(*Registration) (bool, error)
	key := "m.presence " + c.userID
	if c.roomID != "" {
		key = "m.typing " + c.roomID
		room, err := s.db.Room(ctx, c.roomID)
		if err != nil {
			return err
		}
		users, _ := s.eph.Typing(c.roomID, 0)
		if users == nil {
			users = []string{}
		}
		edu, _ = json.Marshal(map[string]any{"type": "m.typing", "room_id": c.roomID, "content": map[string]any{"user_ids": users}})
		members, err := s.db.JoinedMembersNow(ctx, room.NID)
		if err != nil {
			return err
		}
		concerned = func(r *Registration) (bool, error) {
			if r.IsRoomInNamespace(c.roomID) || slices.ContainsFunc(members, r.IsUserInNamespace) {
				return true, nil
			}
			aliases, err := s.db.RoomAliases(ctx, room.NID)
			return slices.ContainsFunc(aliases, r.IsAliasInNamespace), err
		}
	} else {
		p, _ := s.eph.Presence(c.userID)
		edu, _ = json.Marshal(map[string]any{"type": "m.presence", "sender": c.userID, "content": p})
		mates, err := s.db.RoomMates(ctx, c.userID)
		if err != nil {
			return err
		}
		concerned = func(r *Registration) (bool, error) {
			return r.IsUserInNamespace(c.userID) || slices.ContainsFunc(mates, r.IsUserInNamespace), nil
		}
	}
	var to []string
	for _, r := range s.All() {
		if !r.Ephemeral() || r.PushURL() == "" {
			continue
		}
		ok, err := concerned(r)
		if err != nil {
			return err
		}
		if ok {
			to = append(to, r.ID)
		}
	}
	if len(to) == 0 {
		return nil
	}
	err := s.write(func(ctx context.Context, tx *storage.Tx) error {
		for _, id := range to {
			if err := tx.QueueAppService(ctx, id, kindEphemeral, key, edu); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range to {
		s.poke(id)
	}
	return nil
}
