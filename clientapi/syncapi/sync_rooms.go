package syncapi

import (
	"context"
	"sort"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/clientapi/filter"
	"matrixhs/clientapi/internal/roomview"
	"matrixhs/internal/accounts"
	"matrixhs/internal/ephemeral"
	"matrixhs/storage"
)

// timeline returns the visible events of (from, to], at most limit of the
// newest, oldest first, and whether older ones may have been left out
// (more than limit, or more than one page could look at). A room's first
// sync (from 0) takes them in topological order, as Synapse does: the
// newest events of the DAG, not the last to arrive (a late event of an
// old fork stays in its place). When the range holds a gap in the room's
// timeline (events stored without their prev events,
// storage.LatestTimelineGap), only the events from the newest gap on are
// returned, limited, as Synapse does: the client pages back rather than
// take the history for complete.
func (a *API) timeline(ctx context.Context, acc *roomview.Access, f *filter.RoomEventFilter, from, to int64, limit int) ([]storage.Event, bool, error) {
	var events []storage.Event
	var limited bool
	var err error
	if from == 0 {
		bounded := *acc
		bounded.StreamBound = to
		var done bool
		events, _, done, err = a.view.TopoPage(ctx, &bounded, f, storage.TopoEnd, storage.TopoPos{}, true, limit+1)
		limited = !done
	} else {
		var next int64
		events, next, err = a.view.Page(ctx, acc, f, to, from, true, limit+1)
		limited = next >= 0
	}
	if err != nil {
		return nil, false, err
	}
	if len(events) > limit {
		events, limited = events[:limit], true
	}
	gap, err := a.db.LatestTimelineGap(ctx, acc.Info.NID, from, to)
	if err != nil {
		return nil, false, err
	}
	if gap > 0 {
		kept := events[:0]
		for _, e := range events {
			if e.StreamPos >= gap {
				kept = append(kept, e)
			}
		}
		events, limited = kept, true
	}
	for i, j := 0, len(events)-1; i < j; i, j = i+1, j-1 {
		events[i], events[j] = events[j], events[i]
	}
	return events, limited, nil
}

