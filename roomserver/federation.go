package roomserver

import (
	"context"
	"errors"
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

	// servers are the servers with joined members.
	servers map[spec.ServerName]bool
}

// ServerJoined reports whether a user of server is joined to the room.
func (fr *FederationRoom) ServerJoined(server spec.ServerName) bool { return fr.servers[server] }

// JoinedServers lists the servers with joined members, this one included.
func (fr *FederationRoom) JoinedServers() []spec.ServerName {
	out := make([]spec.ServerName, 0, len(fr.servers))
	for s := range fr.servers {
		out = append(out, s)
	}
	return out
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
	fr := &FederationRoom{
		ID: r.id, NID: r.nid.Load(), Version: r.version, LocalJoined: len(r.local) > 0,
		servers: map[spec.ServerName]bool{},
	}
	_, hasCreate := r.ref(spec.MRoomCreate, "")
	if vis, ok := r.ref(spec.MRoomHistoryVisibility, ""); ok {
		fr.WorldReadable = vis.value == "world_readable"
	}
	for t, ref := range r.state {
		if t.EventType == spec.MRoomMember && ref.value == spec.Join {
			if _, domain, ok := strings.Cut(t.StateKey, ":"); ok {
				fr.servers[spec.ServerName(domain)] = true
			}
		}
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

// ServerACL returns the content of a room's current m.room.server_acl
// event (found is false when it has none, or the room is unknown): the
// lookup federation's ACL checks take.
func (rs *Roomserver) ServerACL(ctx context.Context, roomID string) ([]byte, bool, error) {
	r, err := rs.room(ctx, roomID)
	if errors.Is(err, ErrRoomNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	acl, err := rs.currentEvent(ctx, r, mRoomServerACL, "")
	if err != nil || acl == nil {
		return nil, false, err
	}
	return acl.Content(), true, nil
}

// mRoomServerACL is the server ACL state event type.
const mRoomServerACL = "m.room.server_acl"
