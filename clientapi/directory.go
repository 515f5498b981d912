package clientapi

// Room aliases, the room directory and /publicRooms (spec: "Room aliases",
// "Room directory", "Listing rooms").

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"unicode"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/clientapi/internal/roomview"
	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/internal/roomdir"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

// aliasParam reads and checks the {roomAlias} path variable; local reports
// whether the alias belongs to this server.
func (a *API) aliasParam(r *http.Request) (alias string, local bool, err error) {
	alias = pathVar(r, "roomAlias")
	localpart, server, ok := strings.Cut(strings.TrimPrefix(alias, "#"), ":")
	if !strings.HasPrefix(alias, "#") || !ok || localpart == "" || len(alias) > 255 ||
		strings.IndexFunc(localpart, func(c rune) bool { return unicode.IsSpace(c) || unicode.IsControl(c) }) >= 0 {
		return "", false, httputil.InvalidParam("Room alias invalid: %q", alias)
	}
	if _, _, valid := spec.ParseAndValidateServerName(spec.ServerName(server)); !valid {
		return "", false, httputil.InvalidParam("Room alias invalid: bad server name in %q", alias)
	}
	return alias, server == a.cfg.Server.Name, nil
}

// getRoomAlias serves GET /_matrix/client/v3/directory/room/{roomAlias}.
func (a *API) getRoomAlias(r *http.Request) (any, error) {
	alias, local, err := a.aliasParam(r)
	if err != nil {
		return nil, err
	}
	if !local {
		roomID, servers, err := a.rooms.LookupAlias(r.Context(), alias)
		if errors.Is(err, roomserver.ErrRoomNotFound) {
			return nil, httputil.NotFound("Room alias %s not found", alias)
		}
		if err != nil {
			return nil, err
		}
		if servers == nil {
			servers = []string{}
		}
		return map[string]any{"room_id": roomID, "servers": servers}, nil
	}
	roomID, err := a.db.AliasRoom(r.Context(), alias)
	if errors.Is(err, storage.ErrNotFound) && a.appsvc.QueryAlias(r.Context(), alias) {
		// An appservice created the room it was asked about.
		roomID, err = a.db.AliasRoom(r.Context(), alias)
	}
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("Room alias %s not found", alias)
	}
	if err != nil {
		return nil, err
	}
	return map[string]any{"room_id": roomID, "servers": []string{a.cfg.Server.Name}}, nil
}

// putRoomAlias serves PUT /_matrix/client/v3/directory/room/{roomAlias}.
func (a *API) putRoomAlias(r *http.Request, s *accounts.Session) (any, error) {
	alias, local, err := a.aliasParam(r)
	if err != nil {
		return nil, err
	}
	if !local {
		return nil, httputil.InvalidParam("Room alias must be local (on %s)", a.cfg.Server.Name)
	}
	if owner := a.appsvc.ExclusiveAlias(alias); owner != nil && a.appsvc.Caller(s) != owner {
		return nil, httputil.Exclusive("This alias is reserved by an application service.")
	}
	var body struct {
		RoomID *string `json:"room_id"`
	}
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.RoomID == nil {
		return nil, httputil.MissingParam("room_id is required")
	}
	if !strings.HasPrefix(*body.RoomID, "!") {
		return nil, httputil.InvalidParam("%q is not a room ID", *body.RoomID)
	}
	info, err := a.db.Room(r.Context(), *body.RoomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("Room %s not found", *body.RoomID)
	}
	if err != nil {
		return nil, err
	}
	if !s.IsAdmin {
		m, err := a.db.Membership(r.Context(), info.NID, s.UserID)
		if err != nil {
			return nil, err
		}
		if m != spec.Join {
			return nil, httputil.Forbidden("You must be in the room to create an alias for it")
		}
	}
	err = a.db.Write(r.Context(), func(tx *storage.Tx) error { return tx.InsertAlias(r.Context(), alias, info.NID, s.UserID) })
	if errors.Is(err, storage.ErrExists) {
		return nil, &httputil.Error{Status: http.StatusConflict, Code: "M_UNKNOWN", Msg: "Room alias " + alias + " already exists"}
	}
	if err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}

