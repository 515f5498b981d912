package clientapi

// Room aliases, the room directory and /publicRooms (spec: "Room aliases",
// "Room directory", "Listing rooms").

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/clientapi/internal/roomview"
	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
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

// maxPublicRooms bounds one page of /publicRooms (also when no limit is given).
const maxPublicRooms = 1000

type publicRoomsQuery struct {
	limit      int
	since      string
	search     string
	roomTypes  []*string // nil entry: rooms without a type
	noNetworks bool      // a third-party network was asked for: none exist here
}

type publicRoomsResponse struct {
	Chunk     []publicRoomChunk `json:"chunk"`
	NextBatch string            `json:"next_batch,omitempty"`
	PrevBatch string            `json:"prev_batch,omitempty"`
	Total     int               `json:"total_room_count_estimate"`
}

type publicRoomChunk struct {
	RoomID         string `json:"room_id"`
	NumJoined      int    `json:"num_joined_members"`
	WorldReadable  bool   `json:"world_readable"`
	GuestCanJoin   bool   `json:"guest_can_join"`
	Name           string `json:"name,omitempty"`
	Topic          string `json:"topic,omitempty"`
	AvatarURL      string `json:"avatar_url,omitempty"`
	CanonicalAlias string `json:"canonical_alias,omitempty"`
	JoinRule       string `json:"join_rule,omitempty"`
	RoomType       string `json:"room_type,omitempty"`
}

// checkDirectoryServer refuses a server parameter naming another server.
func (a *API) checkDirectoryServer(r *http.Request) error {
	if srv := r.URL.Query().Get("server"); srv != "" && srv != a.cfg.Server.Name {
		return httputil.NotFound("Cannot fetch the room directory of %s: this server does not federate", srv)
	}
	return nil
}

// getPublicRooms serves GET /_matrix/client/v3/publicRooms (access token optional).
func (a *API) getPublicRooms(r *http.Request, _ *accounts.Session) (any, error) {
	if err := a.checkDirectoryServer(r); err != nil {
		return nil, err
	}
	q := r.URL.Query()
	pq := publicRoomsQuery{since: q.Get("since")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			return nil, httputil.InvalidParam("limit must be a non-negative integer")
		}
		pq.limit = n
	}
	if q.Get("third_party_instance_id") != "" && q.Get("include_all_networks") != "true" {
		pq.noNetworks = true
	}
	return a.publicRooms(r.Context(), pq)
}

// postPublicRooms serves POST /_matrix/client/v3/publicRooms.
func (a *API) postPublicRooms(r *http.Request, _ *accounts.Session) (any, error) {
	if err := a.checkDirectoryServer(r); err != nil {
		return nil, err
	}
	var body struct {
		Limit  *int   `json:"limit"`
		Since  string `json:"since"`
		Filter *struct {
			GenericSearchTerm string    `json:"generic_search_term"`
			RoomTypes         []*string `json:"room_types"`
		} `json:"filter"`
		IncludeAllNetworks   bool   `json:"include_all_networks"`
		ThirdPartyInstanceID string `json:"third_party_instance_id"`
	}
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	if body.IncludeAllNetworks && body.ThirdPartyInstanceID != "" {
		return nil, httputil.InvalidParam("include_all_networks and third_party_instance_id cannot be combined")
	}
	pq := publicRoomsQuery{since: body.Since, noNetworks: body.ThirdPartyInstanceID != ""}
	if body.Limit != nil {
		if *body.Limit < 0 {
			return nil, httputil.InvalidParam("limit must be a non-negative integer")
		}
		pq.limit = *body.Limit
	}
	if body.Filter != nil {
		pq.search = strings.TrimSpace(body.Filter.GenericSearchTerm)
		pq.roomTypes = body.Filter.RoomTypes
	}
	return a.publicRooms(r.Context(), pq)
}

// listedInDirectory is Synapse's rule for which published rooms are shown:
// rooms someone can join or read, with at least one member.
func listedInDirectory(d *storage.DirectoryRoom) bool {
	if d.JoinedMembers == 0 {
		return false
	}
	switch d.JoinRule {
	case "public", "knock", "knock_restricted":
		return true
	}
	return d.HistoryVisibility == "world_readable"
}

