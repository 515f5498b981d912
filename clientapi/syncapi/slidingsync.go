package syncapi

// Simplified sliding sync (MSC4186), the only sync Element X speaks:
// POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync.
//
// A connection (user, device, conn_id) remembers its sticky request
// parameters and, per response position, which rooms the client holds and
// up to which stream position, so each response carries only what changed.
// Connections live in memory: after a restart an old pos is answered with
// M_UNKNOWN_POS and the client starts a new connection (as the MSC intends);
// to-device messages keep their own client-held token, so none are lost.

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// Request shapes (MSC4186). Pointers tell an omitted sticky field from a
// zero one.
type ssRequest struct {
	ConnID            string                  `json:"conn_id"`
	TxnID             *string                 `json:"txn_id"`
	Lists             map[string]ssListConfig `json:"lists"`
	RoomSubscriptions map[string]ssRoomConfig `json:"room_subscriptions"`
	Extensions        ssExtensions            `json:"extensions"`
}

type ssRoomConfig struct {
	RequiredState [][]string `json:"required_state"`
	TimelineLimit *int       `json:"timeline_limit"`
}

type ssListConfig struct {
	Ranges        [][]int      `json:"ranges"`
	RequiredState [][]string   `json:"required_state"`
	TimelineLimit *int         `json:"timeline_limit"`
	Filters       *ssFilters   `json:"filters"`
	ranges        [][2]int     // validated Ranges
	config        ssRoomConfig // the merged room config
}

type ssFilters struct {
	IsDM         *bool     `json:"is_dm"`
	IsEncrypted  *bool     `json:"is_encrypted"`
	IsInvite     *bool     `json:"is_invite"`
	RoomTypes    []*string `json:"room_types"`
	NotRoomTypes []*string `json:"not_room_types"`
}

type ssExtToggle struct {
	Enabled *bool `json:"enabled"`
}

type ssExtensions struct {
	ToDevice struct {
		Enabled *bool   `json:"enabled"`
		Since   *string `json:"since"`
		Limit   *int    `json:"limit"`
	} `json:"to_device"`
	E2EE        ssExtToggle `json:"e2ee"`
	AccountData ssExtToggle `json:"account_data"`
	Receipts    ssExtToggle `json:"receipts"`
	Typing      ssExtToggle `json:"typing"`
}

// maxSSRanges bounds what a list may ask for, keeping a response's work bounded.
const (
	maxSSLists         = 50
	maxSSSubscriptions = 500
	maxSSRequiredState = 100
	maxSSRanges        = 10
	maxSSTimelineLimit = 100
	defaultToDeviceMax = 100
	maxToDeviceLimit   = 1000
)

// toDeviceLimit is how many to-device messages one response carries.
func (e *ssExtensions) toDeviceLimit() int {
	if e.ToDevice.Limit == nil {
		return defaultToDeviceMax
	}
	return min(*e.ToDevice.Limit, maxToDeviceLimit)
}

func (a *API) slidingSync(r *http.Request, s *accounts.Session) (any, error) {
	var req ssRequest
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if len(req.ConnID) > 64 {
		return nil, httputil.InvalidParam("conn_id is too long")
	}
	q := r.URL.Query()
	timeout := time.Duration(0)
	if t := q.Get("timeout"); t != "" {
		ms, err := strconv.ParseInt(t, 10, 64)
		if err != nil || ms < 0 {
			return nil, httputil.InvalidParam("timeout must be a non-negative integer")
		}
		timeout = min(time.Duration(ms)*time.Millisecond, maxSyncTimeout)
	}
	switch q.Get("set_presence") {
	case "", "online":
		_ = a.eph.SetPresence(s.UserID, "online", nil, true)
	case "unavailable":
		_ = a.eph.SetPresence(s.UserID, "unavailable", nil, false)
	case "offline":
	default:
		return nil, httputil.InvalidParam("set_presence must be online, offline or unavailable")
	}
	key := ssConnKey{user: s.UserID, device: s.DeviceID, conn: req.ConnID}
	conn, prev, err := a.ss.begin(key, q.Get("pos"))
	if err != nil {
		return nil, err
	}
	params, err := conn.merge(&req)
	if err != nil {
		return nil, err
	}
	var resp *SSResponse
	var next *ssSent
	err = a.longPoll(r.Context(), s.UserID, timeout, func(ctx context.Context, upTo, eph int64) (bool, error) {
		var changed bool
		var err error
		resp, next, changed, err = a.buildSlidingSync(ctx, s, params, prev, upTo, eph)
		return changed || prev == nil, err
	})
	if err != nil {
		return nil, err
	}
	resp.Pos = conn.commit(next)
	resp.TxnID = req.TxnID
	return resp, nil
}

// ssRoomView is one room as a response pass sees it.
type ssRoomView struct {
	m      storage.RoomMembership
	bump   int64
	config ssRoomConfig
}