// deleteRoomAlias serves DELETE /_matrix/client/v3/directory/room/{roomAlias}.
// The alias's creator, server admins and room members who may change the
// room's canonical alias may delete it (as Synapse does).
func (a *API) deleteRoomAlias(r *http.Request, s *accounts.Session) (any, error) {
	alias, local, err := a.aliasParam(r)
	if err != nil {
		return nil, err
	}
	if !local {
		return nil, httputil.NotFound("Room alias %s not found", alias)
	}
	ctx := r.Context()
	roomID, err := a.db.AliasRoom(ctx, alias)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("Room alias %s not found", alias)
	}
	if err != nil {
		return nil, err
	}
	creator, err := a.db.AliasCreator(ctx, alias)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	if creator != s.UserID {
		ok, err := a.canChangeRoomList(ctx, s, roomID)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, httputil.Forbidden("You don't have permission to delete the alias")
		}
	}
	err = a.db.Write(ctx, func(tx *storage.Tx) error { return tx.DeleteAlias(ctx, alias) })
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("Room alias %s not found", alias) // deleted concurrently
	}
	if err != nil {
		return nil, err
	}
	// The alias is gone whatever happens to the canonical alias event: the
	// spec recommends succeeding even when the user may not update it.
	a.dropCanonicalAlias(context.WithoutCancel(ctx), s, roomID, alias)
	return httputil.Empty, nil
}

// dropCanonicalAlias removes a deleted alias from the room's
// m.room.canonical_alias event (alias and alt_aliases), sent as the user.
func (a *API) dropCanonicalAlias(ctx context.Context, s *accounts.Session, roomID, alias string) {
	log := httputil.Logger(ctx).WithField("room_id", roomID).WithField("alias", alias)
	info, err := a.db.Room(ctx, roomID)
	if err != nil {
		log.WithError(err).Warn("updating canonical alias after alias deletion")
		return
	}
	events, err := a.db.CurrentStateEvents(ctx, info.NID, "m.room.canonical_alias")
	if err != nil {
		log.WithError(err).Warn("updating canonical alias after alias deletion")
		return
	}
	for _, e := range events {
		if *e.StateKey != "" {
			continue
		}
		var content map[string]any
		if json.Unmarshal(roomview.Content(e.JSON), &content) != nil || content == nil {
			return
		}
		changed := false
		if cur, _ := content["alias"].(string); cur == alias {
			delete(content, "alias")
			changed = true
		}
		if alts, ok := content["alt_aliases"].([]any); ok {
			kept := []any{}
			for _, alt := range alts {
				if alt != alias {
					kept = append(kept, alt)
				}
			}
			if len(kept) != len(alts) {
				changed = true
				if len(kept) > 0 {
					content["alt_aliases"] = kept
				} else {
					delete(content, "alt_aliases")
				}
			}
		}
		if !changed {
			return
		}
		raw, _ := json.Marshal(content)
		empty := ""
		_, err := a.rooms.Send(ctx, roomserver.LocalEvent{
			RoomID: roomID, Sender: s.UserID, DeviceID: s.DeviceID, Type: "m.room.canonical_alias", StateKey: &empty, Content: raw,
		})
		if err != nil {
			log.WithError(err).Info("could not update the canonical alias event after deleting the alias")
		}
		return
	}
}

// getLocalAliases serves GET /_matrix/client/v3/rooms/{roomId}/aliases:
// for members, server admins, and anyone when the room is world_readable.
func (a *API) getLocalAliases(r *http.Request, s *accounts.Session) (any, error) {
	ctx := r.Context()
	info, err := a.db.Room(ctx, pathVar(r, "roomId"))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.Forbidden("You are not a member of this room")
	}
	if err != nil {
		return nil, err
	}
	if !s.IsAdmin {
		m, err := a.db.Membership(ctx, info.NID, s.UserID)
		if err != nil {
			return nil, err
		}
		if m != spec.Join {
			vis, err := a.currentStateEvent(ctx, info.NID, spec.MRoomHistoryVisibility)
			if err != nil {
				return nil, err
			}
			if vis == nil || roomview.ContentString(vis.JSON, "history_visibility") != "world_readable" {
				return nil, httputil.Forbidden("You are not a member of this room")
			}
		}
	}
	aliases, err := a.db.RoomAliases(ctx, info.NID)
	if err != nil {
		return nil, err
	}
	return map[string]any{"aliases": aliases}, nil
}

// currentStateEvent returns the room's current state event of typ with an
// empty state key, or nil.
func (a *API) currentStateEvent(ctx context.Context, roomNID int64, typ string) (*storage.Event, error) {
	events, err := a.db.CurrentStateEvents(ctx, roomNID, typ)
	if err != nil {
		return nil, err
	}
	for i := range events {
		if *events[i].StateKey == "" {
			return &events[i], nil
		}
	}
	return nil, nil
}

