package roomserver

import (
	"context"
	"encoding/json"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

// Viewer decides which events of one room a user may see under the room's
// history visibility (spec "History visibility"). Each event is judged by
// the state before it (its stored snapshot), not by a clock: backfilled
// and forked events are judged where they sit in the DAG. Snapshots are
// immutable, so what a snapshot says for a user is cached.
type Viewer struct {
	ctx     context.Context
	rs      *Roomserver
	roomNID int64
	userID  string
	// current membership and history visibility, and the position of the
	// user's latest membership change.
	membership string
	visibility string
	lastPos    int64
	err        error
}

// snapView is what a snapshot says for a user: the room's history
// visibility and the user's membership.
type snapView struct{ visibility, membership string }

type snapViewKey struct {
	snapshot int64
	userID   string
}

// Viewer loads what is needed to filter a room's events for userID. It
// keeps ctx for the lookups it makes while judging events.
func (rs *Roomserver) Viewer(ctx context.Context, roomNID int64, userID string) (*Viewer, error) {
	v := &Viewer{ctx: ctx, rs: rs, roomNID: roomNID, userID: userID}
	cur, err := rs.db.VisibilityNow(ctx, roomNID, userID)
	if err != nil {
		return nil, err
	}
	v.membership, v.visibility, v.lastPos = cur.Membership, cur.Visibility, cur.MembershipPos
	return v, nil
}

// Err is the first lookup error met while judging events (they were then
// judged invisible).
func (v *Viewer) Err() error { return v.err }

// view returns what the state before e says for the user.
func (v *Viewer) view(e *storage.Event) snapView {
	snap := e.StateBefore
	if snap == 0 && e.StreamPos > 0 && e.EventID == "" {
		// A position rather than an event: the room's state there.
		s, err := v.rs.db.SnapshotAtPos(v.ctx, v.roomNID, e.StreamPos)
		if err != nil {
			v.fail(err)
			return snapView{}
		}
		snap = s
	}
	key := snapViewKey{snap, v.userID}
	if sv, ok := v.rs.views.Get(key); ok {
		return sv
	}
	vals, err := v.rs.db.SnapshotVisibility(v.ctx, snap, v.userID)
	if err != nil {
		v.fail(err)
		return snapView{}
	}
	sv := snapView{visibility: vals.Visibility, membership: vals.Membership}
	v.rs.views.Add(key, sv)
	return sv
}

func (v *Viewer) fail(err error) {
	if v.err == nil {
		v.err = err
	}
}

var permissiveness = map[string]int{"joined": 0, "invited": 1, "shared": 2, "world_readable": 3}

// CanSee reports whether the user may see e.
func (v *Viewer) CanSee(e *storage.Event) bool {
	if e.Type == spec.MRoomMember && e.StateKey != nil && *e.StateKey == v.userID {
		return true // one's own membership changes are always visible
	}
	sv := v.view(e)
	vis := sv.visibility
	if vis == "" {
		vis = "shared"
	}
	if e.Type == spec.MRoomHistoryVisibility && e.StateKey != nil && *e.StateKey == "" {
		// The change itself is visible under the more permissive of old and new.
		if nv := contentField(e.JSON, "history_visibility"); permissiveness[nv] > permissiveness[vis] {
			vis = nv
		}
	}
	switch vis {
	case "world_readable":
		return true
	case "invited":
		return sv.membership == spec.Join || sv.membership == spec.Invite
	case "joined":
		return sv.membership == spec.Join
	default: // shared, and unknown values as the spec says
		// Members at the time, and members now (Synapse: a user who joined
		// sees the shared history before; one who left does not).
		return sv.membership == spec.Join || v.membership == spec.Join
	}
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

// WorldReadable reports whether the room's current history visibility is
// world_readable (readable without joining).
func (v *Viewer) WorldReadable() bool { return v.visibility == "world_readable" }

// Membership is the user's current membership ("" when none).
func (v *Viewer) Membership() string { return v.membership }

// MembershipAt is the user's membership just after event e ("leave" when
// they had none), as MSC4115's unsigned.membership reports it: their own
// join event reads "join". It is read from the event's state snapshot.
func (v *Viewer) MembershipAt(e *storage.Event) string {
	if e.Type == spec.MRoomMember && e.StateKey != nil && *e.StateKey == v.userID {
		if m := contentField(e.JSON, "membership"); m != "" {
			return m
		}
	}
	if m := v.view(e).membership; m != "" {
		return m
	}
	return spec.Leave
}

// LastMembershipPos is the stream position of the user's latest membership change.
func (v *Viewer) LastMembershipPos() int64 { return v.lastPos }

// ServerViewer decides which events of a room another server may see
// (spec: events are visible to a server when its users could see them),
// as Synapse's filter_events_for_server does: by the state at the event
// (the state before it, and the event itself when it changes the history
// visibility or a membership of that server), an event is visible when
// the history visibility is neither "invited" nor "joined", or a user of
// the server is joined, or invited under "invited". Events held without
// state (outliers) are visible. Callers also check that the server is in
// the room at all.
type ServerViewer struct {
	ctx    context.Context
	rs     *Roomserver
	server string
	views  map[int64]storage.SnapshotServerView
	err    error
}

// ServerViewer makes a viewer for server's requests; it keeps ctx for
// the lookups it makes while judging events.
func (rs *Roomserver) ServerViewer(ctx context.Context, server spec.ServerName) *ServerViewer {
	return &ServerViewer{ctx: ctx, rs: rs, server: string(server), views: map[int64]storage.SnapshotServerView{}}
}

// Err is the first lookup error met while judging events (they were then
// judged invisible).
func (v *ServerViewer) Err() error { return v.err }

// CanSee reports whether the server may see e.
func (v *ServerViewer) CanSee(e *storage.Event) bool {
	if e.Status == storage.EventOutlier || e.Status == storage.EventRejected {
		return true // no state known at it: judged open, as Synapse does
	}
	sv, ok := v.views[e.StateBefore]
	if !ok {
		var err error
		if sv, err = v.rs.db.SnapshotServerMembers(v.ctx, e.StateBefore, v.server); err != nil {
			if v.err == nil {
				v.err = err
			}
			return false
		}
		v.views[e.StateBefore] = sv
	}
	vis := sv.Visibility
	joined, invited := 0, 0
	for _, m := range sv.Members {
		switch m {
		case spec.Join:
			joined++
		case spec.Invite:
			invited++
		}
	}
	// The state at the event includes the event itself.
	if e.StateKey != nil {
		switch {
		case e.Type == spec.MRoomHistoryVisibility && *e.StateKey == "":
			vis = contentField(e.JSON, "history_visibility")
		case e.Type == spec.MRoomMember && domainOf(*e.StateKey) == v.server:
			switch sv.Members[*e.StateKey] {
			case spec.Join:
				joined--
			case spec.Invite:
				invited--
			}
			switch contentField(e.JSON, "membership") {
			case spec.Join:
				joined++
			case spec.Invite:
				invited++
			}
		}
	}
	switch vis {
	case "invited":
		return joined > 0 || invited > 0
	case "joined":
		return joined > 0
	}
	return true // shared, world_readable, and unknown values
}
