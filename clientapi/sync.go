package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/clientapi/filter"
	"matrixhs/clientapi/internal/roomview"
	"matrixhs/internal/accounts"
	"matrixhs/internal/ephemeral"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// maxSyncTimeout bounds long-polls so proxies and clients do not time out first.
const maxSyncTimeout = 5 * time.Minute

// defaultTimelineLimit is the timeline length without a filter;
// maxTimelineLimit caps what a filter may ask for (per room: an initial sync
// multiplies it by the user's rooms). A longer history is one limited
// timeline away: the client pages back with prev_batch.
const (
	defaultTimelineLimit = 10
	maxTimelineLimit     = 100
)

// timelineLimit is the number of events a sync timeline holds under f.
func timelineLimit(f *filter.RoomEventFilter) int {
	return min(f.LimitOr(defaultTimelineLimit), maxTimelineLimit)
}

// Sync tokens are "s<stream position>_<ephemeral version>": one global
// position covers everything stored, so tokens survive restarts; the
// ephemeral version covers typing and presence, which are kept in memory.
func syncToken(pos, eph int64) string {
	return "s" + strconv.FormatInt(pos, 10) + "_" + strconv.FormatInt(eph, 10)
}

func parseSyncToken(tok string) (pos, eph int64, err error) {
	stream, ephPart, _ := strings.Cut(strings.TrimPrefix(tok, "s"), "_")
	pos, err1 := strconv.ParseInt(stream, 10, 64)
	if ephPart != "" {
		eph, err = strconv.ParseInt(ephPart, 10, 64)
	}
	if err1 != nil || err != nil || pos < 0 || eph < 0 {
		return 0, 0, httputil.InvalidParam("invalid sync token %q", tok)
	}
	return pos, eph, nil
}

type syncParams struct {
	since     int64
	sinceEph  int64
	initial   bool
	presence  string
	timeout   time.Duration
	fullState bool
	filter    *filter.Filter
	// ignored is the user's m.ignored_user_list, read once per sync pass
	// (ignore.go).
	ignored map[string]bool
}

func (a *API) parseSyncParams(r *http.Request, s *accounts.Session) (*syncParams, error) {
	q := r.URL.Query()
	p := &syncParams{initial: true}
	if tok := q.Get("since"); tok != "" {
		pos, eph, err := parseSyncToken(tok)
		if err != nil {
			return nil, err
		}
		p.since, p.sinceEph, p.initial = pos, eph, false
	}
	if t := q.Get("timeout"); t != "" {
		ms, err := strconv.ParseInt(t, 10, 64)
		if err != nil || ms < 0 {
			return nil, httputil.InvalidParam("timeout must be a non-negative number of milliseconds")
		}
		p.timeout = min(time.Duration(ms)*time.Millisecond, maxSyncTimeout)
	}
	switch q.Get("full_state") {
	case "", "false":
	case "true":
		p.fullState = true
	default:
		return nil, httputil.InvalidParam("full_state must be true or false")
	}
	switch p.presence = q.Get("set_presence"); p.presence {
	case "", "online", "offline", "unavailable":
	default:
		return nil, httputil.InvalidParam("set_presence must be online, offline or unavailable")
	}
	if f := q.Get("filter"); f != "" {
		var raw []byte
		if strings.HasPrefix(strings.TrimSpace(f), "{") {
			raw = []byte(f)
		} else {
			id, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				return nil, httputil.InvalidParam("filter must be a filter ID or a JSON object")
			}
			raw, err = a.db.Filter(r.Context(), s.UserID, id)
			if errors.Is(err, storage.ErrNotFound) {
				return nil, httputil.NotFound("No such filter")
			}
			if err != nil {
				return nil, err
			}
		}
		var flt filter.Filter
		if err := httputil.Unmarshal(raw, &flt); err != nil {
			return nil, err
		}
		if err := flt.Validate(); err != nil {
			return nil, httputil.BadJSON("%v", err)
		}
		p.filter = &flt
	}
	return p, nil
}

