package e2ee

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"matrixhs/storage"
)

// The background work of end-to-end encryption across servers, started
// with Start once there is a Remote:
//
//   - The publisher follows the committed stream (by a cursor saved with
//     what it queues, so nothing is lost or sent twice across restarts):
//     each change of a local device becomes an m.device_list_update (a
//     change of cross-signing keys an m.signing_key_update) for every
//     server sharing a room with the user; a local user joining a room
//     whose servers shared none with them sends those servers their
//     devices; and when this server no longer shares a room with a remote
//     user, their cached device list is forgotten (updates would be
//     missed from then on).
//   - The resyncer fetches again the stale remote device lists: at once
//     when an update reveals a gap, and every resyncEvery for those whose
//     fetch failed.

const (
	// publishBatch bounds the member events read per pass.
	publishBatch = 256
	// resyncEvery is how often stale remote device lists are retried.
	resyncEvery = 30 * time.Second
	// resyncTimeout bounds one background fetch of a device list.
	resyncTimeout = 15 * time.Second
	// resyncQueue bounds the fetches waiting; beyond it they wait for the
	// next retry round.
	resyncQueue = 256
	// staleBatch bounds the stale lists retried per round.
	staleBatch = 100
	// cursorEvery is how far the publisher may move past its saved cursor
	// without writing anything else before it saves it again (a restart
	// rereads at most that much).
	cursorEvery = 1000
)

// background is the state of Start/Stop.
type background struct {
	started bool
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{}
	resync  chan string
	// The publisher's cursor, and the last saved (owned by publishLoop).
	cursor, saved int64
}

// Start starts publishing local device list changes to other servers and
// fetching stale remote device lists, in the background (once; nothing
// without a Remote). Call it before serving requests.
func (s *Service) Start() {
	if s.remote == nil || s.bg.started {
		return
	}
	s.bg.started = true
	s.bg.ctx, s.bg.cancel = context.WithCancel(context.Background())
	s.bg.done = make(chan struct{}, 2)
	go func() { s.publishLoop(); s.bg.done <- struct{}{} }()
	go func() { s.resyncLoop(); s.bg.done <- struct{}{} }()
}

// Stop ends the background work and waits for it (before the database
// closes).
func (s *Service) Stop() {
	if !s.bg.started {
		return
	}
	s.bg.cancel()
	<-s.bg.done
	<-s.bg.done
	s.bg.started = false
}

// resyncSoon asks the resyncer to fetch a user's device list (dropped
// when it is busy: the list is marked stale and retried later).
func (s *Service) resyncSoon(userID string) {
	select {
	case s.bg.resync <- userID:
	default:
	}
}

// publishLoop publishes as the stream advances.
func (s *Service) publishLoop() {
	ctx := s.bg.ctx
	defer s.saveCursor()
	loaded := false
	for {
		changed, upTo := s.db.Changes()
		var err error
		if !loaded {
			s.bg.cursor, err = s.db.DeviceListCursor(ctx)
			s.bg.saved, loaded = s.bg.cursor, err == nil
		}
		if err == nil {
			err = s.publish(ctx, upTo)
		}
		var retry <-chan time.Time
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.log.WithError(err).Warn("publishing device list changes to other servers")
			retry = time.After(time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-retry:
		}
	}
}

// outboundEDU is an EDU to queue.
type outboundEDU struct {
	dests   []string
	typ     string
	content []byte
}

