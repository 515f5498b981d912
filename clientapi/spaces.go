package clientapi

// Spaces (spec "Spaces": GET /rooms/{roomId}/hierarchy) and room previews
// (GET /room_summary/{roomIdOrAlias}, MSC3266, spec v1.15).

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/internal/roomdir"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

const (
	hierarchyDefaultLimit = 50
	hierarchyMaxLimit     = 100
	// hierarchyMaxDepth is the default and the ceiling of max_depth.
	hierarchyMaxDepth = 50
	// hierarchyMaxWalk bounds the rooms one request looks at (pagination
	// re-walks the tree from the root).
	hierarchyMaxWalk = 5000
)

// mayPreview decides whether userID ("" when unauthenticated) may learn
// about a room this server holds (see mayPreviewRoom). It returns the
// user's membership too.
func (a *API) mayPreview(ctx context.Context, p *storage.RoomPreview, userID string) (string, bool, error) {
	pv := roomdir.NewPreview(p)
	return a.mayPreviewRoom(ctx, &pv, p.NID, userID)
}

// mayPreviewRoom decides whether userID ("" when unauthenticated) may
// learn about a room, from its preview (this server's or another's) and
// the user's membership here (roomNID 0: none): members, invitees and
// knockers may; banned users may not; anyone may for rooms they could join
// or knock on, or read without joining; users joined to a room a
// restricted room allows joining from may. It returns the membership too.
func (a *API) mayPreviewRoom(ctx context.Context, pv *roomdir.Preview, roomNID int64, userID string) (string, bool, error) {
	membership := ""
	if userID != "" && roomNID != 0 {
		var err error
		if membership, err = a.db.Membership(ctx, roomNID, userID); err != nil {
			return "", false, err
		}
	}
	switch membership {
	case spec.Join, spec.Invite, spec.Knock:
		return membership, true, nil
	case spec.Ban:
		return membership, false, nil
	}
	if pv.OpenToAll() {
		return membership, true, nil
	}
	if userID != "" && pv.JoinRule == spec.Restricted {
		ok, err := a.joinedAny(ctx, pv.AllowedRoomIDs, userID)
		return membership, ok, err
	}
	return membership, false, nil
}

// joinedAny reports whether the user is joined to any of the rooms (a
// restricted room's allowed rooms).
func (a *API) joinedAny(ctx context.Context, roomIDs []string, userID string) (bool, error) {
	for _, roomID := range roomIDs {
		info, err := a.db.Room(ctx, roomID)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return false, err
		}
		m, err := a.db.Membership(ctx, info.NID, userID)
		if err != nil {
			return false, err
		}
		if m == spec.Join {
			return true, nil
		}
	}
	return false, nil
}

// hierarchyToken is the state of a hierarchy pagination: how many rooms
// were returned, and the parameters that may not change between pages.
// The walk is deterministic, so a page re-walks the tree and skips.
type hierarchyToken struct {
	offset        int
	maxDepth      int // -1: not given
	suggestedOnly bool
}

func (t hierarchyToken) String() string {
	s := "0"
	if t.suggestedOnly {
		s = "1"
	}
	return "h" + strconv.Itoa(t.offset) + "_" + strconv.Itoa(t.maxDepth) + "_" + s
}

func parseHierarchyToken(tok string) (hierarchyToken, bool) {
	parts := strings.Split(strings.TrimPrefix(tok, "h"), "_")
	if !strings.HasPrefix(tok, "h") || len(parts) != 3 || (parts[2] != "0" && parts[2] != "1") {
		return hierarchyToken{}, false
	}
	off, err1 := strconv.Atoi(parts[0])
	depth, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil || off < 0 || depth < -1 {
		return hierarchyToken{}, false
	}
	return hierarchyToken{offset: off, maxDepth: depth, suggestedOnly: parts[2] == "1"}, true
}

