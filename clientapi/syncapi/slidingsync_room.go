package syncapi

import (
	"context"
	"encoding/json"
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
	out  map[string]any
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
		res.out = map[string]any{"initial": true, "invite_state": st, "bump_stamp": v.bump}
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
	out := map[string]any{
		"bump_stamp":         v.bump,
		"notification_count": unread.Notifications,
		"highlight_count":    unread.Highlights,
	}
	if initial {
		out["initial"] = true
	}
	if len(events) > 0 || initial {
		out["timeline"] = a.view.FilteredEvents(ctx, events, s.DeviceID, nil)
		out["prev_batch"] = roomview.MakeToken(start)
	}
	if limited {
		out["limited"] = true
	}
	if !initial {
		out["num_live"] = len(events)
	}
	if len(state) > 0 || initial {
		out["required_state"] = a.view.FilteredEvents(ctx, state, s.DeviceID, nil)
	}
	if stateChanged {
		if err := a.ssRoomMeta(ctx, info.NID, after, s.UserID, out); err != nil {
			return res, err
		}
	}
	res.out = out
	return res, nil
}

// ssRoomMeta adds the room's name, avatar, heroes and member counts.
func (a *API) ssRoomMeta(ctx context.Context, roomNID int64, state map[storage.StateKey]int64, userID string, out map[string]any) error {
	var nids []int64
	for _, k := range []storage.StateKey{{Type: spec.MRoomName}, {Type: "m.room.avatar"}} {
		if nid, ok := state[k]; ok {
			nids = append(nids, nid)
		}
	}
	events, err := a.db.EventsByNID(ctx, nids)
	if err != nil {
		return err
	}
	for _, e := range events {
		switch e.Type {
		case spec.MRoomName:
			if name := roomview.ContentString(e.JSON, "name"); name != "" {
				out["name"] = name
			}
		case "m.room.avatar":
			if url := roomview.ContentString(e.JSON, "url"); url != "" {
				out["avatar"] = url
			}
		}
	}
	joined, invited, heroEvents, err := a.memberSummary(ctx, roomNID, userID)
	if err != nil {
		return err
	}
	heroes := []map[string]any{}
	for _, e := range heroEvents {
		h := map[string]any{"user_id": *e.StateKey}
		if n := roomview.ContentString(e.JSON, "displayname"); n != "" {
			h["displayname"] = n
		}
		if u := roomview.ContentString(e.JSON, "avatar_url"); u != "" {
			h["avatar_url"] = u
		}
		heroes = append(heroes, h)
	}
	out["joined_count"] = joined
	out["invited_count"] = invited
	out["heroes"] = heroes
	return nil
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
	views map[string]*ssRoomView, initialRooms map[string]bool, changedRooms map[int64]bool, globalAD []json.RawMessage,
	roomAD map[string][]json.RawMessage) (map[string]any, bool, error) {
	out := map[string]any{}
	changed := false
	on := func(b *bool) bool { return b != nil && *b }

	if on(p.ext.ToDevice.Enabled) {
		var tdSince int64
		if p.ext.ToDevice.Since != nil && *p.ext.ToDevice.Since != "" {
			n, err := strconv.ParseInt(*p.ext.ToDevice.Since, 10, 64)
			if err != nil || n < 0 {
				return nil, false, errInvalidToDeviceSince
			}
			tdSince = min(n, upTo)
		}
		dev := e2ee.Device{UserID: s.UserID, DeviceID: s.DeviceID}
		if err := a.keys.AckToDevice(ctx, dev, tdSince); err != nil {
			return nil, false, err
		}
		limit := p.ext.toDeviceLimit()
		msgs, err := a.keys.ToDevice(ctx, dev, tdSince, upTo, limit)
		if err != nil {
			return nil, false, err
		}
		events := make([]map[string]any, 0, len(msgs))
		for _, m := range msgs {
			events = append(events, map[string]any{"type": m.Type, "sender": m.Sender, "content": json.RawMessage(m.Content)})
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
		out["to_device"] = map[string]any{"next_batch": strconv.FormatInt(next, 10), "events": events}
		changed = changed || len(events) > 0
	}

	if on(p.ext.E2EE.Enabled) {
		changedUsers, left := []string{}, []string{}
		if prev != nil {
			var err error
			if changedUsers, left, err = a.keys.DeviceListChanges(ctx, s.UserID, since, upTo); err != nil {
				return nil, false, err
			}
		}
		counts, fallback, err := a.keys.KeyCounts(ctx, e2ee.Device{UserID: s.UserID, DeviceID: s.DeviceID})
		if err != nil {
			return nil, false, err
		}
		out["e2ee"] = map[string]any{
			"device_lists":                     map[string]any{"changed": changedUsers, "left": left},
			"device_one_time_keys_count":       counts,
			"device_unused_fallback_key_types": fallback,
		}
		changed = changed || len(changedUsers) > 0 || len(left) > 0
	}

	if on(p.ext.AccountData.Enabled) {
		global := globalAD
		rooms := map[string][]json.RawMessage{}
		for roomID, evs := range roomAD {
			if views[roomID] != nil && !initialRooms[roomID] {
				rooms[roomID] = evs
			}
		}
		// A new connection gets everything; rooms new to the client get
		// their own entries.
		var all []storage.AccountData
		var err error
		if prev == nil {
			all, err = a.db.AccountDataChanges(ctx, s.UserID, 0, upTo)
		} else if len(initialRooms) > 0 {
			ids := make([]string, 0, len(initialRooms))
			for id := range initialRooms {
				ids = append(ids, id)
			}
			all, err = a.db.RoomAccountData(ctx, s.UserID, ids, upTo)
		}
		if err != nil {
			return nil, false, err
		}
		if prev == nil {
			global = nil
		}
		for _, ad := range all {
			ev, _ := json.Marshal(map[string]any{"type": ad.Type, "content": json.RawMessage(ad.Content)})
			switch {
			case ad.RoomID == "" && prev == nil:
				global = append(global, ev)
			case ad.RoomID != "" && initialRooms[ad.RoomID]:
				rooms[ad.RoomID] = append(rooms[ad.RoomID], ev)
			}
		}
		if pos, err := a.db.PushRulesPos(ctx, s.UserID); err != nil {
			return nil, false, err
		} else if prev == nil || (pos > since && pos <= upTo) {
			rules, err := a.users.PushRules(ctx, s.UserID)
			if err != nil {
				return nil, false, err
			}
			ev, _ := json.Marshal(map[string]any{"type": "m.push_rules", "content": map[string]any{"global": rules}})
			global = append(global, ev)
		}
		if global == nil {
			global = []json.RawMessage{}
		}
		out["account_data"] = map[string]any{"global": global, "rooms": rooms}
		changed = changed || (prev != nil && (len(global) > 0 || len(rooms) > 0))
	}

	if on(p.ext.Receipts.Enabled) || on(p.ext.Typing.Enabled) {
		receipts, typing := map[string]any{}, map[string]any{}
		for roomID, v := range views {
			if v.m.Membership != spec.Join {
				continue
			}
			fresh := initialRooms[roomID]
			if on(p.ext.Receipts.Enabled) && (fresh || prev == nil || changedRooms[v.m.RoomNID]) {
				from := since
				if fresh {
					from = 0
				}
				rs, err := a.eph.RoomReceipts(ctx, v.m.RoomNID, from, upTo, s.UserID)
				if err != nil {
					return nil, false, err
				}
				if rs != nil {
					receipts[roomID] = map[string]any{"type": "m.receipt", "content": rs}
				}
			}
			if on(p.ext.Typing.Enabled) {
				sinceT := sinceEph
				if fresh {
					sinceT = 0
				}
				if users, ch := a.eph.Typing(roomID, sinceT); ch || (fresh && len(users) > 0) {
					if users == nil {
						users = []string{}
					}
					typing[roomID] = map[string]any{"type": "m.typing", "content": map[string]any{"user_ids": users}}
				}
			}
		}
		if on(p.ext.Receipts.Enabled) {
			out["receipts"] = map[string]any{"rooms": receipts}
			changed = changed || (prev != nil && len(receipts) > 0)
		}
		if on(p.ext.Typing.Enabled) {
			out["typing"] = map[string]any{"rooms": typing}
			changed = changed || (prev != nil && len(typing) > 0)
		}
	}
	return out, changed, nil
}

var errInvalidToDeviceSince = httputil.InvalidParam("extensions.to_device.since is not a token this server gave")