// saveCursor records how far the publisher got when it stops (what it read
// since it last saved wrote nothing).
func (s *Service) saveCursor() {
	if s.bg.cursor <= s.bg.saved {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pos := s.bg.cursor
	if err := s.db.Write(ctx, func(tx *storage.Tx) error { return tx.SetDeviceListCursor(ctx, pos) }); err != nil {
		s.log.WithError(err).Warn("saving the device list cursor")
	}
}

// publish handles the stream up to upTo, a batch at a time; the cursor is
// saved with what a batch queues (or every cursorEvery positions).
func (s *Service) publish(ctx context.Context, upTo int64) error {
	for s.bg.cursor < upTo {
		cursor := s.bg.cursor
		members, err := s.db.MemberChangesAfter(ctx, cursor, upTo, publishBatch)
		if err != nil {
			return err
		}
		next := upTo
		if len(members) == publishBatch {
			next = members[len(members)-1].StreamPos
		}
		changes, err := s.db.DeviceChangesOutbound(ctx, cursor, next)
		if err != nil {
			return err
		}
		edus, published, err := s.planDeviceChanges(ctx, changes)
		if err != nil {
			return err
		}
		joins, err := s.planJoins(ctx, members)
		if err != nil {
			return err
		}
		if err := s.forgetUntracked(ctx, members); err != nil {
			return err
		}
		edus = append(edus, joins...)
		if len(edus) == 0 && len(changes) == 0 && next-s.bg.saved < cursorEvery {
			s.bg.cursor = next
			continue
		}
		err = s.db.Write(ctx, func(tx *storage.Tx) error {
			for _, e := range edus {
				if err := s.remote.QueueEDU(ctx, tx, e.dests, e.typ, e.content); err != nil {
					return err
				}
			}
			for userID, id := range published {
				if err := tx.SetDeviceListPublished(ctx, userID, id); err != nil {
					return err
				}
			}
			if err := tx.DeleteDeviceChangesOutbound(ctx, next); err != nil {
				return err
			}
			return tx.SetDeviceListCursor(ctx, next)
		})
		if err != nil {
			return err
		}
		s.bg.cursor, s.bg.saved = next, next
	}
	return nil
}

// otherServers is servers without this one.
func (s *Service) otherServers(servers []string) []string {
	out := servers[:0:0]
	for _, server := range servers {
		if server != s.serverName && server != "" {
			out = append(out, server)
		}
	}
	return out
}

// planDeviceChanges turns local device changes into EDUs for the servers
// sharing a room with each user, and returns the stream ID each user's
// chain of updates reached.
func (s *Service) planDeviceChanges(ctx context.Context, changes []storage.DeviceChange) ([]outboundEDU, map[string]int64, error) {
	byUser := map[string][]storage.DeviceChange{}
	var users []string
	for _, c := range changes {
		if !s.isLocalUser(c.UserID) {
			continue
		}
		if _, seen := byUser[c.UserID]; !seen {
			users = append(users, c.UserID)
		}
		byUser[c.UserID] = append(byUser[c.UserID], c)
	}
	var out []outboundEDU
	published := map[string]int64{}
	for _, userID := range users {
		servers, err := s.db.ServersSharingRooms(ctx, userID)
		if err != nil {
			return nil, nil, err
		}
		dests := s.otherServers(servers)
		last, err := s.db.DeviceListPublished(ctx, userID)
		if err != nil {
			return nil, nil, err
		}
		for _, c := range byUser[userID] {
			if c.DeviceID == "" {
				content, err := s.signingKeyUpdate(ctx, userID)
				if err != nil {
					return nil, nil, err
				}
				if content != nil && len(dests) > 0 {
					out = append(out, outboundEDU{dests, EDUSigningKeyUpdate, content})
				}
				continue
			}
			var prev []int64
			if last > 0 {
				prev = []int64{last}
			}
			last = c.StreamPos
			if len(dests) == 0 {
				continue // the chain moves on: a server that joins later fetches the list
			}
			content, err := s.deviceListUpdate(ctx, userID, c.DeviceID, c.StreamPos, prev)
			if err != nil {
				return nil, nil, err
			}
			out = append(out, outboundEDU{dests, EDUDeviceListUpdate, content})
		}
		published[userID] = last
	}
	return out, published, nil
}

// deviceListUpdate builds the m.device_list_update of a local device as it
// is now (deleted when it is gone).
func (s *Service) deviceListUpdate(ctx context.Context, userID, deviceID string, streamID int64, prev []int64) ([]byte, error) {
	u := map[string]any{"user_id": userID, "device_id": deviceID, "stream_id": streamID, "prev_id": nonNil(prev)}
	d, err := s.db.Device(ctx, userID, deviceID)
	if errors.Is(err, storage.ErrNotFound) {
		u["deleted"] = true
		return json.Marshal(u)
	}
	if err != nil {
		return nil, err
	}
	if d.DisplayName != "" {
		u["device_display_name"] = d.DisplayName
	}
	keys, err := s.userKeys(ctx, "", userID, []string{deviceID})
	if err != nil {
		return nil, err
	}
	if raw, ok := keys.devices[deviceID]; ok {
		u["keys"] = withoutUnsigned(raw)
	}
	return json.Marshal(u)
}

// withJoinNotice marks a device list update as sent for a join
// (joinNoticeField).
func withJoinNotice(content []byte) ([]byte, error) {
	var u map[string]any
	if err := json.Unmarshal(content, &u); err != nil {
		return nil, err
	}
	u[joinNoticeField] = true
	return json.Marshal(u)
}

// signingKeyUpdate builds a local user's m.signing_key_update (nil when
// they have no master key).
func (s *Service) signingKeyUpdate(ctx context.Context, userID string) ([]byte, error) {
	cs, err := s.crossSigningFor(ctx, "", userID)
	if err != nil || cs.master == nil {
		return nil, err
	}
	u := map[string]any{"user_id": userID, "master_key": cs.master}
	if cs.selfSigning != nil {
		u["self_signing_key"] = cs.selfSigning
	}
	return json.Marshal(u)
}

// planJoins sends the devices of local users who joined a room to the
// room's servers that shared no other room with them (they track the
// user's devices from now on).
func (s *Service) planJoins(ctx context.Context, members []storage.MemberChange) ([]outboundEDU, error) {
	var out []outboundEDU
	for _, m := range members {
		if m.Membership != "join" || m.PrevMembership == "join" || !s.isLocalUser(m.UserID) {
			continue
		}
		servers, err := s.db.ServersJoinedToRoomOnly(ctx, m.UserID, m.RoomNID)
		if err != nil {
			return nil, err
		}
		dests := s.otherServers(servers)
		if len(dests) == 0 {
			continue
		}
		streamID, err := s.db.LatestDeviceListChange(ctx, m.UserID)
		if err != nil {
			return nil, err
		}
		devices, err := s.db.Devices(ctx, m.UserID)
		if err != nil {
			return nil, err
		}
		for _, d := range devices {
			// No prev_id: the servers fetch the whole list.
			content, err := s.deviceListUpdate(ctx, m.UserID, d.DeviceID, streamID, nil)
			if err != nil {
				return nil, err
			}
			if content, err = withJoinNotice(content); err != nil {
				return nil, err
			}
			out = append(out, outboundEDU{dests, EDUDeviceListUpdate, content})
		}
		content, err := s.signingKeyUpdate(ctx, m.UserID)
		if err != nil {
			return nil, err
		}
		if content != nil {
			out = append(out, outboundEDU{dests, EDUSigningKeyUpdate, content})
		}
	}
	return out, nil
}

// forgetUntracked forgets the cached device lists of remote users this
// server no longer shares a room with after the leaves among members.
func (s *Service) forgetUntracked(ctx context.Context, members []storage.MemberChange) error {
	seen := map[string]bool{}
	var candidates []string
	add := func(u string) {
		if !seen[u] {
			seen[u] = true
			candidates = append(candidates, u)
		}
	}
	for _, m := range members {
		if m.PrevMembership != "join" || m.Membership == "join" {
			continue
		}
		if !s.isLocalUser(m.UserID) {
			add(m.UserID)
			continue
		}
		users, err := s.db.TrackedMembersOfRoom(ctx, m.RoomNID)
		if err != nil {
			return err
		}
		for _, u := range users {
			add(u)
		}
	}
	for _, u := range candidates {
		if err := s.forgetIfUntracked(ctx, u); err != nil {
			return err
		}
	}
	return nil
}

// forgetIfUntracked forgets a remote user's cached device list unless this
// server shares a room with them.
func (s *Service) forgetIfUntracked(ctx context.Context, userID string) error {
	if s.isLocalUser(userID) {
		return nil
	}
	mu := s.userLock(userID)
	mu.Lock()
	defer mu.Unlock()
	state, err := s.db.RemoteDeviceListState(ctx, userID)
	if err != nil || !state.Cached {
		return err
	}
	tracked, err := s.db.SharesRoomWithServer(ctx, userID, s.serverName)
	if err != nil || tracked {
		return err
	}
	return s.db.Write(ctx, func(tx *storage.Tx) error { return tx.ForgetRemoteDeviceList(ctx, userID) })
}

// resyncLoop fetches the device lists asked for, and retries the stale
// ones now and then.
func (s *Service) resyncLoop() {
	ctx := s.bg.ctx
	ticker := time.NewTicker(resyncEvery)
	defer ticker.Stop()
	s.retryStale(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case u := <-s.bg.resync:
			s.resyncTracked(ctx, u)
		case <-ticker.C:
			s.retryStale(ctx)
		}
	}
}