// getHierarchy serves GET /_matrix/client/v1/rooms/{roomId}/hierarchy: a
// depth-first walk of the space tree from the room, listing the rooms the
// user may preview (see mayPreview); rooms this server is not in are asked
// of the servers their m.space.child events name (spaces_walk.go).
func (a *API) getHierarchy(r *http.Request, s *accounts.Session) (any, error) {
	ctx := r.Context()
	q := r.URL.Query()
	req := hierarchyToken{maxDepth: -1}
	switch q.Get("suggested_only") {
	case "", "false":
	case "true":
		req.suggestedOnly = true
	default:
		return nil, httputil.InvalidParam("suggested_only must be true or false")
	}
	if v := q.Get("max_depth"); v != "" {
		d, err := strconv.Atoi(v)
		if err != nil || d < 0 {
			return nil, httputil.InvalidParam("max_depth must be a non-negative integer")
		}
		req.maxDepth = d
	}
	limit := hierarchyDefaultLimit
	if v := q.Get("limit"); v != "" {
		l, err := strconv.Atoi(v)
		if err != nil || l <= 0 {
			return nil, httputil.InvalidParam("limit must be an integer greater than zero")
		}
		limit = min(l, hierarchyMaxLimit)
	}
	if from := q.Get("from"); from != "" {
		tok, ok := parseHierarchyToken(from)
		if !ok {
			return nil, httputil.InvalidParam("unknown pagination token %q", from)
		}
		if tok.maxDepth != req.maxDepth || tok.suggestedOnly != req.suggestedOnly {
			return nil, httputil.InvalidParam("suggested_only and max_depth cannot change on paginated requests")
		}
		req.offset = tok.offset
	}
	maxDepth := hierarchyMaxDepth
	if req.maxDepth >= 0 {
		maxDepth = min(req.maxDepth, hierarchyMaxDepth)
	}

	rootID := pathVar(r, "roomId")
	root, err := a.db.RoomPreview(ctx, rootID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.Forbidden("You are not allowed to view this room")
	}
	if err != nil {
		return nil, err
	}
	if _, ok, err := a.mayPreview(ctx, root, s.UserID); err != nil {
		return nil, err
	} else if !ok {
		return nil, httputil.Forbidden("You are not allowed to view this room")
	}

	w := &hierarchyWalk{a: a, userID: s.UserID, suggestedOnly: req.suggestedOnly, maxDepth: maxDepth, remoteLeft: hierarchyMaxRemote}
	stack := []walkItem{{roomID: rootID}}
	seen := map[string]bool{}
	skip := req.offset
	rooms := []any{}
	more := false
	for walked := 0; len(stack) > 0 && walked < hierarchyMaxWalk; walked++ {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[it.roomID] {
			continue
		}
		seen[it.roomID] = true
		var n *hierarchyNode
		if it.depth == 0 {
			n, err = w.localNode(ctx, root)
		} else {
			n, err = w.node(ctx, it)
		}
		if err != nil {
			return nil, err
		}
		if n == nil {
			continue
		}
		if skip == 0 && len(rooms) == limit {
			more = true
			break
		}
		if skip > 0 {
			skip--
		} else {
			rooms = append(rooms, roomdir.NewHierarchyRoom(n.preview, n.children))
		}
		if it.depth < maxDepth {
			stack = append(stack, n.next(it.depth+1, seen)...)
		}
	}
	resp := map[string]any{"rooms": rooms}
	if more {
		next := req
		next.offset = req.offset + len(rooms)
		resp["next_batch"] = next.String()
	}
	return resp, nil
}

