package admin

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
	"matrixhs/internal/matrixerr"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

// Rooms as an admin sees them, whatever the history visibility: state,
// messages, forward extremities; and joining users to rooms, making a user
// a room's admin.

// adminRoomParam is the room a path's {roomId} names (a room ID, or for
// the paths that take one, a local alias): 400 for neither, 404 unknown.
func (a *API) adminRoomParam(ctx context.Context, idOrAlias string) (*storage.Room, error) {
	roomID := idOrAlias
	switch {
	case strings.HasPrefix(idOrAlias, "#"):
		id, err := a.db.AliasRoom(ctx, idOrAlias)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, httputil.NotFound("Room alias %s not found", idOrAlias)
		}
		if err != nil {
			return nil, err
		}
		roomID = id
	case !strings.HasPrefix(idOrAlias, "!") || len(idOrAlias) > 255:
		return nil, httputil.InvalidParam("%q is not a room ID or alias", idOrAlias)
	}
	info, err := a.db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("Room not found")
	}
	return info, err
}

// adminRoomState serves GET /_synapse/admin/v1/rooms/{roomId}/state[?type=].
func (a *API) adminRoomState(r *http.Request, _ *accounts.Session) (any, error) {
	info, err := a.adminRoomParam(r.Context(), httputil.PathVar(r, "roomId"))
	if err != nil {
		return nil, err
	}
	events, err := a.db.CurrentStateEvents(r.Context(), info.NID, r.URL.Query().Get("type"))
	if err != nil {
		return nil, err
	}
	return map[string]any{"state": a.view.ClientEvents(r.Context(), events, "")}, nil
}

// adminRoomMessages serves GET /_synapse/admin/v1/rooms/{roomId}/messages:
// /messages over every event of the room, visible to anyone or not.
func (a *API) adminRoomMessages(r *http.Request, _ *accounts.Session) (any, error) {
	ctx := r.Context()
	info, err := a.adminRoomParam(ctx, httputil.PathVar(r, "roomId"))
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	dir := q.Get("dir")
	if dir != "" && dir != "b" && dir != "f" {
		return nil, httputil.InvalidParam("dir must be b or f")
	}
	backwards := dir == "b"
	limit := 10
	if l := q.Get("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil || limit < 0 {
			return nil, httputil.InvalidParam("limit must be a non-negative integer")
		}
	}
	limit = min(limit, 1000)
	var f *filter.RoomEventFilter
	if raw := q.Get("filter"); raw != "" {
		f = &filter.RoomEventFilter{}
		if err := json.Unmarshal([]byte(raw), f); err != nil {
			return nil, httputil.BadJSON("filter is not a valid RoomEventFilter: %v", err)
		}
		if err := f.Validate("filter"); err != nil {
			return nil, httputil.BadJSON("%v", err)
		}
	}
	from, to := storage.TopoPos{}, storage.TopoEnd
	if backwards {
		from, to = storage.TopoEnd, storage.TopoPos{}
	}
	if tok := q.Get("from"); tok != "" {
		if from, err = a.view.TopoFromToken(ctx, info.NID, tok); err != nil {
			return nil, err
		}
	}
	if tok := q.Get("to"); tok != "" {
		if to, err = a.view.TopoFromToken(ctx, info.NID, tok); err != nil {
			return nil, err
		}
	}
	events, next, done, err := a.pageAll(ctx, info.NID, f, from, to, backwards, limit)
	if err != nil {
		return nil, err
	}
	start := q.Get("from")
	if start == "" {
		start = roomview.TopoToken(from)
	}
	out := map[string]any{"start": start, "chunk": a.view.ClientEvents(ctx, events, ""), "state": []any{}}
	if !done {
		out["end"] = roomview.TopoToken(next)
	}
	return out, nil
}

