package syncapi

import (
	"context"
	"strconv"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/clientapi/internal/roomview"
	"matrixhs/internal/accounts"
	"matrixhs/internal/e2ee"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// ssRoomResult is one room of a sliding-sync response (out nil: nothing to
// send) and the members the client now holds under $LAZY.
type ssRoomResult struct {
	out  *SSRoom
	lazy map[string]bool
}

// ssRoom builds a room's entry: whole when initial, else what changed after
// held.pos.
func (a *API) ssRoom(ctx context.Context, s *accounts.Session, v *ssRoomView, held ssRoomSent, initial bool, upTo int64,
	ignored map[string]bool) (ssRoomResult, error) {
	res := ssRoomResult{lazy: map[string]bool{}}
	if !initial {
		for u := range held.lazy {
			res.lazy[u] = true
		}
	}
	if v.m.Membership == spec.Invite {
		if !initial {
			return res, nil
		}
		st, err := a.strippedState(ctx, v.m)
		if err != nil {
			return res, err
		}
		res.out = &SSRoom{Initial: true, InviteState: st, BumpStamp: v.bump}
		return res, nil
	}
	info, err := a.db.Room(ctx, v.m.RoomID)
	if err != nil {
		return res, err
	}
	viewer, err := a.rooms.Viewer(ctx, info.NID, s.UserID)
	if err != nil {
		return res, err
	}
	acc := &roomview.Access{Info: info, Viewer: viewer, Ignored: ignored}
	to := upTo
	if v.m.Membership != spec.Join {
		to = min(upTo, v.m.StreamPos) // a room left: up to the leave
		acc.UpTo = to
	}
	from := held.pos
	if initial {
		from = 0
	}
	limit := v.config.limit()
	var events []storage.Event
	limited := false
	if limit > 0 {
		if events, limited, err = a.timeline(ctx, acc, nil, from, to, limit); err != nil {
			return res, err
		}
	} else if !initial {
		// Without a timeline the client still learns that the room moved.
		probe, more, err := a.timeline(ctx, acc, nil, from, to, 1)
		if err != nil {
			return res, err
		}
		limited = len(probe) > 0 || more
	}
	start := to
	if len(events) > 0 {
		start = events[0].StreamPos - 1
	}

	// required_state: whole when initial; otherwise the keys that changed,
	// which the timeline shows unless it was cut short.
	after, err := a.db.StateAt(ctx, info.NID, to)
	if err != nil {
		return res, err
	}
	want := newStateSelector(v.config.RequiredState, s.UserID)
	changedKeys := map[storage.StateKey]bool{}
	stateChanged := initial
	if !initial {
		for _, e := range events {
			if e.StateKey != nil {
				changedKeys[storage.StateKey{Type: e.Type, StateKey: *e.StateKey}] = true
				stateChanged = true
			}
		}
		if limited {
			before, err := a.db.StateAt(ctx, info.NID, from)
			if err != nil {
				return res, err
			}
			for k, nid := range after {
				if before[k] != nid {
					changedKeys[k] = true
					stateChanged = true
				}
			}
			for k := range before {
				if _, ok := after[k]; !ok {
					stateChanged = true
				}
			}
		}
	}
	var nids []int64
	for k, nid := range after {
		if (initial || changedKeys[k]) && want.matches(k) {
			nids = append(nids, nid)
		}
	}
	if want.lazy {
		// Members of the timeline's senders the client does not hold yet.
		for _, e := range events {
			if res.lazy[e.Sender] {
				continue
			}
			res.lazy[e.Sender] = true
			if nid, ok := after[storage.StateKey{Type: spec.MRoomMember, StateKey: e.Sender}]; ok {
				nids = append(nids, nid)
			}
		}
	}
	state, err := a.db.EventsByNID(ctx, dedupNIDs(nids))
	if err != nil {
		return res, err
	}

	unread, _, err := a.db.UnreadCounts(ctx, info.NID, s.UserID, false, upTo)
	if err != nil {
		return res, err
	}
	out := &SSRoom{Initial: initial, BumpStamp: v.bump, Limited: limited,
		SSCounts: &SSCounts{NotificationCount: unread.Notifications, HighlightCount: unread.Highlights}}
	if len(events) > 0 || initial {
		out.Timeline = a.view.FilteredEvents(ctx, events, s.DeviceID, nil)
		out.PrevBatch = roomview.MakeToken(start)
	}
	if !initial {
		numLive := len(events)
		out.NumLive = &numLive
	}
	if len(state) > 0 || initial {
		out.RequiredState = a.view.FilteredEvents(ctx, state, s.DeviceID, nil)
	}
	if stateChanged {
		if out.SSRoomMeta, err = a.ssRoomMeta(ctx, info.NID, after, s.UserID); err != nil {
			return res, err
		}
	}
	res.out = out
	return res, nil
}

// ssRoomMeta is the room's name, avatar, heroes and member counts.
func (a *API) ssRoomMeta(ctx context.Context, roomNID int64, state map[storage.StateKey]int64, userID string) (*SSRoomMeta, error) {
	var nids []int64
	for _, k := range []storage.StateKey{{Type: spec.MRoomName}, {Type: "m.room.avatar"}} {
		if nid, ok := state[k]; ok {
			nids = append(nids, nid)
		}
	}
	events, err := a.db.EventsByNID(ctx, nids)
	if err != nil {
		return nil, err
	}
	meta := &SSRoomMeta{}
	for _, e := range events {
		switch e.Type {
		case spec.MRoomName:
			meta.Name = roomview.ContentString(e.JSON, "name")
		case "m.room.avatar":
			meta.Avatar = roomview.ContentString(e.JSON, "url")
		}
	}
	joined, invited, heroEvents, err := a.memberSummary(ctx, roomNID, userID)
	if err != nil {
		return nil, err
	}
	meta.Heroes = make([]SSHero, 0, len(heroEvents))
	for _, e := range heroEvents {
		meta.Heroes = append(meta.Heroes, SSHero{UserID: *e.StateKey,
			DisplayName: roomview.ContentString(e.JSON, "displayname"), AvatarURL: roomview.ContentString(e.JSON, "avatar_url")})
	}
	meta.JoinedCount, meta.InvitedCount = joined, invited
	return meta, nil
}

// stateSelector is a required_state list: [type, state_key] pairs where
// "*" matches anything, "$ME" is the user and ["m.room.member", "$LAZY"]
// asks for the members of the timeline's senders.
type stateSelector struct {
	exact    map[storage.StateKey]bool
	anyKey   map[string]bool // type with "*"
	allState bool
	anyType  map[string]bool // "*" with a state key
	lazy     bool
}

func newStateSelector(pairs [][]string, userID string) stateSelector {
	s := stateSelector{exact: map[storage.StateKey]bool{}, anyKey: map[string]bool{}, anyType: map[string]bool{}}
	for _, p := range pairs {
		typ, key := p[0], p[1]
		if key == "$ME" {
			key = userID
		}
		switch {
		case typ == "*" && key == "*":
			s.allState = true
		case typ == "*":
			s.anyType[key] = true
		case key == "*":
			s.anyKey[typ] = true
		case typ == spec.MRoomMember && key == "$LAZY":
			s.lazy = true
		default:
			s.exact[storage.StateKey{Type: typ, StateKey: key}] = true
		}
	}
	return s
}

func (s stateSelector) matches(k storage.StateKey) bool {
	return s.allState || s.exact[k] || s.anyKey[k.Type] || s.anyType[k.StateKey]
}

func dedupNIDs(nids []int64) []int64 {
	seen := map[int64]bool{}
	out := nids[:0:0]
	for _, n := range nids {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// ssExtensions builds the extensions of a response: to_device and e2ee for
// the device, account data, receipts and typing for the rooms in view.
func (a *API) ssExtensions(ctx context.Context, s *accounts.Session, p *ssParams, prev *ssSent, since, sinceEph, upTo int64,
	views map[string]*ssRoomView, initialRooms map[string]bool, changedRooms map[int64]bool, globalAD []AccountDataEvent,
	roomAD map[string][]AccountDataEvent) (SSExtensions, bool, error) {
	var out SSExtensions
	changed := false
	on := func(b *bool) bool { return b != nil && *b }
	dev := e2ee.Device{UserID: s.UserID, DeviceID: s.DeviceID}
	var err error
	if on(p.ext.ToDevice.Enabled) {
		if out.ToDevice, err = a.ssToDevice(ctx, dev, p, upTo); err != nil {
			return out, false, err
		}
		changed = changed || len(out.ToDevice.Events) > 0
	}
	if on(p.ext.E2EE.Enabled) {
		if out.E2EE, err = a.ssE2EE(ctx, dev, prev, since, upTo); err != nil {
			return out, false, err
		}
		changed = changed || len(out.E2EE.DeviceLists.Changed) > 0 || len(out.E2EE.DeviceLists.Left) > 0
	}
	if on(p.ext.AccountData.Enabled) {
		if out.AccountData, err = a.ssAccountData(ctx, s.UserID, prev, since, upTo, views, initialRooms, globalAD, roomAD); err != nil {
			return out, false, err
		}
		changed = changed || (prev != nil && (len(out.AccountData.Global) > 0 || len(out.AccountData.Rooms) > 0))
	}
	receiptsOn, typingOn := on(p.ext.Receipts.Enabled), on(p.ext.Typing.Enabled)
	if !receiptsOn && !typingOn {
		return out, changed, nil
	}
	receipts, typing := map[string]EphemeralEvent{}, map[string]EphemeralEvent{}
	for roomID, v := range views {
		if v.m.Membership != spec.Join {
			continue
		}
		fresh := initialRooms[roomID]
		if receiptsOn && (fresh || prev == nil || changedRooms[v.m.RoomNID]) {
			from := since
			if fresh {
				from = 0
			}
			rs, err := a.eph.RoomReceipts(ctx, v.m.RoomNID, from, upTo, s.UserID)
			if err != nil {
				return out, false, err
			}
			if rs != nil {
				receipts[roomID] = receiptEvent(rs)
			}
		}
		if typingOn {
			sinceT := sinceEph
			if fresh {
				sinceT = 0
			}
			if users, ch := a.eph.Typing(roomID, sinceT); ch || (fresh && len(users) > 0) {
				typing[roomID] = typingEvent(nonNil(users))
			}
		}
	}
	if receiptsOn {
		out.Receipts = &SSRoomsEphemeral{Rooms: receipts}
		changed = changed || (prev != nil && len(receipts) > 0)
	}
	if typingOn {
		out.Typing = &SSRoomsEphemeral{Rooms: typing}
		changed = changed || (prev != nil && len(typing) > 0)
	}
	return out, changed, nil
}

// ssToDevice is the to_device extension: a page of the device's messages
// after the client's own token (whose messages it thereby acknowledges).
func (a *API) ssToDevice(ctx context.Context, dev e2ee.Device, p *ssParams, upTo int64) (*SSToDevice, error) {
	var tdSince int64
	if p.ext.ToDevice.Since != nil && *p.ext.ToDevice.Since != "" {
		n, err := strconv.ParseInt(*p.ext.ToDevice.Since, 10, 64)
		if err != nil || n < 0 {
			return nil, errInvalidToDeviceSince
		}
		tdSince = min(n, upTo)
	}
	if err := a.keys.AckToDevice(ctx, dev, tdSince); err != nil {
		return nil, err
	}
	limit := p.ext.toDeviceLimit()
	msgs, err := a.keys.ToDevice(ctx, dev, tdSince, upTo, limit)
	if err != nil {
		return nil, err
	}
	next := max(upTo, tdSince)
	switch {
	case limit == 0:
		next = tdSince // nothing taken, nothing acknowledged
	case len(msgs) == limit:
		// A full page: the rest follows once the client acknowledges
		// this one (one message per position, so none is skipped).
		next = msgs[len(msgs)-1].StreamPos
	}
	return &SSToDevice{NextBatch: strconv.FormatInt(next, 10), Events: toDeviceEvents(msgs)}, nil
}

// ssE2EE is the e2ee extension: device-list changes since the last
// response (none for a new connection) and the device's key counts.
func (a *API) ssE2EE(ctx context.Context, dev e2ee.Device, prev *ssSent, since, upTo int64) (*SSE2EE, error) {
	out := &SSE2EE{DeviceLists: DeviceLists{Changed: []string{}, Left: []string{}}}
	var err error
	if prev != nil {
		if out.DeviceLists.Changed, out.DeviceLists.Left, err = a.keys.DeviceListChanges(ctx, dev.UserID, since, upTo); err != nil {
			return nil, err
		}
	}
	if out.OneTimeKeysCount, out.UnusedFallbackKeyTypes, err = a.keys.KeyCounts(ctx, dev); err != nil {
		return nil, err
	}
	return out, nil
}

// ssAccountData is the account_data extension: a new connection gets all
// global account data; rooms new to the client get all of theirs, rooms it
// holds what changed.
func (a *API) ssAccountData(ctx context.Context, userID string, prev *ssSent, since, upTo int64, views map[string]*ssRoomView,
	initialRooms map[string]bool, globalAD []AccountDataEvent, roomAD map[string][]AccountDataEvent) (*SSAccountData, error) {
	global := globalAD
	rooms := map[string][]AccountDataEvent{}
	for roomID, evs := range roomAD {
		if views[roomID] != nil && !initialRooms[roomID] {
			rooms[roomID] = evs
		}
	}
	var all []storage.AccountData
	var err error
	if prev == nil {
		all, err = a.db.AccountDataChanges(ctx, userID, 0, upTo)
	} else if len(initialRooms) > 0 {
		ids := make([]string, 0, len(initialRooms))
		for id := range initialRooms {
			ids = append(ids, id)
		}
		all, err = a.db.RoomAccountData(ctx, userID, ids, upTo)
	}
	if err != nil {
		return nil, err
	}
	if prev == nil {
		global = nil
	}
	for _, ad := range all {
		ev := AccountDataEvent{Type: ad.Type, Content: ad.Content}
		switch {
		case ad.RoomID == "" && prev == nil:
			global = append(global, ev)
		case ad.RoomID != "" && initialRooms[ad.RoomID]:
			rooms[ad.RoomID] = append(rooms[ad.RoomID], ev)
		}
	}
	if pos, err := a.db.PushRulesPos(ctx, userID); err != nil {
		return nil, err
	} else if prev == nil || (pos > since && pos <= upTo) {
		rules, err := a.users.PushRules(ctx, userID)
		if err != nil {
			return nil, err
		}
		global = append(global, pushRulesEvent(rules))
	}
	return &SSAccountData{Global: nonNil(global), Rooms: rooms}, nil
}

var errInvalidToDeviceSince = httputil.InvalidParam("extensions.to_device.since is not a token this server gave")