// buildSlidingSync computes one response for the window (prev, upTo]. next
// is what the client holds once it has the response; changed says whether
// the response carries anything.
func (a *API) buildSlidingSync(ctx context.Context, s *accounts.Session, p *ssParams, prev *ssSent, upTo, eph int64) (*SSResponse, *ssSent, bool, error) {
	since, sinceEph := int64(0), int64(0)
	if prev != nil {
		since, sinceEph = prev.pos, prev.eph
	}
	next := &ssSent{pos: upTo, eph: eph, rooms: map[string]ssRoomSent{}}
	if prev != nil {
		for id, rs := range prev.rooms {
			next.rooms[id] = rs
		}
	}
	memberships, err := a.db.MembershipsAt(ctx, s.UserID, upTo)
	if err != nil {
		return nil, nil, false, err
	}
	var candidates []storage.RoomMembership // rooms that may appear in lists
	byID := map[string]storage.RoomMembership{}
	var nids []int64
	for _, m := range memberships {
		byID[m.RoomID] = m
		switch m.Membership {
		case spec.Join, spec.Invite:
			candidates = append(candidates, m)
			nids = append(nids, m.RoomNID)
		}
	}
	var changedRooms map[int64]bool
	if prev != nil {
		changes, err := a.db.RoomsChangedSince(ctx, since, upTo)
		if err != nil {
			return nil, nil, false, err
		}
		changedRooms = changes.Rooms
	}
	// Bump stamps and filter flags only change with a room's events: carry
	// them over from the last response and read those of changed rooms.
	stale := nids
	if prev != nil {
		stale = nil
		for _, nid := range nids {
			if _, ok := prev.bumps[nid]; !ok || changedRooms[nid] {
				stale = append(stale, nid)
			}
		}
	}
	bumps, err := a.db.BumpStamps(ctx, stale, upTo)
	if err != nil {
		return nil, nil, false, err
	}
	next.bumps = make(map[int64]int64, len(nids))
	for _, nid := range nids {
		b, ok := bumps[nid]
		if !ok && prev != nil {
			b = prev.bumps[nid]
		}
		next.bumps[nid] = b
	}
	bumps = next.bumps
	bumpOf := func(m storage.RoomMembership) int64 {
		if m.Membership != spec.Join {
			return m.StreamPos // invitees see nothing newer than their invite
		}
		return max(bumps[m.RoomNID], 1)
	}
	sort.SliceStable(candidates, func(i, j int) bool {
		bi, bj := bumpOf(candidates[i]), bumpOf(candidates[j])
		if bi != bj {
			return bi > bj
		}
		return candidates[i].RoomID < candidates[j].RoomID
	})
	var flags map[int64]storage.RoomFlags
	var dms map[string]bool
	// Only what some list filters on is read: room flags (encryption, type)
	// and m.direct.
	needFlags, needDMs := false, false
	for _, l := range p.lists {
		if f := l.Filters; f != nil {
			needFlags = needFlags || f.IsEncrypted != nil || len(f.RoomTypes) > 0 || len(f.NotRoomTypes) > 0
			needDMs = needDMs || f.IsDM != nil
		}
	}
	if needFlags {
		staleFlags := stale
		if prev == nil || prev.flags == nil {
			staleFlags = nids
		}
		fresh, err := a.db.RoomFlagsOf(ctx, staleFlags)
		if err != nil {
			return nil, nil, false, err
		}
		flags = make(map[int64]storage.RoomFlags, len(nids))
		for _, nid := range nids {
			if f, ok := fresh[nid]; ok {
				flags[nid] = f
			} else if prev != nil && prev.flags != nil {
				flags[nid] = prev.flags[nid]
			}
		}
		next.flags = flags
	}
	if needDMs {
		dms = a.directRooms(ctx, s.UserID)
	}

	// The rooms of this response: those in some list's ranges, and the
	// subscribed ones, each with the widest config asking for it. Lists and
	// ranges may overlap (up to 50 lists of 10 ranges, each spanning every
	// room): a room counts once per list, and rooms asked for by the same
	// lists share one widening (which sorts required_state).
	type viewReq struct {
		m     storage.RoomMembership
		lists []string       // the lists whose ranges hold the room, in name order
		extra []ssRoomConfig // its subscription, or the config it is leaving with
	}
	reqs := map[string]*viewReq{}
	want := func(m storage.RoomMembership) *viewReq {
		r := reqs[m.RoomID]
		if r == nil {
			r = &viewReq{m: m}
			reqs[m.RoomID] = r
		}
		return r
	}
	names := make([]string, 0, len(p.lists))
	for name := range p.lists {
		names = append(names, name)
	}
	sort.Strings(names)
	listsOut := make(map[string]SSList, len(names))
	for _, name := range names {
		l := p.lists[name]
		var matched []storage.RoomMembership
		for _, m := range candidates {
			if l.Filters.matches(m, flags[m.RoomNID], dms[m.RoomID]) {
				matched = append(matched, m)
			}
		}
		listsOut[name] = SSList{Count: len(matched)}
		inRange := make([]bool, len(matched))
		for _, rg := range l.ranges {
			for i := rg[0]; i <= rg[1] && i < len(matched); i++ {
				inRange[i] = true
			}
		}
		for i, in := range inRange {
			if in {
				r := want(matched[i])
				r.lists = append(r.lists, name)
			}
		}
	}
	for roomID, c := range p.subs {
		if m, ok := byID[roomID]; ok && m.Membership != spec.Leave && m.Membership != spec.Ban {
			r := want(m)
			r.extra = append(r.extra, c)
		}
	}
	// Rooms the client holds that the user left or was banned from since
	// the last response get their final update (the leave in the timeline).
	for roomID := range next.rooms {
		if m, ok := byID[roomID]; ok && reqs[roomID] == nil && m.StreamPos > since &&
			(m.Membership == spec.Leave || m.Membership == spec.Ban) {
			r := want(m)
			r.extra = append(r.extra, next.rooms[roomID].config)
		}
	}
	views := make(map[string]*ssRoomView, len(reqs))
	byLists := map[string]ssRoomConfig{}
	for roomID, r := range reqs {
		key := strings.Join(r.lists, "\x00")
		c, ok := byLists[key]
		if !ok {
			for _, name := range r.lists {
				c = c.widen(p.lists[name].config)
			}
			byLists[key] = c
		}
		for _, e := range r.extra {
			c = c.widen(e)
		}
		views[roomID] = &ssRoomView{m: r.m, bump: bumpOf(r.m), config: c}
	}

	adChanges, err := a.db.AccountDataChanges(ctx, s.UserID, since, upTo)
	if err != nil {
		return nil, nil, false, err
	}
	roomAD := map[string][]AccountDataEvent{}
	var globalAD []AccountDataEvent
	for _, ad := range adChanges {
		ev := AccountDataEvent{Type: ad.Type, Content: ad.Content}
		if ad.RoomID == "" {
			globalAD = append(globalAD, ev)
		} else {
			roomAD[ad.RoomID] = append(roomAD[ad.RoomID], ev)
		}
	}

	changed := prev == nil
	if prev != nil {
		for name, l := range listsOut {
			if prev.counts[name] != l.Count {
				changed = true
			}
		}
	}
	next.counts = map[string]int{}
	for name, l := range listsOut {
		next.counts[name] = l.Count
	}
	rooms := map[string]*SSRoom{}
	initialRooms := map[string]bool{}
	ignored := a.view.IgnoredUsers(ctx, s.UserID)
	for roomID, v := range views {
		held, has := next.rooms[roomID]
		initial := !has || held.membership != v.m.Membership || v.config.wider(held.config)
		if !initial && v.m.StreamPos <= held.pos && !changedRooms[v.m.RoomNID] && len(roomAD[roomID]) == 0 {
			continue // nothing new for a room the client holds
		}
		room, err := a.ssRoom(ctx, s, v, held, initial, upTo, ignored)
		if err != nil {
			return nil, nil, false, err
		}
		config := v.config
		if !initial {
			config = config.widen(held.config)
		}
		next.rooms[roomID] = ssRoomSent{pos: upTo, membership: v.m.Membership, config: config, lazy: room.lazy}
		if initial {
			initialRooms[roomID] = true
		}
		if room.out != nil {
			rooms[roomID] = room.out
			changed = true
		}
	}

	ext, extChanged, err := a.ssExtensions(ctx, s, p, prev, since, sinceEph, upTo, views, initialRooms, changedRooms, globalAD, roomAD)
	if err != nil {
		return nil, nil, false, err
	}
	changed = changed || extChanged
	resp := &SSResponse{Lists: listsOut, Rooms: rooms, Extensions: ext}
	return resp, next, changed, nil
}

