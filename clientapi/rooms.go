package clientapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/internal/ids"
	"matrixhs/internal/matrixerr"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

type createRoomRequest struct {
	Visibility                string                  `json:"visibility"`
	RoomAliasName             string                  `json:"room_alias_name"`
	Name                      *string                 `json:"name"`
	Topic                     *string                 `json:"topic"`
	Invite                    []string                `json:"invite"`
	Invite3PID                []json.RawMessage       `json:"invite_3pid"`
	RoomVersion               string                  `json:"room_version"`
	CreationContent           json.RawMessage         `json:"creation_content"`
	InitialState              []roomserver.StateEvent `json:"initial_state"`
	Preset                    string                  `json:"preset"`
	IsDirect                  bool                    `json:"is_direct"`
	PowerLevelContentOverride json.RawMessage         `json:"power_level_content_override"`
}

// createRoom serves POST /_matrix/client/v3/createRoom.
func (a *API) createRoom(r *http.Request, s *accounts.Session) (any, error) {
	var req createRoomRequest
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	switch req.Visibility {
	case "", "private", "public":
	default:
		return nil, httputil.InvalidParam("visibility must be public or private")
	}
	if len(req.Invite3PID) > 0 {
		return nil, httputil.Unknown("third-party invites are not supported")
	}
	if req.Name != nil && len(*req.Name) > 255 {
		return nil, httputil.BadJSON("name is longer than 255 bytes")
	}
	for _, obj := range []json.RawMessage{req.CreationContent, req.PowerLevelContentOverride} {
		if len(obj) > 0 && string(obj) != "null" && obj[0] != '{' {
			return nil, httputil.BadJSON("creation_content and power_level_content_override must be objects")
		}
	}
	for _, ev := range req.InitialState {
		if ev.Type == "" || (len(ev.Content) > 0 && ev.Content[0] != '{') {
			return nil, httputil.BadJSON("initial_state events need a type and an object content")
		}
	}
	version := req.RoomVersion
	if version == "" {
		version = a.cfg.Rooms.DefaultRoomVersion
	}
	alias := ""
	if req.RoomAliasName != "" {
		if strings.ContainsAny(req.RoomAliasName, ":# \t\n") {
			return nil, &httputil.Error{Status: http.StatusBadRequest, Code: "M_INVALID_PARAM", Msg: "room_alias_name may not contain ':', '#' or whitespace"}
		}
		alias = "#" + req.RoomAliasName + ":" + a.cfg.Server.Name
		if owner := a.appsvc.ExclusiveAlias(alias); owner != nil && a.appsvc.Caller(s) != owner {
			return nil, httputil.Exclusive("This alias is reserved by an application service.")
		}
	}
	acc, err := a.db.Account(r.Context(), s.UserID)
	if err != nil {
		return nil, err
	}
	if s.ShadowBanned {
		req.Invite = nil // dropped, as their other invites (moderation.go)
	}
	roomID, err := a.rooms.CreateRoom(r.Context(), roomserver.CreateRoomRequest{
		Creator: s.UserID, DeviceID: s.DeviceID, Version: version, Preset: req.Preset,
		Public: req.Visibility == "public", IsDirect: req.IsDirect, Invite: req.Invite,
		Name: req.Name, Topic: req.Topic, Alias: alias, InitialState: req.InitialState,
		CreationContent: req.CreationContent, PowerLevelOverride: req.PowerLevelContentOverride,
		DisplayName: acc.DisplayName, AvatarURL: acc.AvatarURL,
	})
	if err != nil {
		return nil, matrixerr.From(err)
	}
	return map[string]string{"room_id": roomID}, nil
}

// roomIDVar is the {roomId} path parameter, which must be a room ID.
func roomIDVar(r *http.Request) (string, error) {
	id := pathVar(r, "roomId")
	if err := ids.RoomID(id); err != nil {
		return "", httputil.InvalidParam("%v", err)
	}
	return id, nil
}

// viaServers are the servers a join or knock names: via, or the older
// server_name that SDKs still send (as Synapse, via wins).
func viaServers(r *http.Request) []string {
	q := r.URL.Query()
	if via := q["via"]; len(via) > 0 {
		return via
	}
	return q["server_name"]
}