// getRoomSummary serves GET /_matrix/client/v1/room_summary/{roomIdOrAlias}
// (and MSC3266's unstable paths). Authentication is optional: without it
// only rooms anyone may join, knock on or read are summarised. Rooms the
// requester may not preview are 404, as unknown rooms. A room this server
// is not in is asked of the servers named by via (and those the alias
// resolved to), through their hierarchy, as Synapse does.
func (a *API) getRoomSummary(r *http.Request, s *accounts.Session) (any, error) {
	ctx := r.Context()
	via, err := viaParams(r)
	if err != nil {
		return nil, err
	}
	roomID, servers, err := a.summaryTarget(ctx, pathVar(r, "roomIdOrAlias"))
	if err != nil {
		return nil, err
	}
	userID := ""
	if s != nil {
		userID = s.UserID
	}
	p, err := a.db.RoomPreview(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		p = nil
	} else if err != nil {
		return nil, err
	}
	var pv roomdir.Preview
	var membership string
	ok := false
	servers = append(via, servers...)
	if a.directory != nil && len(servers) > 0 {
		joined, err := a.localJoined(ctx, roomID)
		if err != nil {
			return nil, err
		}
		if !joined {
			resp, err := a.directory.Hierarchy(ctx, roomID, servers, true)
			if err != nil && !errors.Is(err, roomserver.ErrRoomNotFound) {
				return nil, err
			}
			if err == nil {
				pv = resp.Room.Preview
				if membership, ok, err = a.mayPreviewRemote(ctx, &pv, userID); err != nil {
					return nil, err
				}
				if !ok {
					return nil, httputil.NotFound("Room not found")
				}
			}
		}
	}
	if !ok {
		if p == nil {
			return nil, httputil.NotFound("Room not found")
		}
		if membership, ok, err = a.mayPreview(ctx, p, userID); err != nil {
			return nil, err
		}
		if !ok {
			return nil, httputil.NotFound("Room not found")
		}
		pv = roomdir.NewPreview(p)
	}
	resp := struct {
		roomdir.Preview
		Membership string `json:"membership,omitempty"`
		// MSC3266's unstable names, still read by SDKs that call the
		// unstable path (mautrix-go, older matrix-rust-sdk).
		UnstableVersion    string `json:"im.nheko.summary.room_version,omitempty"`
		UnstableEncryption string `json:"im.nheko.summary.encryption,omitempty"`
	}{Preview: pv, UnstableVersion: pv.RoomVersion, UnstableEncryption: pv.Encryption}
	if s != nil {
		resp.Membership = membership
		if resp.Membership == "" {
			resp.Membership = spec.Leave
		}
	}
	return resp, nil
}

// summaryTarget resolves the room a summary is asked of: a room ID, or an
// alias (another server's through it, which names servers in the room).
func (a *API) summaryTarget(ctx context.Context, target string) (roomID string, servers []string, err error) {
	switch {
	case strings.HasPrefix(target, "!"):
		return target, nil, nil
	case !strings.HasPrefix(target, "#"):
		return "", nil, httputil.InvalidParam("%q is neither a room ID nor a room alias", target)
	case !validAlias(target):
		return "", nil, httputil.InvalidParam("%q is not a room alias", target)
	}
	_, server, _ := strings.Cut(target, ":")
	if server != a.cfg.Server.Name {
		if _, _, ok := spec.ParseAndValidateServerName(spec.ServerName(server)); !ok {
			return "", nil, httputil.InvalidParam("%q is not a room alias", target)
		}
		roomID, servers, err := a.rooms.LookupAlias(ctx, target)
		if errors.Is(err, roomserver.ErrRoomNotFound) {
			return "", nil, httputil.NotFound("Room not found")
		}
		return roomID, servers, err
	}
	roomID, err = a.db.AliasRoom(ctx, target)
	if errors.Is(err, storage.ErrNotFound) {
		return "", nil, httputil.NotFound("Room not found")
	}
	return roomID, nil, err
}

// viaParams reads the via query parameters: server names.
func viaParams(r *http.Request) ([]string, error) {
	via := r.URL.Query()["via"]
	for _, v := range via {
		if _, _, ok := spec.ParseAndValidateServerName(spec.ServerName(v)); !ok {
			return nil, httputil.InvalidParam("via %q is not a server name", v)
		}
	}
	return via, nil
}