// directRooms is the set of rooms m.direct marks as DMs.
func (a *API) directRooms(ctx context.Context, userID string) map[string]bool {
	out := map[string]bool{}
	raw, err := a.db.AccountData(ctx, userID, "", "m.direct")
	if err != nil {
		return out
	}
	var direct map[string][]string
	if json.Unmarshal(raw, &direct) != nil {
		return out
	}
	for _, rooms := range direct {
		for _, r := range rooms {
			out[r] = true
		}
	}
	return out
}

func (f *ssFilters) matches(m storage.RoomMembership, flags storage.RoomFlags, dm bool) bool {
	if f == nil {
		return true
	}
	if f.IsInvite != nil && *f.IsInvite != (m.Membership == spec.Invite) {
		return false
	}
	if f.IsDM != nil && *f.IsDM != dm {
		return false
	}
	if f.IsEncrypted != nil && *f.IsEncrypted != flags.Encrypted {
		return false
	}
	typeIn := func(list []*string) bool {
		for _, t := range list {
			if (t == nil && flags.Type == "") || (t != nil && *t == flags.Type) {
				return true
			}
		}
		return false
	}
	if len(f.NotRoomTypes) > 0 && typeIn(f.NotRoomTypes) {
		return false
	}
	if len(f.RoomTypes) > 0 && !typeIn(f.RoomTypes) {
		return false
	}
	return true
}
