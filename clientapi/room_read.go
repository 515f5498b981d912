package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/clientapi/filter"
	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

// roomAccess is what a user may read of a room.
type roomAccess struct {
	info   *storage.Room
	viewer *roomserver.Viewer
	// upTo bounds reads for users who left: the position of their leave.
	// 0 means the user may read up to now.
	upTo int64
	// ignored are the senders whose non-state events the reader ignores
	// (m.ignored_user_list, see ignore.go); page leaves them out.
	ignored map[string]bool
}

// access decides whether the user may read the room: members may, former
// members may up to their departure, anyone may read world_readable rooms.
func (a *API) access(ctx context.Context, userID, roomID string) (*roomAccess, error) {
	info, err := a.db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.Forbidden("You are not a member of this room")
	}
	if err != nil {
		return nil, err
	}
	v, err := a.rooms.Viewer(ctx, info.NID, userID)
	if err != nil {
		return nil, err
	}
	acc := &roomAccess{info: info, viewer: v}
	switch v.Membership() {
	case spec.Join:
		return acc, nil
	case spec.Leave, spec.Ban:
		forgotten, err := a.db.Forgotten(ctx, userID, info.NID)
		if err != nil {
			return nil, err
		}
		if !forgotten {
			if !v.WorldReadable() {
				acc.upTo = v.LastMembershipPos()
			}
			return acc, nil
		}
	}
	if v.WorldReadable() {
		return acc, nil
	}
	return nil, httputil.Forbidden("You are not a member of this room")
}

// clamp bounds a pagination window to what a user who left may read.
func (acc *roomAccess) clamp(from, to int64, backwards bool) (int64, int64) {
	if acc.upTo == 0 {
		return from, to
	}
	if backwards && from > acc.upTo {
		from = acc.upTo
	}
	if !backwards && (to == 0 || to > acc.upTo) {
		to = acc.upTo
	}
	return from, to
}

// stateEvents returns the room state the user may see: current, or as of
// their departure.
func (a *API) stateEvents(ctx context.Context, acc *roomAccess, typ string) ([]storage.Event, error) {
	if acc.upTo == 0 {
		return a.db.CurrentStateEvents(ctx, acc.info.NID, typ)
	}
	return a.stateAtPos(ctx, acc.info.NID, acc.upTo, typ)
}

