package roomserver

import (
	"context"
	"encoding/json"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

// Viewer decides which events of one room a user may see under the room's
// history visibility (spec "History visibility"), from the user's
// membership history and the room's visibility changes, each loaded once.
type Viewer struct {
	userID      string
	memberships []mark // the user's membership changes, stream order
	visibility  []mark // history_visibility changes, stream order
}

type mark struct {
	pos   int64
	value string
}

// Viewer loads what is needed to filter a room's events for userID.
func (rs *Roomserver) Viewer(ctx context.Context, roomNID int64, userID string) (*Viewer, error) {
	v := &Viewer{userID: userID}
	members, vis, err := rs.db.VisibilityMarks(ctx, roomNID, userID)
	if err != nil {
		return nil, err
	}
	for _, m := range members {
		v.memberships = append(v.memberships, mark{m.StreamPos, m.Value})
	}
	for _, m := range vis {
		v.visibility = append(v.visibility, mark{m.StreamPos, m.Value})
	}
	return v, nil
}

func contentField(eventJSON []byte, field string) string {
	var e struct {
		Content map[string]any `json:"content"`
	}
	if json.Unmarshal(eventJSON, &e) != nil {
		return ""
	}
	s, _ := e.Content[field].(string)
	return s
}

// before returns the value of the last mark before pos ("" if none).
func before(marks []mark, pos int64) string {
	v := ""
	for _, m := range marks {
		if m.pos >= pos {
			break
		}
		v = m.value
	}
	return v
}

var permissiveness = map[string]int{"joined": 0, "invited": 1, "shared": 2, "world_readable": 3}

// CanSee reports whether the user may see e.
func (v *Viewer) CanSee(e *storage.Event) bool {
	if e.Type == spec.MRoomMember && e.StateKey != nil && *e.StateKey == v.userID {
		return true // one's own membership changes are always visible
	}
	vis := before(v.visibility, e.StreamPos)
	if vis == "" {
		vis = "shared"
	}
	if e.Type == spec.MRoomHistoryVisibility && e.StateKey != nil && *e.StateKey == "" {
		// The change itself is visible under the more permissive of old and new.
		if nv := contentField(e.JSON, "history_visibility"); permissiveness[nv] > permissiveness[vis] {
			vis = nv
		}
	}
	membership := before(v.memberships, e.StreamPos)
	switch vis {
	case "world_readable":
		return true
	case "invited":
		return membership == spec.Join || membership == spec.Invite
	case "joined":
		return membership == spec.Join
	default: // shared, and unknown values as the spec says
		if membership == spec.Join {
			return true
		}
		for _, m := range v.memberships {
			if m.pos > e.StreamPos && m.value == spec.Join {
				return true
			}
		}
		return false
	}
}

// WorldReadable reports whether the room's current history visibility is
// world_readable (readable without joining).
func (v *Viewer) WorldReadable() bool {
	if len(v.visibility) == 0 {
		return false
	}
	return v.visibility[len(v.visibility)-1].value == "world_readable"
}

// Membership is the user's current membership ("" when none).
func (v *Viewer) Membership() string {
	if len(v.memberships) == 0 {
		return ""
	}
	return v.memberships[len(v.memberships)-1].value
}

// MembershipAt is the user's membership just after the event at stream
// position pos ("leave" when they had none), as MSC4115's
// unsigned.membership reports it: their own join event reads "join".
func (v *Viewer) MembershipAt(pos int64) string {
	m := spec.Leave
	for _, mk := range v.memberships {
		if mk.pos > pos {
			break
		}
		if mk.value != "" {
			m = mk.value
		}
	}
	return m
}

// LastMembershipPos is the stream position of the user's latest membership change.
func (v *Viewer) LastMembershipPos() int64 {
	if len(v.memberships) == 0 {
		return 0
	}
	return v.memberships[len(v.memberships)-1].pos
}