// pageAll is a page of a room's timeline in topological order, every
// event (an admin reads everything) matching f.
func (a *API) pageAll(ctx context.Context, roomNID int64, f *filter.RoomEventFilter, from, to storage.TopoPos, backwards bool,
	limit int) (events []storage.Event, next storage.TopoPos, done bool, err error) {
	next = from
	const batch = 100
	for len(events) < limit {
		got, err := a.db.TopoTimeline(ctx, roomNID, next, to, backwards, batch)
		if err != nil {
			return nil, next, false, err
		}
		for i := range got {
			e := &got[i]
			if backwards {
				next = storage.TopoBefore(e)
			} else {
				next = storage.TopoOf(e)
			}
			if f.Matches(e.RoomID, e.Type, e.Sender, roomview.Content(e.JSON)) {
				events = append(events, *e)
				if len(events) == limit {
					return events, next, false, nil
				}
			}
		}
		if len(got) < batch {
			return events, next, true, nil
		}
	}
	return events, next, false, nil
}

// adminJoin serves POST /_synapse/admin/v1/join/{roomIdOrAlias}: joins a
// local user to a room, as Synapse: directly when the room is public,
// else through an invite from the admin, who must be in the room.
func (a *API) adminJoin(r *http.Request, s *accounts.Session) (any, error) {
	var req struct {
		UserID *string `json:"user_id"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.UserID == nil {
		return nil, httputil.MissingParam("user_id is required")
	}
	ctx := r.Context()
	if _, err := a.adminAccountOf(ctx, *req.UserID); err != nil {
		return nil, err
	}
	info, err := a.adminRoomParam(ctx, httputil.PathVar(r, "roomIdOrAlias"))
	if err != nil {
		return nil, err
	}
	user := *req.UserID
	if m, err := a.rooms.Membership(ctx, info.ID, user); err != nil {
		return nil, matrixerr.From(err)
	} else if m == spec.Join {
		return map[string]any{"room_id": info.ID}, nil
	}
	joinRule, err := a.joinRule(ctx, info.NID)
	if err != nil {
		return nil, err
	}
	if joinRule != spec.Public {
		if m, err := a.rooms.Membership(ctx, info.ID, s.UserID); err != nil || m != spec.Join {
			return nil, httputil.Forbidden("%s is not in the room, so cannot invite %s", s.UserID, user)
		}
		_, err := a.rooms.SetMembership(ctx, roomserver.MembershipRequest{RoomID: info.ID, Sender: s.UserID, Target: user, Membership: spec.Invite})
		if err != nil {
			return nil, matrixerr.From(err)
		}
	}
	if _, err := a.rooms.SetMembership(ctx, roomserver.MembershipRequest{RoomID: info.ID, Sender: user, Target: user, Membership: spec.Join}); err != nil {
		return nil, matrixerr.From(err)
	}
	return map[string]any{"room_id": info.ID}, nil
}

// adminAccountOf is the existing local account of a user ID from a body.
func (a *API) adminAccountOf(ctx context.Context, userID string) (*storage.Account, error) {
	if !strings.HasPrefix(userID, "@") {
		return nil, httputil.InvalidParam("%q is not a user ID", userID)
	}
	if _, err := a.accounts.ParseLocalUser(userID); err != nil {
		return nil, httputil.InvalidParam("This endpoint can only be used with local users")
	}
	acc, err := a.adminAccount(ctx, userID)
	if err == nil && acc.Deactivated {
		return nil, httputil.Forbidden("%s is deactivated", userID)
	}
	return acc, err
}

func (a *API) joinRule(ctx context.Context, roomNID int64) (string, error) {
	evs, err := a.db.CurrentStateEvents(ctx, roomNID, spec.MRoomJoinRules)
	if err != nil || len(evs) == 0 {
		return "", err
	}
	return roomview.ContentString(evs[0].JSON, "join_rule"), nil
}

// adminMakeRoomAdmin serves POST /_synapse/admin/v1/rooms/{roomIdOrAlias}/make_room_admin:
// the local member with the most power gives the user (the caller by
// default) that power, inviting them first when they are not in the room
// and it is not public.
func (a *API) adminMakeRoomAdmin(r *http.Request, s *accounts.Session) (any, error) {
	var req struct {
		UserID *string `json:"user_id"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	ctx := r.Context()
	target := s.UserID
	if req.UserID != nil {
		target = *req.UserID
	}
	if _, err := a.adminAccountOf(ctx, target); err != nil {
		return nil, err
	}
	info, err := a.adminRoomParam(ctx, httputil.PathVar(r, "roomIdOrAlias"))
	if err != nil {
		return nil, err
	}
	plEvents, err := a.db.CurrentStateEvents(ctx, info.NID, spec.MRoomPowerLevels)
	if err != nil {
		return nil, err
	}
	if len(plEvents) == 0 {
		return nil, httputil.InvalidParam("The room has no power levels")
	}
	var pl map[string]json.RawMessage
	if err := json.Unmarshal(roomview.Content(plEvents[0].JSON), &pl); err != nil {
		return nil, err
	}
	users := map[string]int64{}
	if raw, ok := pl["users"]; ok {
		_ = json.Unmarshal(raw, &users)
	}
	granter, level, err := a.mostPowerfulLocal(ctx, info.NID, users)
	if err != nil {
		return nil, err
	}
	if m, _ := a.rooms.Membership(ctx, info.ID, target); m != spec.Join {
		if rule, _ := a.joinRule(ctx, info.NID); rule != spec.Public {
			if _, err := a.rooms.SetMembership(ctx, roomserver.MembershipRequest{RoomID: info.ID, Sender: granter, Target: target, Membership: spec.Invite}); err != nil {
				return nil, matrixerr.From(err)
			}
		}
	}
	users[target] = level
	usersJSON, err := json.Marshal(users)
	if err != nil {
		return nil, err
	}
	pl["users"] = usersJSON
	content, err := json.Marshal(pl)
	if err != nil {
		return nil, err
	}
	empty := ""
	if _, err := a.rooms.Send(ctx, roomserver.LocalEvent{RoomID: info.ID, Sender: granter, Type: spec.MRoomPowerLevels, StateKey: &empty, Content: content}); err != nil {
		return nil, matrixerr.From(err)
	}
	return httputil.Empty, nil
}

// mostPowerfulLocal is the joined local member with the highest power
// level (400 when no local member has any).
func (a *API) mostPowerfulLocal(ctx context.Context, roomNID int64, users map[string]int64) (string, int64, error) {
	members, err := a.db.JoinedMembers(ctx, roomNID)
	if err != nil {
		return "", 0, err
	}
	best, level := "", int64(-1<<62)
	for _, m := range members {
		if _, err := a.accounts.ParseLocalUser(m); err != nil {
			continue
		}
		if l, ok := users[m]; ok && l > level {
			best, level = m, l
		}
	}
	if best == "" {
		return "", 0, httputil.InvalidParam("No local admin user in room")
	}
	return best, level, nil
}

// adminForwardExtremities serves GET and DELETE
// /_synapse/admin/v1/rooms/{roomIdOrAlias}/forward_extremities.
func (a *API) adminForwardExtremities(r *http.Request, _ *accounts.Session) (any, error) {
	ctx := r.Context()
	info, err := a.adminRoomParam(ctx, httputil.PathVar(r, "roomIdOrAlias"))
	if err != nil {
		return nil, err
	}
	if r.Method == http.MethodDelete {
		n, err := a.rooms.TrimExtremities(ctx, info.ID)
		if err != nil {
			return nil, matrixerr.From(err)
		}
		return map[string]any{"deleted": n}, nil
	}
	results := []map[string]any{}
	for _, id := range info.Extremities {
		ev, err := a.db.EventByID(ctx, id)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		// This server does not record when an event arrived.
		results = append(results, map[string]any{"event_id": id, "state_group": ev.StateBefore, "depth": ev.Depth, "received_ts": nil})
	}
	return map[string]any{"count": len(results), "results": results}, nil
}