// resolveRoom accepts a room ID or an alias, and returns the servers to
// reach the room through when this server is not in it: those the query
// names (viaServers), then, for an alias of another server, those its
// directory gives.
func (a *API) resolveRoom(r *http.Request, idOrAlias string) (string, []string, error) {
	servers := viaServers(r)
	switch {
	case strings.HasPrefix(idOrAlias, "!"):
		if err := ids.RoomID(idOrAlias); err != nil {
			return "", nil, httputil.InvalidParam("%v", err)
		}
		return idOrAlias, servers, nil
	case strings.HasPrefix(idOrAlias, "#"):
		if err := ids.RoomAlias(idOrAlias); err != nil {
			return "", nil, httputil.InvalidParam("%v", err)
		}
		if _, server, _ := strings.Cut(idOrAlias, ":"); server != a.cfg.Server.Name {
			id, more, err := a.rooms.LookupAlias(r.Context(), idOrAlias)
			if errors.Is(err, roomserver.ErrRoomNotFound) {
				return "", nil, httputil.NotFound("Room alias %s not found", idOrAlias)
			}
			if err != nil {
				return "", nil, err
			}
			return id, append(servers, more...), nil
		}
		id, err := a.db.AliasRoom(r.Context(), idOrAlias)
		if errors.Is(err, storage.ErrNotFound) {
			return "", nil, httputil.NotFound("Room alias %s not found", idOrAlias)
		}
		return id, servers, err
	default:
		return "", nil, httputil.InvalidParam("%q is neither a room ID nor an alias", idOrAlias)
	}
}

type membershipBody struct {
	UserID string `json:"user_id"`
	Reason string `json:"reason"`
}

// changeMembership performs a membership change and maps its errors.
func (a *API) changeMembership(r *http.Request, s *accounts.Session, req roomserver.MembershipRequest) error {
	req.Sender, req.DeviceID = s.UserID, s.DeviceID
	roomID, target, membership := req.RoomID, req.Target, req.Membership
	if membership == spec.Join || membership == spec.Knock {
		acc, err := a.db.Account(r.Context(), s.UserID)
		if err != nil {
			return err
		}
		req.DisplayName, req.AvatarURL = acc.DisplayName, acc.AvatarURL
	}
	if membership == spec.Invite {
		if err := a.checkInvitee(r, target); err != nil {
			return err
		}
	}
	_, err := a.rooms.SetMembership(r.Context(), req)
	if err == nil && membership == spec.Join {
		err = a.db.Write(r.Context(), func(tx *storage.Tx) error {
			info, err := a.db.Room(r.Context(), roomID)
			if err != nil {
				return err
			}
			return tx.SetForgotten(r.Context(), s.UserID, info.NID, false)
		})
	}
	return matrixerr.From(err)
}

func (a *API) checkInvitee(r *http.Request, target string) error {
	uid, err := spec.NewUserID(target, true)
	if err != nil {
		return httputil.InvalidParam("%q is not a user ID", target)
	}
	if string(uid.Domain()) != a.cfg.Server.Name {
		if !a.rooms.Federates() {
			return httputil.Forbidden("this server does not federate: cannot invite %s", target)
		}
		return nil // the invitee's server answers for its users
	}
	if _, err := a.db.Account(r.Context(), target); errors.Is(err, storage.ErrNotFound) {
		return httputil.NotFound("Unknown user %s", target)
	} else if err != nil {
		return err
	}
	return nil
}

// joinRoomByIDOrAlias serves POST /_matrix/client/v3/join/{roomIdOrAlias}.
// Like Synapse, the whole body becomes member content (custom keys stay).
func (a *API) joinRoomByIDOrAlias(r *http.Request, s *accounts.Session) (any, error) {
	roomID, servers, err := a.resolveRoom(r, pathVar(r, "roomIdOrAlias"))
	if err != nil {
		return nil, err
	}
	var body map[string]any
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	reason, ok := body["reason"].(string)
	if _, present := body["reason"]; present && !ok {
		return nil, httputil.BadJSON("reason must be a string")
	}
	for _, k := range []string{"displayname", "avatar_url"} {
		if v, present := body[k]; present {
			if _, ok := v.(string); !ok {
				return nil, httputil.BadJSON("%s must be a string", k)
			}
		}
	}
	return a.join(r, s, roomserver.MembershipRequest{RoomID: roomID, Target: s.UserID, Membership: spec.Join, Reason: reason, Content: body, Servers: servers})
}