// retryStale fetches again the stale device lists.
func (s *Service) retryStale(ctx context.Context) {
	users, err := s.db.StaleRemoteDeviceLists(ctx, staleBatch)
	if err != nil {
		if ctx.Err() == nil {
			s.log.WithError(err).Warn("listing stale remote device lists")
		}
		return
	}
	for _, u := range users {
		if ctx.Err() != nil {
			return
		}
		s.resyncTracked(ctx, u)
	}
}

// resyncTracked fetches a remote user's device list if this server still
// shares a room with them, and forgets it otherwise.
func (s *Service) resyncTracked(ctx context.Context, userID string) {
	tracked, err := s.db.SharesRoomWithServer(ctx, userID, s.serverName)
	if err == nil && !tracked {
		err = s.forgetIfUntracked(ctx, userID)
	} else if err == nil {
		rctx, cancel := context.WithTimeout(ctx, resyncTimeout)
		err = s.resync(rctx, userID)
		cancel()
	}
	if err != nil && ctx.Err() == nil {
		s.log.WithError(err).WithField("user_id", userID).Debug("remote device list still stale")
	}
}

// withoutUnsigned drops the unsigned field of a JSON object.
func withoutUnsigned(raw json.RawMessage) json.RawMessage {
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return raw
	}
	delete(obj, "unsigned")
	b, err := json.Marshal(obj)
	if err != nil {
		return raw
	}
	return b
}

// nonNil is list, or an empty one (JSON [] rather than null).
func nonNil(list []int64) []int64 {
	if list == nil {
		return []int64{}
	}
	return list
}