func (a *API) stateAtPos(ctx context.Context, roomNID, pos int64, typ string) ([]storage.Event, error) {
	state, err := a.db.StateAt(ctx, roomNID, pos)
	if err != nil {
		return nil, err
	}
	nids := make([]int64, 0, len(state))
	for k, nid := range state {
		if typ == "" || k.Type == typ {
			nids = append(nids, nid)
		}
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

// getRoomState serves GET /_matrix/client/v3/rooms/{roomId}/state.
func (a *API) getRoomState(r *http.Request, s *accounts.Session) (any, error) {
	roomID, err := roomIDVar(r)
	if err != nil {
		return nil, err
	}
	acc, err := a.access(r.Context(), s.UserID, roomID)
	if err != nil {
		return nil, err
	}
	events, err := a.stateEvents(r.Context(), acc, "")
	if err != nil {
		return nil, err
	}
	return a.clientEvents(r.Context(), events, s.DeviceID), nil
}

// getStateEvent serves GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}.
func (a *API) getStateEvent(r *http.Request, s *accounts.Session) (any, error) {
	roomID, err := roomIDVar(r)
	if err != nil {
		return nil, err
	}
	acc, err := a.access(r.Context(), s.UserID, roomID)
	if err != nil {
		return nil, err
	}
	typ, key := pathVar(r, "eventType"), pathVar(r, "stateKey")
	events, err := a.stateEvents(r.Context(), acc, typ)
	if err != nil {
		return nil, err
	}
	for i := range events {
		if *events[i].StateKey != key {
			continue
		}
		if r.URL.Query().Get("format") == "event" {
			return a.clientEvent(r.Context(), &events[i], s.DeviceID), nil
		}
		var ev struct {
			Content json.RawMessage `json:"content"`
		}
		if err := json.Unmarshal(events[i].JSON, &ev); err != nil {
			return nil, err
		}
		return ev.Content, nil
	}
	return nil, httputil.NotFound("Event not found")
}

// getMembers serves GET /_matrix/client/v3/rooms/{roomId}/members.
func (a *API) getMembers(r *http.Request, s *accounts.Session) (any, error) {
	acc, err := a.access(r.Context(), s.UserID, pathVar(r, "roomId"))
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	var events []storage.Event
	if at := q.Get("at"); at != "" {
		pos, err := a.streamFromToken(r.Context(), acc.info.NID, at)
		if err != nil {
			return nil, err
		}
		if acc.upTo != 0 && pos > acc.upTo {
			pos = acc.upTo
		}
		// As Synapse: only a point of the room's history the user may see
		// (the state just after pos, under the history visibility then).
		if !acc.viewer.CanSee(&storage.Event{Type: "m.room.message", StreamPos: pos}) {
			return nil, httputil.Forbidden("You may not see the room's members at that point")
		}
		events, err = a.stateAtPos(r.Context(), acc.info.NID, pos, spec.MRoomMember)
		if err != nil {
			return nil, err
		}
	} else if events, err = a.stateEvents(r.Context(), acc, spec.MRoomMember); err != nil {
		return nil, err
	}
	want, notWant := q.Get("membership"), q.Get("not_membership")
	var chunk []storage.Event
	for _, e := range events {
		m := contentString(e.JSON, "membership")
		if (want != "" && m != want) || (notWant != "" && m == notWant) {
			continue
		}
		chunk = append(chunk, e)
	}
	return map[string]any{"chunk": a.clientEvents(r.Context(), chunk, s.DeviceID)}, nil
}

// joinedMember is an entry of /joined_members; both keys are always
// present, null when unset (as in Synapse).
type joinedMember struct {
	DisplayName *string `json:"display_name"`
	AvatarURL   *string `json:"avatar_url"`
}

// getJoinedMembers serves GET /_matrix/client/v3/rooms/{roomId}/joined_members.
// Only current members may ask (spec; also in world-readable rooms).
func (a *API) getJoinedMembers(r *http.Request, s *accounts.Session) (any, error) {
	roomID, err := roomIDVar(r)
	if err != nil {
		return nil, err
	}
	notMember := httputil.Forbidden("Getting joined members while not being a current member of the room is forbidden")
	info, err := a.db.Room(r.Context(), roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, notMember
	}
	if err != nil {
		return nil, err
	}
	if m, err := a.db.Membership(r.Context(), info.NID, s.UserID); err != nil {
		return nil, err
	} else if m != spec.Join {
		return nil, notMember
	}
	events, err := a.db.CurrentStateEvents(r.Context(), info.NID, spec.MRoomMember)
	if err != nil {
		return nil, err
	}
	joined := map[string]joinedMember{}
	for _, e := range events {
		if contentString(e.JSON, "membership") != spec.Join {
			continue
		}
		var p joinedMember
		if d := contentString(e.JSON, "displayname"); d != "" {
			p.DisplayName = &d
		}
		if av := contentString(e.JSON, "avatar_url"); av != "" {
			p.AvatarURL = &av
		}
		joined[*e.StateKey] = p
	}
	return map[string]any{"joined": joined}, nil
}

func contentString(eventJSON []byte, field string) string {
	var e struct {
		Content map[string]json.RawMessage `json:"content"`
	}
	if json.Unmarshal(eventJSON, &e) != nil {
		return ""
	}
	var s string
	json.Unmarshal(e.Content[field], &s)
	return s
}

func eventContent(eventJSON []byte) json.RawMessage {
	var e struct {
		Content json.RawMessage `json:"content"`
	}
	json.Unmarshal(eventJSON, &e)
	return e.Content
}

// Pagination tokens are stream positions with a letter prefix ("t123");
// bare numbers and sync tokens ("s123") are accepted too.
func makeToken(pos int64) string { return "t" + strconv.FormatInt(pos, 10) }

func parseToken(tok string) (int64, error) {
	s := strings.TrimLeft(tok, "ts")
	if i := strings.IndexAny(s, "_~."); i >= 0 {
		s = s[:i]
	}
	pos, err := strconv.ParseInt(s, 10, 64)
	if err != nil || pos < 0 {
		return 0, httputil.InvalidParam("invalid pagination token %q", tok)
	}
	return pos, nil
}

// roomFilterParam parses the "filter" query parameter of /messages and /context.
func roomFilterParam(r *http.Request) (*filter.RoomEventFilter, error) {
	raw := r.URL.Query().Get("filter")
	if raw == "" {
		return nil, nil
	}
	var f filter.RoomEventFilter
	if err := json.Unmarshal([]byte(raw), &f); err != nil {
		return nil, httputil.BadJSON("filter is not a valid RoomEventFilter: %v", err)
	}
	if err := f.Validate("filter"); err != nil {
		return nil, httputil.BadJSON("%v", err)
	}
	return &f, nil
}

// pageScanBudget bounds the stored events one page reads for limit results:
// where most events are hidden from the user or fail the filter, the page
// comes back short (with a token to go on from) instead of reading the
// room's whole history in one request.
func pageScanBudget(limit int) int { return max(4*limit, 400) }

// page collects up to limit visible events matching f from the room,
// starting after position from in the given direction. next is where a
// following page starts, -1 when the room has nothing more in that
// direction; a page shorter than limit with next >= 0 ran out of scan
// budget, not of events.
func (a *API) page(ctx context.Context, acc *roomAccess, f *filter.RoomEventFilter, from, to int64, backwards bool, limit int) (events []storage.Event, next int64, err error) {
	next = from
	// Read a little more than asked (some events may be hidden), not a
	// hundred full events for a one-event sliding-sync timeline.
	batchSize := min(max(2*limit, 8), 100)
	for scanned := 0; len(events) < limit && scanned < pageScanBudget(limit); scanned += batchSize {
		var batch []storage.Event
		batch, err = a.db.Timeline(ctx, acc.info.NID, next, to, backwards, batchSize)
		if err != nil {
			return nil, 0, err
		}
		for i := range batch {
			e := &batch[i]
			if backwards {
				next = e.StreamPos - 1
			} else {
				next = e.StreamPos
			}
			if acc.viewer.CanSee(e) && !acc.ignores(e) && f.Matches(e.RoomID, e.Type, e.Sender, eventContent(e.JSON)) {
				e.ViewerMembership = acc.viewer.MembershipAt(e)
				events = append(events, *e)
				if len(events) == limit {
					return events, next, nil
				}
			}
		}
		if len(batch) < batchSize {
			return events, -1, nil // exhausted
		}
	}
	return events, next, nil
}

// getMessages serves GET /_matrix/client/v3/rooms/{roomId}/messages.
func (a *API) getMessages(r *http.Request, s *accounts.Session) (any, error) {
	acc, err := a.access(r.Context(), s.UserID, pathVar(r, "roomId"))
	if err != nil {
		return nil, err
	}
	a.withIgnored(r.Context(), acc, s.UserID)
	q := r.URL.Query()
	backwards := q.Get("dir") != "f"
	if d := q.Get("dir"); d != "" && d != "b" && d != "f" {
		return nil, httputil.InvalidParam("dir must be b or f")
	}
	limit := 10
	if l := q.Get("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil || limit < 0 {
			return nil, httputil.InvalidParam("limit must be a non-negative integer")
		}
	}
	limit = min(limit, 1000)
	f, err := roomFilterParam(r)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	bound, err := a.topoLimit(ctx, acc)
	if err != nil {
		return nil, err
	}
	var from, to storage.TopoPos
	if tok := q.Get("from"); tok != "" {
		if from, err = a.topoFromToken(ctx, acc.info.NID, tok); err != nil {
			return nil, err
		}
	} else if backwards {
		from = storage.TopoEnd
	}
	if tok := q.Get("to"); tok != "" {
		if to, err = a.topoFromToken(ctx, acc.info.NID, tok); err != nil {
			return nil, err
		}
	} else if !backwards {
		to = storage.TopoEnd
	}
	// A user who left reads up to their departure.
	if backwards && bound.Less(from) {
		from = bound
	}
	if !backwards && bound.Less(to) {
		to = bound
	}
	events, next, done, err := a.topoPage(ctx, acc, f, from, to, backwards, limit)
	if err != nil {
		return nil, err
	}
	if backwards && done && len(events) < limit && q.Get("to") == "" {
		if events, next, done, err = a.pageBackfilled(ctx, acc, f, events, next, limit); err != nil {
			return nil, err
		}
	}
	// start is the token given, or where "now" is in the stream.
	start := q.Get("from")
	if start == "" {
		start = topoToken(from)
		if backwards {
			start = makeToken(a.db.StreamPosition())
		}
	}
	resp := map[string]any{"start": start, "chunk": a.clientEvents(ctx, events, s.DeviceID)}
	// As Synapse: end is left out only when the page is empty and the room
	// has nothing more; a page holding events always has one (the next
	// request may then come back empty), and so does an empty page that
	// ran out of scan budget.
	if !done || len(events) > 0 {
		resp["end"] = topoToken(next)
	}
	if f != nil && f.LazyLoadMembers {
		members, err := a.lazyMembers(r.Context(), acc, events)
		if err != nil {
			return nil, err
		}
		resp["state"] = members
	}
	return resp, nil
}

// lazyMembers returns the member events of the senders of events, as lazy
// loading clients need them to render the chunk.
func (a *API) lazyMembers(ctx context.Context, acc *roomAccess, events []storage.Event) ([]json.RawMessage, error) {
	senders := map[string]bool{}
	for _, e := range events {
		senders[e.Sender] = true
	}
	members, err := a.stateEvents(ctx, acc, spec.MRoomMember)
	if err != nil {
		return nil, err
	}
	var out []storage.Event
	for _, m := range members {
		if senders[*m.StateKey] {
			out = append(out, m)
		}
	}
	return a.clientEvents(ctx, out, ""), nil
}

// visibleEvent loads an event of the room the user may see, else 404.
func (a *API) visibleEvent(ctx context.Context, acc *roomAccess, eventID string) (*storage.Event, error) {
	e, err := a.db.EventByID(ctx, eventID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && (e.RoomNID != acc.info.NID || e.StreamPos == 0 ||
		(acc.upTo != 0 && e.StreamPos > acc.upTo) || !acc.viewer.CanSee(e))) {
		return nil, httputil.NotFound("Event not found")
	}
	if err == nil {
		e.ViewerMembership = acc.viewer.MembershipAt(e)
	}
	return e, err
}

// getEvent serves GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}.
func (a *API) getEvent(r *http.Request, s *accounts.Session) (any, error) {
	acc, err := a.access(r.Context(), s.UserID, pathVar(r, "roomId"))
	if err != nil {
		// The spec answers 404 for events the user may not see.
		return nil, httputil.NotFound("Event not found")
	}
	e, err := a.visibleEvent(r.Context(), acc, pathVar(r, "eventId"))
	if err != nil {
		return nil, err
	}
	return a.clientEvent(r.Context(), e, s.DeviceID), nil
}

// getContext serves GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}.
func (a *API) getContext(r *http.Request, s *accounts.Session) (any, error) {
	acc, err := a.access(r.Context(), s.UserID, pathVar(r, "roomId"))
	if err != nil {
		return nil, err
	}
	a.withIgnored(r.Context(), acc, s.UserID)
	e, err := a.visibleEvent(r.Context(), acc, pathVar(r, "eventId"))
	if err != nil {
		return nil, err
	}
	limit := 10
	if l := r.URL.Query().Get("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil || limit < 0 {
			return nil, httputil.InvalidParam("limit must be a non-negative integer")
		}
	}
	limit = min(limit, 100)
	f, err := roomFilterParam(r)
	if err != nil {
		return nil, err
	}
	beforeN, afterN := limit/2, limit-limit/2
	c, err := a.contextAround(r.Context(), acc, f, e, beforeN, afterN)
	if err != nil {
		return nil, err
	}
	before, after := c.before, c.after
	last := e
	if len(after) > 0 {
		last = &after[len(after)-1]
	}
	state, err := a.stateAfterEvent(r.Context(), last, "")
	if err != nil {
		return nil, err
	}
	if f != nil && f.LazyLoadMembers {
		senders := map[string]bool{e.Sender: true}
		for _, x := range append(append([]storage.Event{}, before...), after...) {
			senders[x.Sender] = true
		}
		kept := state[:0]
		for _, st := range state {
			if st.Type != spec.MRoomMember || senders[*st.StateKey] {
				kept = append(kept, st)
			}
		}
		state = kept
	}
	return map[string]any{
		"event":         a.clientEvent(r.Context(), e, s.DeviceID),
		"events_before": a.clientEvents(r.Context(), before, s.DeviceID),
		"events_after":  a.clientEvents(r.Context(), after, s.DeviceID),
		"start":         topoToken(c.start),
		"end":           topoToken(c.end),
		"state":         a.clientEvents(r.Context(), state, s.DeviceID),
	}, nil
}