// canChangeRoomList reports whether the user may edit the room's directory
// entry and delete its aliases: server admins may, and joined members whose
// power level lets them send m.room.canonical_alias (Synapse's rule).
func (a *API) canChangeRoomList(ctx context.Context, s *accounts.Session, roomID string) (bool, error) {
	if s.IsAdmin {
		return true, nil
	}
	info, err := a.db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	m, err := a.db.Membership(ctx, info.NID, s.UserID)
	if err != nil || m != spec.Join {
		return false, err
	}
	ver, err := gomatrixserverlib.GetRoomVersion(gomatrixserverlib.RoomVersion(info.Version))
	if err != nil {
		return false, err
	}
	create, err := a.currentStateEvent(ctx, info.NID, spec.MRoomCreate)
	if err != nil {
		return false, err
	}
	if create != nil && ver.PrivilegedCreators() {
		// From room version 12 creators have unlimited power.
		if create.Sender == s.UserID {
			return true, nil
		}
		var c struct {
			AdditionalCreators []string `json:"additional_creators"`
		}
		json.Unmarshal(roomview.Content(create.JSON), &c)
		for _, u := range c.AdditionalCreators {
			if u == s.UserID {
				return true, nil
			}
		}
	}
	plEvent, err := a.currentStateEvent(ctx, info.NID, spec.MRoomPowerLevels)
	if err != nil {
		return false, err
	}
	var pl gomatrixserverlib.PowerLevelContent
	if plEvent != nil {
		pdu, err := roomserver.ParseEvent(plEvent)
		if err != nil {
			return false, err
		}
		if pl, err = gomatrixserverlib.NewPowerLevelContentFromEvent(pdu); err != nil {
			return false, err
		}
	} else {
		// Without power levels the creator has full power and state needs 50.
		pl.Defaults()
		if create != nil {
			pl.Users = map[string]int64{create.Sender: 100}
		}
	}
	return pl.UserLevel(spec.SenderID(s.UserID)) >= pl.EventLevel("m.room.canonical_alias", true), nil
}

// getRoomVisibility serves GET /_matrix/client/v3/directory/list/room/{roomId}.
func (a *API) getRoomVisibility(r *http.Request) (any, error) {
	info, err := a.db.Room(r.Context(), pathVar(r, "roomId"))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("Room not found")
	}
	if err != nil {
		return nil, err
	}
	vis := "private"
	if info.Published {
		vis = "public"
	}
	return map[string]string{"visibility": vis}, nil
}

// putRoomVisibility serves PUT /_matrix/client/v3/directory/list/room/{roomId}.
func (a *API) putRoomVisibility(r *http.Request, s *accounts.Session) (any, error) {
	var body struct {
		Visibility *string `json:"visibility"`
	}
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	public := true // the spec's default
	if body.Visibility != nil {
		switch *body.Visibility {
		case "public":
		case "private":
			public = false
		default:
			return nil, httputil.InvalidParam("visibility must be public or private")
		}
	}
	roomID := pathVar(r, "roomId")
	info, err := a.db.Room(r.Context(), roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("Room not found")
	}
	if err != nil {
		return nil, err
	}
	ok, err := a.canChangeRoomList(r.Context(), s, roomID)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, httputil.Forbidden("You need to be a room moderator to change its room directory visibility")
	}
	if info.Published != public {
		err := a.db.Write(r.Context(), func(tx *storage.Tx) error { return tx.SetRoomPublished(r.Context(), info.NID, public) })
		if err != nil {
			return nil, err
		}
	}
	return httputil.Empty, nil
}

// Public room list.

// getPublicRooms serves GET /_matrix/client/v3/publicRooms (access token
// optional; required for another server's list, as in Synapse).
func (a *API) getPublicRooms(r *http.Request, s *accounts.Session) (any, error) {
	pq, err := roomdir.ParseGet(r.URL.Query())
	if err != nil {
		return nil, err
	}
	if server, remote, err := a.directoryServer(r, s); err != nil || remote {
		if err != nil {
			return nil, err
		}
		return a.remotePublicRooms(r.Context(), server, remoteGetBody(r.URL.Query(), pq))
	}
	return roomdir.PublicRooms(r.Context(), a.db, pq)
}

// postPublicRooms serves POST /_matrix/client/v3/publicRooms.
func (a *API) postPublicRooms(r *http.Request, s *accounts.Session) (any, error) {
	var body roomdir.Body
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	pq, err := body.Query()
	if err != nil {
		return nil, err
	}
	if server, remote, err := a.directoryServer(r, s); err != nil || remote {
		if err != nil {
			return nil, err
		}
		return a.remotePublicRooms(r.Context(), server, body)
	}
	return roomdir.PublicRooms(r.Context(), a.db, pq)
}
