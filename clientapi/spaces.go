package clientapi

// Spaces (spec "Spaces": GET /rooms/{roomId}/hierarchy) and room previews
// (GET /room_summary/{roomIdOrAlias}, MSC3266, spec v1.15).

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/clientapi/internal/roomview"
	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// spaceRoomType is the m.room.create type of a space.
const spaceRoomType = "m.space"

const (
	hierarchyDefaultLimit = 50
	hierarchyMaxLimit     = 100
	// hierarchyMaxDepth is the default and the ceiling of max_depth.
	hierarchyMaxDepth = 50
	// hierarchyMaxWalk bounds the rooms one request looks at (pagination
	// re-walks the tree from the root).
	hierarchyMaxWalk = 5000
)

// roomPreviewJSON is a room as the hierarchy and the summary show it: the
// public rooms chunk plus the room summary fields.
type roomPreviewJSON struct {
	RoomID         string   `json:"room_id"`
	NumJoined      int      `json:"num_joined_members"`
	WorldReadable  bool     `json:"world_readable"`
	GuestCanJoin   bool     `json:"guest_can_join"`
	Name           string   `json:"name,omitempty"`
	Topic          string   `json:"topic,omitempty"`
	AvatarURL      string   `json:"avatar_url,omitempty"`
	CanonicalAlias string   `json:"canonical_alias,omitempty"`
	JoinRule       string   `json:"join_rule"`
	RoomType       string   `json:"room_type,omitempty"`
	RoomVersion    string   `json:"room_version"`
	Encryption     string   `json:"encryption,omitempty"`
	AllowedRoomIDs []string `json:"allowed_room_ids,omitempty"`
}

// joinRuleAllow is one entry of a restricted room's allow list.
type joinRuleAllow struct {
	Type   string `json:"type"`
	RoomID string `json:"room_id"`
}

func allowList(p *storage.RoomPreview) []joinRuleAllow {
	var allow []joinRuleAllow
	if p.Allow != nil {
		// Entries of other shapes are skipped one by one.
		var raw []json.RawMessage
		json.Unmarshal(p.Allow, &raw)
		for _, r := range raw {
			var a joinRuleAllow
			if json.Unmarshal(r, &a) == nil && a.Type == "m.room_membership" && strings.HasPrefix(a.RoomID, "!") {
				allow = append(allow, a)
			}
		}
	}
	return allow
}

func effectiveJoinRule(p *storage.RoomPreview) string {
	if p.JoinRule == "" {
		return spec.Invite // the auth rules' default
	}
	return p.JoinRule
}

func previewJSON(p *storage.RoomPreview) roomPreviewJSON {
	out := roomPreviewJSON{
		RoomID: p.RoomID, NumJoined: p.JoinedMembers, WorldReadable: p.HistoryVisibility == "world_readable",
		GuestCanJoin: p.GuestAccess == "can_join", Name: p.Name, Topic: p.Topic, AvatarURL: p.AvatarURL,
		CanonicalAlias: p.CanonicalAlias, JoinRule: effectiveJoinRule(p), RoomType: p.RoomType,
		RoomVersion: p.Version, Encryption: p.Encryption,
	}
	if jr := out.JoinRule; jr == spec.Restricted || jr == spec.KnockRestricted {
		for _, a := range allowList(p) {
			out.AllowedRoomIDs = append(out.AllowedRoomIDs, a.RoomID)
		}
	}
	return out
}

// mayPreview decides whether userID ("" when unauthenticated) may learn
// about a room: members, invitees and knockers may; banned users may not;
// anyone may for rooms they could join or knock on, or read without
// joining. It returns the user's membership too.
func (a *API) mayPreview(ctx context.Context, p *storage.RoomPreview, userID string) (string, bool, error) {
	membership := ""
	if userID != "" {
		var err error
		if membership, err = a.db.Membership(ctx, p.NID, userID); err != nil {
			return "", false, err
		}
	}
	switch membership {
	case spec.Join, spec.Invite, spec.Knock:
		return membership, true, nil
	case spec.Ban:
		return membership, false, nil
	}
	switch effectiveJoinRule(p) {
	case spec.Public, spec.Knock, spec.KnockRestricted:
		return membership, true, nil
	}
	if p.HistoryVisibility == "world_readable" {
		return membership, true, nil
	}
	if userID != "" && effectiveJoinRule(p) == spec.Restricted {
		ok, err := a.satisfiesAllow(ctx, p, userID)
		return membership, ok, err
	}
	return membership, false, nil
}