// syncJoinedRoom builds one rooms.join entry; has reports whether it
// carries anything new for an incremental sync.
func (a *API) syncJoinedRoom(ctx context.Context, s *accounts.Session, p *syncParams, m storage.RoomMembership, since, sinceEph, upTo int64, accountData []AccountDataEvent) (*JoinedRoom, bool, error) {
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
	prevBatch := roomview.MakeToken(start)
	if fresh && !limited {
		prevBatch = roomview.MakeToken(upTo)
	} else if fresh && len(events) > 0 {
		// A topological timeline (see timeline) pages back from its place.
		prevBatch = roomview.TopoToken(storage.TopoBefore(&events[0]))
	}
	// As Synapse, a room joined since the last sync is always limited:
	// the client holds nothing of it and may page back.
	limited = limited || (fresh && since > 0)
	var state []storage.Event
	switch {
	case fresh:
		if state, err = a.freshState(ctx, info.NID, events, upTo); err != nil {
			return nil, false, err
		}
	case p.fullState:
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

	ephemeralEvents, err := a.roomEphemeral(ctx, s.UserID, info, fresh, since, sinceEph, upTo, p.ignored)
	if err != nil {
		return nil, false, err
	}
	perThread := tf != nil && tf.UnreadThreadNotifs
	unread, threads, err := a.db.UnreadCounts(ctx, info.NID, s.UserID, perThread, upTo)
	if err != nil {
		return nil, false, err
	}
	room := &JoinedRoom{
		Timeline: Timeline{
			Events:    a.view.FilteredEvents(ctx, events, s.DeviceID, p.filter),
			Limited:   limited,
			PrevBatch: prevBatch,
		},
		State:               Events{Events: a.view.FilteredEvents(ctx, state, s.DeviceID, p.filter)},
		AccountData:         AccountData{Events: nonNil(accountData)},
		Ephemeral:           Ephemeral{Events: nonNil(ephemeralEvents)},
		UnreadNotifications: unreadCounts(unread),
	}
	// Per-thread counts only when the filter asks for them and there are
	// some, as Synapse sends them.
	if len(threads) > 0 {
		room.UnreadThreadNotifications = make(map[string]UnreadCounts, len(threads))
		for id, c := range threads {
			room.UnreadThreadNotifications[id] = unreadCounts(c)
		}
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
		room.Summary = summary
	}
	has := len(events) > 0 || len(state) > 0 || len(accountData) > 0 || len(ephemeralEvents) > 0
	return room, has, nil
}

// nonNil is list, or an empty list for nil (the spec sends [], never null).
func nonNil[T any](list []T) []T {
	if list == nil {
		return []T{}
	}
	return list
}

// syncLeftRoom builds a rooms.leave entry: the timeline up to the user's
// departure.
func (a *API) syncLeftRoom(ctx context.Context, s *accounts.Session, p *syncParams, m storage.RoomMembership, since int64) (*LeftRoom, error) {
	if room, err := a.outOfBandLeftRoom(ctx, s, p, m); room != nil || err != nil {
		return room, err
	}
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
	return &LeftRoom{
		Timeline: Timeline{
			Events: a.view.FilteredEvents(ctx, events, s.DeviceID, p.filter), Limited: limited, PrevBatch: roomview.MakeToken(start),
		},
		State:       Events{Events: a.view.FilteredEvents(ctx, filterState(state, stateFilter(p), events, s.UserID), s.DeviceID, p.filter)},
		AccountData: AccountData{Events: []AccountDataEvent{}},
	}, nil
}

// freshState is the state section of a room's first sync: the state
// before the timeline (before the earliest of its events to arrive; the
// timeline is in topological order), with the room's state at the sync's
// position over it for what the timeline does not carry, as Synapse
// computes it: a state event that arrived late, on an old fork, and so is
// not among the timeline's newest events, is still in the state.
func (a *API) freshState(ctx context.Context, roomNID int64, timeline []storage.Event, upTo int64) ([]storage.Event, error) {
	start := upTo
	inTimeline := map[int64]bool{}
	for _, e := range timeline {
		start = min(start, e.StreamPos-1)
		inTimeline[e.NID] = true
	}
	before := map[storage.StateKey]int64{}
	if start > 0 {
		var err error
		if before, err = a.db.StateAt(ctx, roomNID, start); err != nil {
			return nil, err
		}
	}
	if start < upTo {
		end, err := a.db.StateAt(ctx, roomNID, upTo)
		if err != nil {
			return nil, err
		}
		for k, nid := range end {
			if !inTimeline[nid] {
				before[k] = nid
			}
		}
	}
	nids := make([]int64, 0, len(before))
	for _, nid := range before {
		nids = append(nids, nid)
	}
	events, err := a.db.EventsByNID(ctx, nids)
	if err != nil {
		return nil, err
	}
	sort.Slice(events, func(i, j int) bool {
		if events[i].Type != events[j].Type {
			return events[i].Type < events[j].Type
		}
		return *events[i].StateKey < *events[j].StateKey
	})
	return events, nil
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
func (a *API) roomSummary(ctx context.Context, roomNID int64, userID string) (*Summary, error) {
	joined, invited, heroEvents, err := a.memberSummary(ctx, roomNID, userID)
	if err != nil {
		return nil, err
	}
	heroes := make([]string, 0, len(heroEvents))
	for _, e := range heroEvents {
		heroes = append(heroes, *e.StateKey)
	}
	return &Summary{Heroes: heroes, JoinedMemberCount: joined, InvitedMemberCount: invited}, nil
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
func (a *API) strippedState(ctx context.Context, m storage.RoomMembership) ([]roomview.Stripped, error) {
	if st, err := a.outOfBandStripped(ctx, m); st != nil || err != nil {
		return st, err
	}
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
	out := make([]roomview.Stripped, 0, len(events)+1)
	for _, e := range events {
		out = append(out, roomview.StrippedEvent(&e))
		if e.NID == m.EventNID && e.Sender != *e.StateKey {
			if nid, ok := state[storage.StateKey{Type: spec.MRoomMember, StateKey: e.Sender}]; ok {
				inviter, err := a.db.EventsByNID(ctx, []int64{nid})
				if err == nil && len(inviter) == 1 {
					out = append(out, roomview.Stripped{
						Type: spec.MRoomMember, StateKey: e.Sender, Sender: e.Sender, Content: roomview.Content(inviter[0].JSON),
					})
				}
			}
		}
	}
	return out, nil
}

func unreadCounts(c storage.UnreadCounts) UnreadCounts {
	return UnreadCounts{NotificationCount: c.Notifications, HighlightCount: c.Highlights}
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
	roomAD map[string][]AccountDataEvent, eph *ephemeral.Service) bool {
	if changed == nil || m.StreamPos > since || changed[m.RoomNID] || len(roomAD[m.RoomID]) > 0 {
		return false
	}
	_, typingChanged := eph.Typing(m.RoomID, sinceEph)
	return !typingChanged
}