// timestampToEvent serves GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event.
func (a *API) timestampToEvent(r *http.Request, s *accounts.Session) (any, error) {
	acc, err := a.access(r.Context(), s.UserID, pathVar(r, "roomId"))
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	ts, err := strconv.ParseInt(q.Get("ts"), 10, 64)
	if err != nil {
		return nil, httputil.InvalidParam("ts must be a timestamp in milliseconds")
	}
	dir := q.Get("dir")
	if dir != "f" && dir != "b" {
		return nil, httputil.InvalidParam("dir must be f or b")
	}
	e, err := a.db.EventNearTimestamp(r.Context(), acc.info.NID, ts, dir == "f")
	if errors.Is(err, storage.ErrNotFound) || (err == nil && !acc.viewer.CanSee(e)) {
		return nil, httputil.NotFound("No event found %s %d", map[string]string{"f": "after", "b": "before"}[dir], ts)
	}
	if err != nil {
		return nil, err
	}
	return map[string]any{"event_id": e.EventID, "origin_server_ts": e.OriginTS}, nil
}

// validAlias checks the #localpart:server shape of a room alias.
func validAlias(alias string) bool {
	local, server, ok := strings.Cut(strings.TrimPrefix(alias, "#"), ":")
	return strings.HasPrefix(alias, "#") && ok && local != "" && server != "" && len(alias) <= 255
}
