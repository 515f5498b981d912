package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/clientapi/filter"
	"matrixhs/clientapi/internal/roomview"
	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

// getRoomState serves GET /_matrix/client/v3/rooms/{roomId}/state.
func (a *API) getRoomState(r *http.Request, s *accounts.Session) (any, error) {
	roomID, err := roomIDVar(r)
	if err != nil {
		return nil, err
	}
	acc, err := a.view.Access(r.Context(), s.UserID, roomID)
	if err != nil {
		return nil, err
	}
	events, err := a.view.StateEvents(r.Context(), acc, "")
	if err != nil {
		return nil, err
	}
	return a.view.ClientEvents(r.Context(), events, s.DeviceID), nil
}

// getStateEvent serves GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}.
func (a *API) getStateEvent(r *http.Request, s *accounts.Session) (any, error) {
	roomID, err := roomIDVar(r)
	if err != nil {
		return nil, err
	}
	acc, err := a.view.Access(r.Context(), s.UserID, roomID)
	if err != nil {
		return nil, err
	}
	typ, key := pathVar(r, "eventType"), pathVar(r, "stateKey")
	events, err := a.view.StateEvents(r.Context(), acc, typ)
	if err != nil {
		return nil, err
	}
	for i := range events {
		if *events[i].StateKey != key {
			continue
		}
		if r.URL.Query().Get("format") == "event" {
			return a.view.ClientEvent(r.Context(), &events[i], s.DeviceID), nil
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
	acc, err := a.view.Access(r.Context(), s.UserID, pathVar(r, "roomId"))
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	var events []storage.Event
	if at := q.Get("at"); at != "" {
		pos, err := a.view.StreamFromToken(r.Context(), acc.Info.NID, at)
		if err != nil {
			return nil, err
		}
		if acc.UpTo != 0 && pos > acc.UpTo {
			pos = acc.UpTo
		}
		// As Synapse: only a point of the room's history the user may see
		// (the state just after pos, under the history visibility then).
		if !acc.Viewer.CanSee(&storage.Event{Type: "m.room.message", StreamPos: pos}) {
			return nil, httputil.Forbidden("You may not see the room's members at that point")
		}
		events, err = a.view.StateAtPos(r.Context(), acc.Info.NID, pos, spec.MRoomMember)
		if err != nil {
			return nil, err
		}
	} else if events, err = a.view.StateEvents(r.Context(), acc, spec.MRoomMember); err != nil {
		return nil, err
	}
	want, notWant := q.Get("membership"), q.Get("not_membership")
	var chunk []storage.Event
	for _, e := range events {
		m := roomview.ContentString(e.JSON, "membership")
		if (want != "" && m != want) || (notWant != "" && m == notWant) {
			continue
		}
		chunk = append(chunk, e)
	}
	return map[string]any{"chunk": a.view.ClientEvents(r.Context(), chunk, s.DeviceID)}, nil
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
		if roomview.ContentString(e.JSON, "membership") != spec.Join {
			continue
		}
		var p joinedMember
		if d := roomview.ContentString(e.JSON, "displayname"); d != "" {
			p.DisplayName = &d
		}
		if av := roomview.ContentString(e.JSON, "avatar_url"); av != "" {
			p.AvatarURL = &av
		}
		joined[*e.StateKey] = p
	}
	return map[string]any{"joined": joined}, nil
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

// getMessages serves GET /_matrix/client/v3/rooms/{roomId}/messages.
func (a *API) getMessages(r *http.Request, s *accounts.Session) (any, error) {
	acc, err := a.view.Access(r.Context(), s.UserID, pathVar(r, "roomId"))
	if err != nil {
		return nil, err
	}
	a.view.WithIgnored(r.Context(), acc, s.UserID)
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
	from, to, err := a.view.PageRange(ctx, acc, q.Get("from"), q.Get("to"), backwards)
	if err != nil {
		return nil, err
	}
	if backwards {
		// A page from a sync token shows what came before that sync.
		if tok := q.Get("from"); tok != "" && roomview.IsStreamToken(tok) {
			if acc.StreamBound, err = roomview.ParseToken(tok); err != nil {
				return nil, err
			}
		}
	}
	events, next, done, err := a.view.TopoPage(ctx, acc, f, from, to, backwards, limit)
	if err != nil {
		return nil, err
	}
	if backwards && q.Get("to") == "" {
		if events, next, done, err = a.pageBackfilled(ctx, acc, f, from, events, next, done, limit); err != nil {
			return nil, err
		}
	}
	// start is the token given, or where "now" is in the stream.
	start := q.Get("from")
	if start == "" {
		start = roomview.TopoToken(from)
		if backwards {
			start = roomview.MakeToken(a.db.StreamPosition())
		}
	}
	resp := map[string]any{"start": start, "chunk": a.view.ClientEvents(ctx, events, s.DeviceID)}
	// As Synapse: end is left out only when the page is empty and the room
	// has nothing more; a page holding events always has one (the next
	// request may then come back empty), and so does an empty page that
	// ran out of scan budget.
	if !done || len(events) > 0 {
		resp["end"] = roomview.TopoToken(next)
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
func (a *API) lazyMembers(ctx context.Context, acc *roomview.Access, events []storage.Event) ([]json.RawMessage, error) {
	senders := map[string]bool{}
	for _, e := range events {
		senders[e.Sender] = true
	}
	members, err := a.view.StateEvents(ctx, acc, spec.MRoomMember)
	if err != nil {
		return nil, err
	}
	var out []storage.Event
	for _, m := range members {
		if senders[*m.StateKey] {
			out = append(out, m)
		}
	}
	return a.view.ClientEvents(ctx, out, ""), nil
}

// getEvent serves GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}.
func (a *API) getEvent(r *http.Request, s *accounts.Session) (any, error) {
	acc, err := a.view.Access(r.Context(), s.UserID, pathVar(r, "roomId"))
	if err != nil {
		// The spec answers 404 for events the user may not see.
		return nil, httputil.NotFound("Event not found")
	}
	e, err := a.view.VisibleEvent(r.Context(), acc, pathVar(r, "eventId"))
	if err != nil {
		return nil, err
	}
	return a.view.ClientEvent(r.Context(), e, s.DeviceID), nil
}

// getContext serves GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}.
func (a *API) getContext(r *http.Request, s *accounts.Session) (any, error) {
	acc, err := a.view.Access(r.Context(), s.UserID, pathVar(r, "roomId"))
	if err != nil {
		return nil, err
	}
	a.view.WithIgnored(r.Context(), acc, s.UserID)
	e, err := a.view.VisibleEvent(r.Context(), acc, pathVar(r, "eventId"))
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
	c, err := a.view.ContextAround(r.Context(), acc, f, e, beforeN, afterN)
	if err != nil {
		return nil, err
	}
	before, after := c.Before, c.After
	last := e
	if len(after) > 0 {
		last = &after[len(after)-1]
	}
	state, err := a.view.StateAfterEvent(r.Context(), last, "")
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
		"event":         a.view.ClientEvent(r.Context(), e, s.DeviceID),
		"events_before": a.view.ClientEvents(r.Context(), before, s.DeviceID),
		"events_after":  a.view.ClientEvents(r.Context(), after, s.DeviceID),
		"start":         roomview.TopoToken(c.Start),
		"end":           roomview.TopoToken(c.End),
		"state":         a.view.ClientEvents(r.Context(), state, s.DeviceID),
	}, nil
}

// timestampToEvent serves GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event.
func (a *API) timestampToEvent(r *http.Request, s *accounts.Session) (any, error) {
	acc, err := a.view.Access(r.Context(), s.UserID, pathVar(r, "roomId"))
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
	e, err := a.db.EventNearTimestamp(r.Context(), acc.Info.NID, ts, dir == "f")
	if errors.Is(err, storage.ErrNotFound) {
		e, err = nil, nil
	}
	if err == nil && a.rooms.Federates() {
		e, err = a.remoteNearTimestamp(r.Context(), acc, e, ts, dir == "f")
	}
	if (err == nil && e == nil) || (err == nil && !acc.Viewer.CanSee(e)) {
		return nil, httputil.NotFound("No event found %s %d", map[string]string{"f": "after", "b": "before"}[dir], ts)
	}
	if err != nil {
		return nil, err
	}
	return map[string]any{"event_id": e.EventID, "origin_server_ts": e.OriginTS}, nil
}

// remoteNearTimestamp asks the room's other servers for the event nearest
// ts when this server's history may miss it (local is nil, or a forwards
// lookup found an event right after a gap), and keeps whichever event is
// nearer, as Synapse does.
func (a *API) remoteNearTimestamp(ctx context.Context, acc *roomview.Access, local *storage.Event, ts int64, forwards bool) (*storage.Event, error) {
	if local != nil {
		if !forwards {
			return local, nil
		}
		gap, err := a.rooms.GapBefore(ctx, local)
		if err != nil || !gap {
			return local, err
		}
	}
	remote, err := a.rooms.RemoteEventNearTimestamp(ctx, acc.Info.ID, ts, forwards)
	if errors.Is(err, roomserver.ErrEventNotFound) {
		return local, nil
	}
	if err != nil {
		return nil, err
	}
	if local == nil || absDiff(remote.OriginTS, ts) < absDiff(local.OriginTS, ts) {
		return remote, nil
	}
	return local, nil
}

func absDiff(a, b int64) int64 {
	if a > b {
		return a - b
	}
	return b - a
}

// validAlias checks the #localpart:server shape of a room alias.
func validAlias(alias string) bool {
	local, server, ok := strings.Cut(strings.TrimPrefix(alias, "#"), ":")
	return strings.HasPrefix(alias, "#") && ok && local != "" && server != "" && len(alias) <= 255
}