// satisfiesAllow reports whether the user is joined to a room the
// restricted room's join rules allow joining from.
func (a *API) satisfiesAllow(ctx context.Context, p *storage.RoomPreview, userID string) (bool, error) {
	for _, al := range allowList(p) {
		info, err := a.db.Room(ctx, al.RoomID)
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

// spaceChild is one valid m.space.child event of a space.
type spaceChild struct {
	roomID    string
	order     string // "" when absent or invalid
	ts        int64
	suggested bool
	stripped  map[string]any
}

// validChildOrder is the spec's rule for content.order: at most 50
// characters of printable ASCII.
func validChildOrder(s string) bool {
	if s == "" || len(s) > 50 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// spaceChildren lists the valid children of a room (m.space.child with a
// non-empty via), in the spec's order: rooms with an order first, by order;
// then by the child event's origin_server_ts; then by room ID.
func (a *API) spaceChildren(ctx context.Context, roomNID int64, suggestedOnly bool) ([]spaceChild, error) {
	events, err := a.db.CurrentStateEvents(ctx, roomNID, "m.space.child")
	if err != nil {
		return nil, err
	}
	var out []spaceChild
	for _, e := range events {
		if e.StateKey == nil || !strings.HasPrefix(*e.StateKey, "!") {
			continue
		}
		var content struct {
			Via       []json.RawMessage `json:"via"`
			Order     json.RawMessage   `json:"order"`
			Suggested json.RawMessage   `json:"suggested"`
		}
		raw := roomview.Content(e.JSON)
		if json.Unmarshal(raw, &content) != nil || len(content.Via) == 0 {
			continue // no via: the child was removed from the space
		}
		c := spaceChild{roomID: *e.StateKey, ts: e.OriginTS}
		var order string
		if json.Unmarshal(content.Order, &order) == nil && validChildOrder(order) {
			c.order = order
		}
		json.Unmarshal(content.Suggested, &c.suggested)
		if suggestedOnly && !c.suggested {
			continue
		}
		c.stripped = map[string]any{
			"type": e.Type, "state_key": *e.StateKey, "sender": e.Sender, "content": raw, "origin_server_ts": e.OriginTS,
		}
		out = append(out, c)
	}
	sort.SliceStable(out, func(i, j int) bool {
		x, y := out[i], out[j]
		if (x.order != "") != (y.order != "") {
			return x.order != ""
		}
		if x.order != y.order {
			return x.order < y.order
		}
		if x.ts != y.ts {
			return x.ts < y.ts
		}
		return x.roomID < y.roomID
	})
	return out, nil
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
// user may preview (see mayPreview); rooms this server does not know are
// left out (it does not federate).
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

	type item struct {
		roomID string
		depth  int
	}
	stack := []item{{rootID, 0}}
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
		p := root
		if it.depth > 0 {
			p, err = a.db.RoomPreview(ctx, it.roomID)
			if errors.Is(err, storage.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if _, ok, err := a.mayPreview(ctx, p, s.UserID); err != nil {
				return nil, err
			} else if !ok {
				continue
			}
		}
		if skip == 0 && len(rooms) == limit {
			more = true
			break
		}
		// Only spaces have children: m.space.child events in other rooms
		// are not followed (and not listed), as in Synapse.
		var children []spaceChild
		if p.RoomType == spaceRoomType {
			if children, err = a.spaceChildren(ctx, p.NID, req.suggestedOnly); err != nil {
				return nil, err
			}
		}
		if skip > 0 {
			skip--
		} else {
			state := make([]map[string]any, len(children))
			for i, c := range children {
				state[i] = c.stripped
			}
			rooms = append(rooms, struct {
				roomPreviewJSON
				ChildrenState []map[string]any `json:"children_state"`
			}{previewJSON(p), state})
		}
		if it.depth < maxDepth {
			// Pushed in reverse so that the first child is visited first.
			for i := len(children) - 1; i >= 0; i-- {
				if !seen[children[i].roomID] {
					stack = append(stack, item{children[i].roomID, it.depth + 1})
				}
			}
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
// requester may not preview are 404, as unknown rooms.
func (a *API) getRoomSummary(r *http.Request, s *accounts.Session) (any, error) {
	ctx := r.Context()
	target := pathVar(r, "roomIdOrAlias")
	roomID := target
	switch {
	case strings.HasPrefix(target, "#"):
		if !validAlias(target) {
			return nil, httputil.InvalidParam("%q is not a room alias", target)
		}
		id, err := a.db.AliasRoom(ctx, target)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, httputil.NotFound("Room not found")
		}
		if err != nil {
			return nil, err
		}
		roomID = id
	case strings.HasPrefix(target, "!"):
	default:
		return nil, httputil.InvalidParam("%q is neither a room ID nor a room alias", target)
	}
	p, err := a.db.RoomPreview(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("Room not found")
	}
	if err != nil {
		return nil, err
	}
	userID := ""
	if s != nil {
		userID = s.UserID
	}
	membership, ok, err := a.mayPreview(ctx, p, userID)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, httputil.NotFound("Room not found")
	}
	resp := struct {
		roomPreviewJSON
		Membership string `json:"membership,omitempty"`
		// MSC3266's unstable names, still read by SDKs that call the
		// unstable path (mautrix-go, older matrix-rust-sdk).
		UnstableVersion    string `json:"im.nheko.summary.room_version,omitempty"`
		UnstableEncryption string `json:"im.nheko.summary.encryption,omitempty"`
	}{roomPreviewJSON: previewJSON(p), UnstableVersion: p.Version, UnstableEncryption: p.Encryption}
	if s != nil {
		resp.Membership = membership
		if resp.Membership == "" {
			resp.Membership = spec.Leave
		}
	}
	return resp, nil
}