// joinRoom serves POST /_matrix/client/v3/rooms/{roomId}/join, which keeps
// only the reason of its body.
func (a *API) joinRoom(r *http.Request, s *accounts.Session) (any, error) {
	roomID, err := roomIDVar(r)
	if err != nil {
		return nil, err
	}
	var body membershipBody
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	return a.join(r, s, roomserver.MembershipRequest{RoomID: roomID, Target: s.UserID, Membership: spec.Join, Reason: body.Reason,
		Servers: viaServers(r)})
}

func (a *API) join(r *http.Request, s *accounts.Session, req roomserver.MembershipRequest) (any, error) {
	if err := a.changeMembership(r, s, req); err != nil {
		return nil, err
	}
	return map[string]string{"room_id": req.RoomID}, nil
}

// knockRoom serves POST /_matrix/client/v3/knock/{roomIdOrAlias}.
func (a *API) knockRoom(r *http.Request, s *accounts.Session) (any, error) {
	roomID, servers, err := a.resolveRoom(r, pathVar(r, "roomIdOrAlias"))
	if err != nil {
		return nil, err
	}
	var body membershipBody
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	req := roomserver.MembershipRequest{RoomID: roomID, Target: s.UserID, Membership: spec.Knock, Reason: body.Reason, Servers: servers}
	if err := a.changeMembership(r, s, req); err != nil {
		return nil, err
	}
	return map[string]string{"room_id": roomID}, nil
}

// leaveRoom serves POST /_matrix/client/v3/rooms/{roomId}/leave.
func (a *API) leaveRoom(r *http.Request, s *accounts.Session) (any, error) {
	roomID, err := roomIDVar(r)
	if err != nil {
		return nil, err
	}
	var body membershipBody
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if err := a.changeMembership(r, s, roomserver.MembershipRequest{RoomID: roomID, Target: s.UserID, Membership: spec.Leave, Reason: body.Reason}); err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}

// targetMembership serves invite, kick, ban and unban, which name a target user.
func (a *API) targetMembership(membership string) authed {
	return func(r *http.Request, s *accounts.Session) (any, error) {
		var body membershipBody
		if err := httputil.DecodeJSON(r, &body); err != nil {
			return nil, err
		}
		if body.UserID == "" {
			return nil, httputil.MissingParam("user_id is required")
		}
		if err := ids.UserID(body.UserID); err != nil {
			return nil, httputil.InvalidParam("%v", err)
		}
		roomID, err := roomIDVar(r)
		if err != nil {
			return nil, err
		}
		req := roomserver.MembershipRequest{RoomID: roomID, Target: body.UserID, Membership: membership, Reason: body.Reason}
		switch pathVar(r, "action") {
		case "kick":
			req.Membership, req.Kick = spec.Leave, true
		case "unban":
			m, err := a.rooms.Membership(r.Context(), roomID, body.UserID)
			if err != nil {
				return nil, matrixerr.From(err)
			}
			if m != spec.Ban {
				return nil, httputil.Forbidden("%s is not banned", body.UserID)
			}
			req.Membership = spec.Leave
		}
		if err := a.changeMembership(r, s, req); err != nil {
			return nil, err
		}
		return httputil.Empty, nil
	}
}

// forgetRoom serves POST /_matrix/client/v3/rooms/{roomId}/forget.
func (a *API) forgetRoom(r *http.Request, s *accounts.Session) (any, error) {
	roomID, err := roomIDVar(r)
	if err != nil {
		return nil, err
	}
	info, err := a.db.Room(r.Context(), roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("Unknown room")
	}
	if err != nil {
		return nil, err
	}
	m, err := a.db.Membership(r.Context(), info.NID, s.UserID)
	if err != nil {
		return nil, err
	}
	if m == spec.Join || m == spec.Invite || m == spec.Knock {
		return nil, httputil.Unknown("leave the room before forgetting it")
	}
	if m == "" {
		return nil, httputil.NotFound("you were never in this room")
	}
	if err := a.db.Write(r.Context(), func(tx *storage.Tx) error { return tx.SetForgotten(r.Context(), s.UserID, info.NID, true) }); err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}

// joinedRooms serves GET /_matrix/client/v3/joined_rooms.
func (a *API) joinedRooms(r *http.Request, s *accounts.Session) (any, error) {
	ids, err := a.db.JoinedRooms(r.Context(), s.UserID)
	if err != nil {
		return nil, err
	}
	if ids == nil {
		ids = []string{}
	}
	return map[string]any{"joined_rooms": ids}, nil
}
