package roomserver

import (
	"context"
	"slices"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
)

// What the federation endpoints ask of a room's current state before they
// act: is this server in the room (transactions are only taken for rooms
// it is in), is the asking server in it or the room world-readable (for
// history), and what the server ACL says.

// FederationRoom is what the current state of a room says for federation.
type FederationRoom struct {
	ID      string
	NID     int64
	Version gomatrixserverlib.IRoomVersion
	// LocalJoined is set when a user of this server is joined.
	LocalJoined bool
	// WorldReadable is set when the current history visibility is
	// world_readable.
	WorldReadable bool
	// ACL is the content of the m.room.server_acl state event (nil: none).
	ACL []byte

	r *room
}

// ServerJoined reports whether a user of server is joined to the room now.
func (fr *FederationRoom) ServerJoined(server spec.ServerName) bool {
	return fr.serverHas(server, spec.Join)
}

// ServerJoinedOrInvited reports whether a user of server is joined to the
// room or invited to it now.
func (fr *FederationRoom) ServerJoinedOrInvited(server spec.ServerName) bool {
	return fr.serverHas(server, spec.Join, spec.Invite)
}

// serverHas reports whether a user of server has one of the memberships.
func (fr *FederationRoom) serverHas(server spec.ServerName, memberships ...string) bool {
	fr.r.mu.Lock()
	defer fr.r.mu.Unlock()
	for t, ref := range fr.r.state {
		if t.EventType == spec.MRoomMember && slices.Contains(memberships, ref.value) {
			if _, domain, ok := strings.Cut(t.StateKey, ":"); ok && domain == string(server) {
				return true
			}
		}
	}
	return false
}

// FederationRoom reads what federation needs of a room's current state.
// Rooms this server holds no state for (unknown, or known only through an
// invite) are ErrRoomNotFound.
func (rs *Roomserver) FederationRoom(ctx context.Context, roomID string) (*FederationRoom, error) {
	r, err := rs.room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	fr := &FederationRoom{ID: r.id, NID: r.nid.Load(), Version: r.version, LocalJoined: len(r.local) > 0, r: r}
	_, hasCreate := r.ref(spec.MRoomCreate, "")
	if vis, ok := r.ref(spec.MRoomHistoryVisibility, ""); ok {
		fr.WorldReadable = vis.value == "world_readable"
	}
	aclRef, hasACL := r.ref(mRoomServerACL, "")
	r.mu.Unlock()
	if !hasCreate {
		return nil, ErrRoomNotFound
	}
	if hasACL {
		acl, err := rs.loadEvent(ctx, r, aclRef.id)
		if err != nil {
			return nil, err
		}
		fr.ACL = acl.Content()
	}
	return fr, nil
}

// mRoomServerACL is the server ACL state event type.
const mRoomServerACL = "m.room.server_acl"
