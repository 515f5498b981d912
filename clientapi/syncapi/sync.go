package syncapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/clientapi/filter"
	"matrixhs/internal/accounts"
	"matrixhs/internal/e2ee"
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
	var resp *Response
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

// buildSync assembles the response for changes in (since, upTo].
func (a *API) buildSync(ctx context.Context, s *accounts.Session, p *syncParams, upTo, eph int64) (*Response, bool, error) {
	since, sinceEph := p.since, p.sinceEph
	if p.initial {
		since, sinceEph = 0, 0
	}
	resp := &Response{NextBatch: syncToken(upTo, eph), Rooms: Rooms{Join: map[string]*JoinedRoom{}, Invite: map[string]*InvitedRoom{},
		Leave: map[string]*LeftRoom{}, Knock: map[string]*KnockedRoom{}}}
	rooms := &resp.Rooms
	changed := false
	// Ignored users (ignore.go): their messages, typing, receipts and invites are left out.
	a.loadSyncIgnored(ctx, p, s.UserID)

	adChanges, err := a.db.AccountDataChanges(ctx, s.UserID, since, upTo)
	if err != nil {
		return nil, false, err
	}
	globalAD := []AccountDataEvent{}
	roomAD := map[string][]AccountDataEvent{}
	var adFilter *filter.EventFilter
	if p.filter != nil {
		adFilter = p.filter.AccountData
	}
	for _, ad := range adChanges {
		ev := AccountDataEvent{Type: ad.Type, Content: ad.Content}
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
		globalAD = append(globalAD, pushRulesEvent(rules))
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
				rooms.Invite[m.RoomID] = &InvitedRoom{InviteState: StrippedState{Events: st}}
				changed = changed || !p.initial
			}
		case spec.Knock:
			if newSince {
				st, err := a.strippedState(ctx, m)
				if err != nil {
					return nil, false, err
				}
				rooms.Knock[m.RoomID] = &KnockedRoom{KnockState: StrippedState{Events: st}}
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
	resp.AccountData.Events = globalAD
	resp.Presence.Events = presence
	e2eeChanged, err := a.syncE2EE(ctx, e2ee.Device{UserID: s.UserID, DeviceID: s.DeviceID}, since, upTo, resp)
	if err != nil {
		return nil, false, err
	}
	changed = changed || e2eeChanged
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