func (q *publicRoomsQuery) matches(d *storage.DirectoryRoom) bool {
	if len(q.roomTypes) > 0 {
		ok := false
		for _, t := range q.roomTypes {
			if (t == nil && d.RoomType == "") || (t != nil && *t == d.RoomType) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if q.search != "" {
		term := strings.ToLower(q.search)
		if !strings.Contains(strings.ToLower(d.Name), term) && !strings.Contains(strings.ToLower(d.Topic), term) &&
			!strings.Contains(strings.ToLower(d.CanonicalAlias), term) {
			return false
		}
	}
	return true
}

// roomListKey is a room's position in the directory order: most joined
// members first, then by room ID. Pagination tokens carry one.
type roomListKey struct {
	joined int
	roomID string
}

func (k roomListKey) before(o roomListKey) bool {
	return k.joined > o.joined || (k.joined == o.joined && k.roomID < o.roomID)
}

// Tokens are "n" (the rooms from the key on) or "p" (the rooms before it)
// followed by the key, base64url-encoded so they are opaque and URL-safe.
// Keys rather than offsets keep pages stable when rooms come and go.
func makeRoomListToken(dir byte, k roomListKey) string {
	return base64.RawURLEncoding.EncodeToString([]byte(string(dir) + strconv.Itoa(k.joined) + "|" + k.roomID))
}

func parseRoomListToken(tok string) (dir byte, k roomListKey, err error) {
	raw, decErr := base64.RawURLEncoding.DecodeString(tok)
	s := string(raw)
	if decErr == nil && len(s) > 1 && (s[0] == 'n' || s[0] == 'p') {
		if n, id, ok := strings.Cut(s[1:], "|"); ok {
			if joined, convErr := strconv.Atoi(n); convErr == nil {
				return s[0], roomListKey{joined, id}, nil
			}
		}
	}
	return 0, k, httputil.InvalidParam("invalid pagination token %q", tok)
}

// publicRooms lists a page of the public room directory.
func (a *API) publicRooms(ctx context.Context, q publicRoomsQuery) (*publicRoomsResponse, error) {
	var dir byte
	var from roomListKey
	if q.since != "" {
		var err error
		if dir, from, err = parseRoomListToken(q.since); err != nil {
			return nil, err
		}
	}
	all, err := a.db.PublishedRooms(ctx)
	if err != nil {
		return nil, err
	}
	resp := &publicRoomsResponse{Chunk: []publicRoomChunk{}}
	var rooms []storage.DirectoryRoom
	for i := range all {
		if !listedInDirectory(&all[i]) {
			continue
		}
		resp.Total++
		if !q.noNetworks && q.matches(&all[i]) {
			rooms = append(rooms, all[i])
		}
	}
	key := func(i int) roomListKey { return roomListKey{rooms[i].JoinedMembers, rooms[i].RoomID} }
	// Storage returns them in directory order already; sorting again keeps
	// this function correct on its own.
	sort.SliceStable(rooms, func(i, j int) bool { return key(i).before(key(j)) })
	limit := q.limit
	if limit <= 0 || limit > maxPublicRooms {
		limit = maxPublicRooms
	}
	start := 0
	if dir != 0 {
		// The first room at or after the token's key.
		start = sort.Search(len(rooms), func(i int) bool { return !key(i).before(from) })
	}
	end := min(start+limit, len(rooms))
	if dir == 'p' {
		start, end = max(0, start-limit), start
	}
	for _, d := range rooms[start:end] {
		if d.JoinRule == "" {
			d.JoinRule = "invite" // the auth rules' default; an absent join_rule would read as public
		}
		resp.Chunk = append(resp.Chunk, publicRoomChunk{
			RoomID: d.RoomID, NumJoined: d.JoinedMembers, WorldReadable: d.HistoryVisibility == "world_readable",
			GuestCanJoin: d.GuestAccess == "can_join", Name: d.Name, Topic: d.Topic, AvatarURL: d.AvatarURL,
			CanonicalAlias: d.CanonicalAlias, JoinRule: d.JoinRule, RoomType: d.RoomType,
		})
	}
	if end < len(rooms) {
		resp.NextBatch = makeRoomListToken('n', key(end))
	}
	if start > 0 {
		if start < len(rooms) {
			resp.PrevBatch = makeRoomListToken('p', key(start))
		} else {
			resp.PrevBatch = makeRoomListToken('p', from) // past the end: the rooms before the token
		}
	}
	return resp, nil
}