// sync serves GET /_matrix/client/v3/sync.
func (a *API) sync(r *http.Request, s *accounts.Session) (any, error) {
	p, err := a.parseSyncParams(r, s)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	switch p.presence {
	case "", "online":
		_ = a.eph.SetPresence(s.UserID, "online", nil, true)
	case "unavailable":
		_ = a.eph.SetPresence(s.UserID, "unavailable", nil, false)
	}
	if p.sinceEph > a.eph.Version() {
		p.sinceEph = 0 // a token from before a restart: send the current state
	}
	var resp map[string]any
	err = a.longPoll(ctx, s.UserID, p.timeout, func(ctx context.Context, upTo, eph int64) (bool, error) {
		var changed bool
		var err error
		resp, changed, err = a.buildSync(ctx, s, p, upTo, eph)
		return changed || p.initial || p.fullState || upTo < p.since, err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// longPoll runs pass over the committed stream position and ephemeral
// version until it reports something to answer with, the timeout passes, the
// server stops or the client goes away. Between passes it waits for a change
// that concerns the user or one of their rooms (the notifier), so commits in
// other rooms cost it nothing. Each pass reads in one read transaction.
func (a *API) longPoll(ctx context.Context, userID string, timeout time.Duration, pass func(ctx context.Context, upTo, eph int64) (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for final := false; ; {
		// Take the notifier's sequence before reading, so a change in
		// between still wakes us.
		seq := a.notify.Seq()
		upTo, eph := a.db.StreamPosition(), a.eph.Version()
		snap, release, err := a.db.ReadTx(ctx)
		if err != nil {
			return err
		}
		done, err := pass(snap, upTo, eph)
		var rooms []int64
		if err == nil && !done && !final {
			rooms, err = a.db.ListeningRooms(snap, userID)
		}
		release()
		if err != nil || done || final {
			return err
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return nil
		}
		woken, stop := a.notify.Listen(userID, rooms, seq)
		timer := time.NewTimer(wait)
		select {
		case <-woken:
		case <-timer.C:
			// Nothing for this user; one last pass answers with a token as
			// of now if the stream moved on (clients that wait for a new
			// next_batch, as matrix-nio does, are not kept waiting).
			final = a.db.StreamPosition() != upTo || a.eph.Version() != eph
			if !final {
				stop()
				return nil
			}
		case <-a.stopping:
			// Shutting down: answer now so the graceful stop is quick.
			stop()
			timer.Stop()
			return nil
		case <-ctx.Done():
			stop()
			timer.Stop()
			return ctx.Err()
		}
		stop()
		timer.Stop()
	}
}

type syncRoomsResp struct {
	Join   map[string]any `json:"join"`
	Invite map[string]any `json:"invite"`
	Leave  map[string]any `json:"leave"`
	Knock  map[string]any `json:"knock"`
}

// buildSync assembles the response for changes in (since, upTo].
func (a *API) buildSync(ctx context.Context, s *accounts.Session, p *syncParams, upTo, eph int64) (map[string]any, bool, error) {
	since, sinceEph := p.since, p.sinceEph
	if p.initial {
		since, sinceEph = 0, 0
	}
	rooms := syncRoomsResp{Join: map[string]any{}, Invite: map[string]any{}, Leave: map[string]any{}, Knock: map[string]any{}}
	changed := false
	// Ignored users (ignore.go): their messages, typing, receipts and invites are left out.
	a.loadSyncIgnored(ctx, p, s.UserID)

	adChanges, err := a.db.AccountDataChanges(ctx, s.UserID, since, upTo)
	if err != nil {
		return nil, false, err
	}
	globalAD := []json.RawMessage{}
	roomAD := map[string][]json.RawMessage{}
	var adFilter *filter.EventFilter
	if p.filter != nil {
		adFilter = p.filter.AccountData
	}
	for _, ad := range adChanges {
		ev, _ := json.Marshal(map[string]any{"type": ad.Type, "content": json.RawMessage(ad.Content)})
		if ad.RoomID == "" {
			if adFilter.Matches(ad.Type, "") {
				globalAD = append(globalAD, ev)
			}
		} else {
			roomAD[ad.RoomID] = append(roomAD[ad.RoomID], ev)
		}
	}
	if pos, err := a.db.PushRulesPos(ctx, s.UserID); err != nil {
		return nil, false, err
	} else if (p.initial || (pos > since && pos <= upTo)) && adFilter.Matches("m.push_rules", "") {
		rules, err := a.users.PushRules(ctx, s.UserID)
		if err != nil {
			return nil, false, err
		}
		ev, _ := json.Marshal(map[string]any{"type": "m.push_rules", "content": map[string]any{"global": rules}})
		globalAD = append(globalAD, ev)
	}
	if len(globalAD) > 0 && !p.initial {
		changed = true
	}

	memberships, err := a.db.MembershipsAt(ctx, s.UserID, upTo)
	if err != nil {
		return nil, false, err
	}
	var changes storage.RoomChanges
	if since > 0 {
		if changes, err = a.db.RoomsChangedSince(ctx, since, upTo); err != nil {
			return nil, false, err
		}
	}
	changedRooms := changes.Rooms // nil: every room is sent
	if p.fullState {
		changedRooms = nil
	}
	// Rooms whose members' presence an incremental sync sends in full:
	// those the user joined since, and those others joined since.
	var joinedSince, membersSince []int64
	var roomFilter *filter.RoomFilter
	if p.filter != nil {
		roomFilter = p.filter.Room
	}
	for _, m := range memberships {
		if !roomAllowed(roomFilter, m.RoomID) {
			continue
		}
		newSince := m.StreamPos > since
		switch m.Membership {
		case spec.Join:
			if since > 0 && newSince {
				joinedSince = append(joinedSince, m.RoomNID)
			} else if changes.Members[m.RoomNID] {
				membersSince = append(membersSince, m.RoomNID)
			}
			if skipUnchangedRoom(since, sinceEph, m, changedRooms, roomAD, a.eph) {
				continue
			}
			room, has, err := a.syncJoinedRoom(ctx, s, p, m, since, sinceEph, upTo, roomAD[m.RoomID])
			if err != nil {
				return nil, false, err
			}
			if has || p.initial {
				rooms.Join[m.RoomID] = room
				changed = changed || !p.initial
			}
		case spec.Invite:
			if newSince {
				if ignoredInvite, err := a.inviteFromIgnored(ctx, p.ignored, m); err != nil {
					return nil, false, err
				} else if ignoredInvite {
					continue // invites from ignored users are not sent (ignore.go)
				}
				st, err := a.strippedState(ctx, m)
				if err != nil {
					return nil, false, err
				}
				rooms.Invite[m.RoomID] = map[string]any{"invite_state": map[string]any{"events": st}}
				changed = changed || !p.initial
			}
		case spec.Knock:
			if newSince {
				st, err := a.strippedState(ctx, m)
				if err != nil {
					return nil, false, err
				}
				rooms.Knock[m.RoomID] = map[string]any{"knock_state": map[string]any{"events": st}}
				changed = changed || !p.initial
			}
		case spec.Leave, spec.Ban:
			// Newly left rooms come in every incremental sync, forgotten or
			// not (other devices must learn of the leave, as Complement's
			// TestRoomForget expects); an initial or full-state sync lists
			// left rooms only under include_leave, and never forgotten ones.
			includeLeave := roomFilter != nil && roomFilter.IncludeLeave
			allLeft := p.initial || p.fullState
			if (!p.initial && newSince) || (allLeft && includeLeave) {
				if allLeft {
					if forgotten, err := a.db.Forgotten(ctx, s.UserID, m.RoomNID); err != nil {
						return nil, false, err
					} else if forgotten {
						continue
					}
				}
				room, err := a.syncLeftRoom(ctx, s, p, m, since)
				if err != nil {
					return nil, false, err
				}
				rooms.Leave[m.RoomID] = room
				changed = changed || !p.initial
			}
		}
	}
	newcomers, err := a.db.NewlyJoined(ctx, membersSince, joinedSince, since)
	if err != nil {
		return nil, false, err
	}
	presence, presenceChanged, err := a.syncPresence(ctx, s.UserID, p, sinceEph, newcomers)
	if err != nil {
		return nil, false, err
	}
	changed = changed || (presenceChanged && !p.initial)
	e2ee, e2eeChanged, err := a.syncE2EE(ctx, s.UserID, s.DeviceID, since, upTo)
	if err != nil {
		return nil, false, err
	}
	changed = changed || e2eeChanged
	resp := map[string]any{
		"next_batch":                       syncToken(upTo, eph),
		"rooms":                            rooms,
		"account_data":                     map[string]any{"events": globalAD},
		"presence":                         map[string]any{"events": presence},
		"to_device":                        e2ee["to_device"],
		"device_lists":                     e2ee["device_lists"],
		"device_one_time_keys_count":       e2ee["device_one_time_keys_count"],
		"device_unused_fallback_key_types": e2ee["device_unused_fallback_key_types"],
	}
	return resp, changed, nil
}

func roomAllowed(f *filter.RoomFilter, roomID string) bool {
	if f == nil {
		return true
	}
	for _, r := range f.NotRooms {
		if r == roomID {
			return false
		}
	}
	if f.Rooms != nil {
		for _, r := range *f.Rooms {
			if r == roomID {
				return true
			}
		}
		return false
	}
	return true
}

func timelineFilter(p *syncParams) *filter.RoomEventFilter {
	if p.filter == nil || p.filter.Room == nil {
		return nil
	}
	return p.filter.Room.Timeline
}

func stateFilter(p *syncParams) *filter.RoomEventFilter {
	if p.filter == nil || p.filter.Room == nil {
		return nil
	}
	return p.filter.Room.State
}

// timeline returns the visible events of (from, to], at most limit of the
// newest, oldest first, and whether older ones may have been left out
// (more than limit, or more than one page could look at).
func (a *API) timeline(ctx context.Context, acc *roomview.Access, f *filter.RoomEventFilter, from, to int64, limit int) ([]storage.Event, bool, error) {
	events, next, err := a.view.Page(ctx, acc, f, to, from, true, limit+1)
	if err != nil {
		return nil, false, err
	}
	limited := next >= 0
	if len(events) > limit {
		events = events[:limit]
	}
	for i, j := 0, len(events)-1; i < j; i, j = i+1, j-1 {
		events[i], events[j] = events[j], events[i]
	}
	return events, limited, nil
}

// syncJoinedRoom builds one rooms.join entry; has reports whether it
// carries anything new for an incremental sync.
func (a *API) syncJoinedRoom(ctx context.Context, s *accounts.Session, p *syncParams, m storage.RoomMembership, since, sinceEph, upTo int64, accountData []json.RawMessage) (map[string]any, bool, error) {
	info, err := a.db.Room(ctx, m.RoomID)
	if err != nil {
		return nil, false, err
	}
	viewer, err := a.rooms.Viewer(ctx, info.NID, s.UserID)
	if err != nil {
		return nil, false, err
	}
	acc := &roomview.Access{Info: info, Viewer: viewer, Ignored: p.ignored}
	// A room joined since the last sync is sent as in an initial sync.
	fresh := since == 0 || m.StreamPos > since
	from := since
	if fresh {
		from = 0
	}
	tf := timelineFilter(p)
	limit := timelineLimit(tf)
	events, limited, err := a.timeline(ctx, acc, tf, from, upTo, limit)
	if err != nil {
		return nil, false, err
	}
	start := upTo
	if len(events) > 0 {
		start = events[0].StreamPos - 1
	}
	// prev_batch pages back from the timeline's start; when the timeline
	// of a new room holds its whole history there is nothing before it,
	// and (as Synapse) the token is the sync's own position, which
	// /members?at= answers with the members as of this sync.
	prevBatch := start
	if fresh && !limited {
		prevBatch = upTo
	}
	// As Synapse, a room joined since the last sync is always limited:
	// the client holds nothing of it and may page back.
	limited = limited || (fresh && since > 0)
	var state []storage.Event
	switch {
	case fresh || p.fullState:
		if state, err = a.view.StateAtPos(ctx, info.NID, start, ""); err != nil {
			return nil, false, err
		}
	case limited:
		if state, err = a.stateDelta(ctx, info.NID, since, start); err != nil {
			return nil, false, err
		}
	}
	state = filterState(state, stateFilter(p), events, s.UserID)
	if sf := stateFilter(p); sf != nil && sf.LazyLoadMembers && !fresh && !p.fullState {
		// Lazy-loading clients learn members from state: send the member
		// events of timeline senders that this sync does not already carry.
		if state, err = a.addSenderMembers(ctx, info.NID, start, state, events); err != nil {
			return nil, false, err
		}
	}

	timeline := map[string]any{
		"events":     a.view.FilteredEvents(ctx, events, s.DeviceID, p.filter),
		"limited":    limited,
		"prev_batch": roomview.MakeToken(prevBatch),
	}
	ephemeralEvents, err := a.roomEphemeral(ctx, s.UserID, info, fresh, since, sinceEph, upTo, p.ignored)
	if err != nil {
		return nil, false, err
	}
	perThread := tf != nil && tf.UnreadThreadNotifs
	unread, threads, err := a.db.UnreadCounts(ctx, info.NID, s.UserID, perThread, upTo)
	if err != nil {
		return nil, false, err
	}
	room := map[string]any{
		"timeline":             timeline,
		"state":                map[string]any{"events": a.view.FilteredEvents(ctx, state, s.DeviceID, p.filter)},
		"account_data":         map[string]any{"events": nonNil(accountData)},
		"ephemeral":            map[string]any{"events": nonNil(ephemeralEvents)},
		"unread_notifications": countsJSON(unread),
	}
	// Per-thread counts only when the filter asks for them and there are
	// some, as Synapse sends them.
	if len(threads) > 0 {
		threadCounts := map[string]any{}
		for id, c := range threads {
			threadCounts[id] = countsJSON(c)
		}
		room["unread_thread_notifications"] = threadCounts
	}
	membersChanged := fresh
	for _, e := range append(append([]storage.Event{}, events...), state...) {
		if e.Type == spec.MRoomMember {
			membersChanged = true
		}
	}
	if membersChanged {
		summary, err := a.roomSummary(ctx, info.NID, s.UserID)
		if err != nil {
			return nil, false, err
		}
		room["summary"] = summary
	}
	has := len(events) > 0 || len(state) > 0 || len(accountData) > 0 || len(ephemeralEvents) > 0
	return room, has, nil
}

func nonNil(list []json.RawMessage) []json.RawMessage {
	if list == nil {
		return []json.RawMessage{}
	}
	return list
}

// syncLeftRoom builds a rooms.leave entry: the timeline up to the user's
// departure.
func (a *API) syncLeftRoom(ctx context.Context, s *accounts.Session, p *syncParams, m storage.RoomMembership, since int64) (map[string]any, error) {
	info, err := a.db.Room(ctx, m.RoomID)
	if err != nil {
		return nil, err
	}
	viewer, err := a.rooms.Viewer(ctx, info.NID, s.UserID)
	if err != nil {
		return nil, err
	}
	acc := &roomview.Access{Info: info, Viewer: viewer, UpTo: m.StreamPos, Ignored: p.ignored}
	tf := timelineFilter(p)
	events, limited, err := a.timeline(ctx, acc, tf, since, m.StreamPos, timelineLimit(tf))
	if err != nil {
		return nil, err
	}
	start := m.StreamPos
	if len(events) > 0 {
		start = events[0].StreamPos - 1
	}
	var state []storage.Event
	if since == 0 || limited {
		if state, err = a.stateDelta(ctx, info.NID, since, start); err != nil {
			return nil, err
		}
	}
	return map[string]any{
		"timeline": map[string]any{
			"events": a.view.FilteredEvents(ctx, events, s.DeviceID, p.filter), "limited": limited, "prev_batch": roomview.MakeToken(start),
		},
		"state":        map[string]any{"events": a.view.FilteredEvents(ctx, filterState(state, stateFilter(p), events, s.UserID), s.DeviceID, p.filter)},
		"account_data": map[string]any{"events": []any{}},
	}, nil
}

// stateDelta returns the state events at `to` that differ from those at
// `from` (all of them when from is 0).
func (a *API) stateDelta(ctx context.Context, roomNID, from, to int64) ([]storage.Event, error) {
	after, err := a.db.StateAt(ctx, roomNID, to)
	if err != nil {
		return nil, err
	}
	before := map[storage.StateKey]int64{}
	if from > 0 {
		if before, err = a.db.StateAt(ctx, roomNID, from); err != nil {
			return nil, err
		}
	}
	var nids []int64
	for k, nid := range after {
		if before[k] != nid {
			nids = append(nids, nid)
		}
	}
	events, err := a.db.EventsByNID(ctx, nids)
	if err != nil {
		return nil, err
	}
	sort.Slice(events, func(i, j int) bool { return events[i].NID < events[j].NID })
	return events, nil
}

// filterState applies the state filter and lazy loading of members: only
// the members who sent timeline events, and the user.
func filterState(state []storage.Event, f *filter.RoomEventFilter, timeline []storage.Event, userID string) []storage.Event {
	lazy := f != nil && f.LazyLoadMembers
	senders := map[string]bool{userID: true}
	for _, e := range timeline {
		senders[e.Sender] = true
	}
	out := state[:0:0]
	for _, e := range state {
		if lazy && e.Type == spec.MRoomMember && !senders[*e.StateKey] {
			continue
		}
		if !f.Matches(e.RoomID, e.Type, e.Sender, nil) {
			continue
		}
		out = append(out, e)
	}
	return out
}

// roomSummary is the m.heroes and member counts of a room.
func (a *API) roomSummary(ctx context.Context, roomNID int64, userID string) (map[string]any, error) {
	joined, invited, heroEvents, err := a.memberSummary(ctx, roomNID, userID)
	if err != nil {
		return nil, err
	}
	heroes := []string{}
	for _, e := range heroEvents {
		heroes = append(heroes, *e.StateKey)
	}
	return map[string]any{"m.heroes": heroes, "m.joined_member_count": joined, "m.invited_member_count": invited}, nil
}

// memberSummary counts a room's joined and invited members and picks its
// heroes: up to five of them other than the user, as member events.
func (a *API) memberSummary(ctx context.Context, roomNID int64, userID string) (joined, invited int, heroes []storage.Event, err error) {
	members, err := a.db.CurrentStateEvents(ctx, roomNID, spec.MRoomMember)
	if err != nil {
		return 0, 0, nil, err
	}
	for _, e := range members {
		switch roomview.ContentString(e.JSON, "membership") {
		case spec.Join:
			joined++
		case spec.Invite:
			invited++
		default:
			continue
		}
		if *e.StateKey != userID && len(heroes) < 5 {
			heroes = append(heroes, e)
		}
	}
	return joined, invited, heroes, nil
}

// strippedState is what an invited or knocking user may see of a room.
func (a *API) strippedState(ctx context.Context, m storage.RoomMembership) ([]map[string]any, error) {
	state, err := a.db.StateAt(ctx, m.RoomNID, m.StreamPos)
	if err != nil {
		return nil, err
	}
	var nids []int64
	for k, nid := range state {
		switch k.Type {
		case spec.MRoomCreate, spec.MRoomJoinRules, spec.MRoomName, "m.room.avatar", "m.room.canonical_alias",
			"m.room.encryption", spec.MRoomTopic:
			nids = append(nids, nid)
		}
	}
	nids = append(nids, m.EventNID)
	events, err := a.db.EventsByNID(ctx, nids)
	if err != nil {
		return nil, err
	}
	// The inviter's member event lets clients show who invited.
	out := make([]map[string]any, 0, len(events)+1)
	for _, e := range events {
		out = append(out, roomview.StrippedEvent(&e))
		if e.NID == m.EventNID && e.Sender != *e.StateKey {
			if nid, ok := state[storage.StateKey{Type: spec.MRoomMember, StateKey: e.Sender}]; ok {
				inviter, err := a.db.EventsByNID(ctx, []int64{nid})
				if err == nil && len(inviter) == 1 {
					out = append(out, map[string]any{
						"type": spec.MRoomMember, "state_key": e.Sender, "sender": e.Sender, "content": roomview.Content(inviter[0].JSON),
					})
				}
			}
		}
	}
	return out, nil
}

// roomEphemeral is a joined room's typing and receipts for the sync window,
// without the users the reader ignores.
func (a *API) roomEphemeral(ctx context.Context, userID string, info *storage.Room, fresh bool, since, sinceEph, upTo int64,
	ignored map[string]bool) ([]json.RawMessage, error) {
	var out []json.RawMessage
	if fresh {
		sinceEph = 0
	}
	if users, changed := a.eph.Typing(info.ID, sinceEph); changed || (fresh && len(users) > 0) {
		ev, _ := json.Marshal(map[string]any{"type": "m.typing", "content": map[string]any{"user_ids": withoutUsers(users, ignored)}})
		out = append(out, ev)
	}
	from := since
	if fresh {
		from = 0
	}
	receipts, err := a.eph.RoomReceipts(ctx, info.NID, from, upTo, userID)
	if err != nil {
		return nil, err
	}
	if receipts = receipts.Without(ignored); receipts != nil {
		ev, _ := json.Marshal(map[string]any{"type": "m.receipt", "content": receipts})
		out = append(out, ev)
	}
	return out, nil
}

// withoutUsers is users without the ignored ones (never nil).
func withoutUsers(users []string, ignored map[string]bool) []string {
	out := make([]string, 0, len(users))
	for _, u := range users {
		if !ignored[u] {
			out = append(out, u)
		}
	}
	return out
}

// syncPresence lists the presence of the user and their room mates that
// changed after sinceEph, and that of newcomers (room mates who joined, or
// whose room the user joined, since the last sync) whatever its age.
func (a *API) syncPresence(ctx context.Context, userID string, p *syncParams, sinceEph int64, newcomers []string) ([]json.RawMessage, bool, error) {
	changed := a.eph.PresenceChangedSince(sinceEph)
	if !changed && len(newcomers) == 0 {
		return []json.RawMessage{}, false, nil // nobody's presence changed: skip the room-mates query
	}
	var mates []string
	if changed {
		var err error
		if mates, err = a.db.RoomMates(ctx, userID); err != nil {
			return nil, false, err
		}
		if !slices.Contains(mates, userID) {
			mates = append(mates, userID)
		}
	}
	var pf *filter.EventFilter
	if p.filter != nil {
		pf = p.filter.Presence
	}
	out := []json.RawMessage{}
	sent := map[string]bool{}
	add := func(u string, newcomer bool) {
		pres, version := a.eph.Presence(u)
		if sent[u] || version == 0 || (!newcomer && version <= sinceEph) || !pf.Matches("m.presence", u) {
			return
		}
		sent[u] = true
		ev, _ := json.Marshal(map[string]any{"type": "m.presence", "sender": u, "content": pres})
		out = append(out, ev)
	}
	for _, u := range newcomers {
		if u != userID {
			add(u, true)
		}
	}
	for _, u := range mates {
		add(u, false)
	}
	return out, len(out) > 0, nil
}

func countsJSON(c storage.UnreadCounts) map[string]int {
	return map[string]int{"notification_count": c.Notifications, "highlight_count": c.Highlights}
}

// addSenderMembers adds, as of position pos, the member events of the
// timeline's senders that are neither in state nor in the timeline.
func (a *API) addSenderMembers(ctx context.Context, roomNID, pos int64, state, timeline []storage.Event) ([]storage.Event, error) {
	have := map[string]bool{}
	for _, e := range append(append([]storage.Event{}, state...), timeline...) {
		if e.Type == spec.MRoomMember && e.StateKey != nil {
			have[*e.StateKey] = true
		}
	}
	var need []string
	for _, e := range timeline {
		if !have[e.Sender] {
			have[e.Sender] = true
			need = append(need, e.Sender)
		}
	}
	if len(need) == 0 {
		return state, nil
	}
	at, err := a.db.StateAt(ctx, roomNID, pos)
	if err != nil {
		return nil, err
	}
	var nids []int64
	for _, u := range need {
		if nid, ok := at[storage.StateKey{Type: spec.MRoomMember, StateKey: u}]; ok {
			nids = append(nids, nid)
		}
	}
	members, err := a.db.EventsByNID(ctx, nids)
	if err != nil {
		return nil, err
	}
	return append(state, members...), nil
}

// skipUnchangedRoom reports whether an incremental sync can leave a joined
// room out: nothing of it changed in the window (no events, receipts,
// account data or typing), and the user did not just join.
func skipUnchangedRoom(since, sinceEph int64, m storage.RoomMembership, changed map[int64]bool,
	roomAD map[string][]json.RawMessage, eph *ephemeral.Service) bool {
	if changed == nil || m.StreamPos > since || changed[m.RoomNID] || len(roomAD[m.RoomID]) > 0 {
		return false
	}
	_, typingChanged := eph.Typing(m.RoomID, sinceEph)
	return !typingChanged
}
