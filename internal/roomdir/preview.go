package roomdir

import (
	"context"
	"encoding/json"
	"sort"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

// SpaceRoomType is the m.room.create type of a space.
const SpaceRoomType = "m.space"

// Preview is a room as the hierarchy and the summary show it (over
// federation too): the public rooms chunk plus the room summary fields.
type Preview struct {
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
	RoomVersion    string   `json:"room_version,omitempty"`
	Encryption     string   `json:"encryption,omitempty"`
	AllowedRoomIDs []string `json:"allowed_room_ids,omitempty"`
}

// joinRuleAllow is one entry of a restricted room's allow list.
type joinRuleAllow struct {
	Type   string `json:"type"`
	RoomID string `json:"room_id"`
}

// AllowedRooms are the rooms of a restricted room's allow list (entries of
// other shapes are skipped one by one).
func AllowedRooms(p *storage.RoomPreview) []string {
	var out []string
	if p.Allow != nil {
		var raw []json.RawMessage
		json.Unmarshal(p.Allow, &raw)
		for _, r := range raw {
			var a joinRuleAllow
			if json.Unmarshal(r, &a) == nil && a.Type == "m.room_membership" && strings.HasPrefix(a.RoomID, "!") {
				out = append(out, a.RoomID)
			}
		}
	}
	return out
}

// JoinRule is the room's join rule, the auth rules' default (invite) when
// it has none.
func JoinRule(p *storage.RoomPreview) string {
	if p.JoinRule == "" {
		return spec.Invite
	}
	return p.JoinRule
}

// NewPreview is the preview of a room this server holds.
func NewPreview(p *storage.RoomPreview) Preview {
	out := Preview{
		RoomID: p.RoomID, NumJoined: p.JoinedMembers, WorldReadable: p.HistoryVisibility == "world_readable",
		GuestCanJoin: p.GuestAccess == "can_join", Name: p.Name, Topic: p.Topic, AvatarURL: p.AvatarURL,
		CanonicalAlias: p.CanonicalAlias, JoinRule: JoinRule(p), RoomType: p.RoomType,
		RoomVersion: p.Version, Encryption: p.Encryption,
	}
	if jr := out.JoinRule; jr == spec.Restricted || jr == spec.KnockRestricted {
		out.AllowedRoomIDs = AllowedRooms(p)
	}
	return out
}

// OpenToAll reports whether anyone may learn about the room: they could
// join it or knock on it, or read it without joining.
func (p *Preview) OpenToAll() bool {
	switch p.JoinRule {
	case spec.Public, spec.Knock, spec.KnockRestricted:
		return true
	}
	return p.WorldReadable
}

// Child is one valid m.space.child event of a space.
type Child struct {
	RoomID    string
	Via       []string
	Order     string // "" when absent or invalid
	TS        int64
	Suggested bool
	// Stripped is the event as children_state lists it.
	Stripped map[string]any
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

// ParseChild reads an m.space.child event (its state key, sender, content
// and timestamp); ok is false when it is not a valid child: no room ID as
// state key, or no via (the child was removed from the space).
func ParseChild(stateKey, sender string, content json.RawMessage, ts int64) (Child, bool) {
	if !strings.HasPrefix(stateKey, "!") {
		return Child{}, false
	}
	var c struct {
		Via       []json.RawMessage `json:"via"`
		Order     json.RawMessage   `json:"order"`
		Suggested json.RawMessage   `json:"suggested"`
	}
	if json.Unmarshal(content, &c) != nil || len(c.Via) == 0 {
		return Child{}, false
	}
	out := Child{RoomID: stateKey, TS: ts}
	for _, v := range c.Via {
		var s string
		if json.Unmarshal(v, &s) == nil {
			if _, _, ok := spec.ParseAndValidateServerName(spec.ServerName(s)); ok {
				out.Via = append(out.Via, s)
			}
		}
	}
	var order string
	if json.Unmarshal(c.Order, &order) == nil && validChildOrder(order) {
		out.Order = order
	}
	json.Unmarshal(c.Suggested, &out.Suggested)
	out.Stripped = map[string]any{
		"type": "m.space.child", "state_key": stateKey, "sender": sender, "content": content, "origin_server_ts": ts,
	}
	return out, true
}

// SortChildren puts children in the spec's order: rooms with an order
// first, by order; then by the child event's origin_server_ts; then by room
// ID.
func SortChildren(children []Child) {
	sort.SliceStable(children, func(i, j int) bool {
		x, y := children[i], children[j]
		if (x.Order != "") != (y.Order != "") {
			return x.Order != ""
		}
		if x.Order != y.Order {
			return x.Order < y.Order
		}
		if x.TS != y.TS {
			return x.TS < y.TS
		}
		return x.RoomID < y.RoomID
	})
}

// Children lists the valid children of a room this server holds
// (m.space.child with a non-empty via), in the spec's order.
func Children(ctx context.Context, db *storage.DB, roomNID int64, suggestedOnly bool) ([]Child, error) {
	events, err := db.CurrentStateEvents(ctx, roomNID, "m.space.child")
	if err != nil {
		return nil, err
	}
	var out []Child
	for _, e := range events {
		if e.StateKey == nil {
			continue
		}
		c, ok := ParseChild(*e.StateKey, e.Sender, eventContent(e.JSON), e.OriginTS)
		if !ok || (suggestedOnly && !c.Suggested) {
			continue
		}
		out = append(out, c)
	}
	SortChildren(out)
	return out, nil
}

// ChildrenState is the children_state of a room: its children's events.
func ChildrenState(children []Child) []map[string]any {
	state := make([]map[string]any, len(children))
	for i, c := range children {
		state[i] = c.Stripped
	}
	return state
}

// eventContent is an event's content, undecoded.
func eventContent(eventJSON []byte) json.RawMessage {
	var e struct {
		Content json.RawMessage `json:"content"`
	}
	json.Unmarshal(eventJSON, &e)
	return e.Content
}

// HierarchyRoom is a room with its children's events, as the hierarchy
// lists it.
type HierarchyRoom struct {
	Preview
	ChildrenState []json.RawMessage `json:"children_state"`
}

// NewHierarchyRoom is a room with its children.
func NewHierarchyRoom(p Preview, children []Child) HierarchyRoom {
	out := HierarchyRoom{Preview: p, ChildrenState: make([]json.RawMessage, 0, len(children))}
	for _, c := range children {
		raw, _ := json.Marshal(c.Stripped)
		out.ChildrenState = append(out.ChildrenState, raw)
	}
	return out
}

// Children are the valid children among the room's children_state (another
// server's answer: entries of other shapes are skipped), in the spec's
// order.
func (h *HierarchyRoom) Children(suggestedOnly bool) []Child {
	var out []Child
	seen := map[string]bool{}
	for _, raw := range h.ChildrenState {
		var e struct {
			Type     string          `json:"type"`
			StateKey string          `json:"state_key"`
			Sender   string          `json:"sender"`
			Content  json.RawMessage `json:"content"`
			TS       int64           `json:"origin_server_ts"`
		}
		if json.Unmarshal(raw, &e) != nil || e.Type != "m.space.child" || seen[e.StateKey] {
			continue
		}
		c, ok := ParseChild(e.StateKey, e.Sender, e.Content, e.TS)
		if !ok || (suggestedOnly && !c.Suggested) {
			continue
		}
		seen[e.StateKey] = true
		out = append(out, c)
	}
	SortChildren(out)
	return out
}

// FederationHierarchy is the answer of GET
// /_matrix/federation/v1/hierarchy/{roomId}.
type FederationHierarchy struct {
	Room                 HierarchyRoom `json:"room"`
	Children             []Preview     `json:"children"`
	InaccessibleChildren []string      `json:"inaccessible_children"`
}

// RemotePublicRooms is another server's page of its public room list: its
// rooms as it sent them (each an object with a room ID), and its tokens.
type RemotePublicRooms struct {
	Chunk     []json.RawMessage `json:"chunk"`
	NextBatch string            `json:"next_batch,omitempty"`
	PrevBatch string            `json:"prev_batch,omitempty"`
	Total     *int              `json:"total_room_count_estimate,omitempty"`
}
