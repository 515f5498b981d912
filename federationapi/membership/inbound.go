package membership

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"sort"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/httputil"
)

// The resident server's side of make_join/send_join, make_leave/send_leave
// and make_knock/send_knock: a template on the room's head, then the event
// the other server built from it and signed, checked and accepted.

// makeJoin serves GET /_matrix/federation/v1/make_join/{roomId}/{userId}.
func (s *Service) makeJoin(r *http.Request, origin spec.ServerName) (any, error) {
	return s.makeMembership(r, origin, spec.Join)
}

// makeLeave serves GET /_matrix/federation/v1/make_leave/{roomId}/{userId}.
func (s *Service) makeLeave(r *http.Request, origin spec.ServerName) (any, error) {
	return s.makeMembership(r, origin, spec.Leave)
}

// makeKnock serves GET /_matrix/federation/v1/make_knock/{roomId}/{userId}.
func (s *Service) makeKnock(r *http.Request, origin spec.ServerName) (any, error) {
	return s.makeMembership(r, origin, spec.Knock)
}

// makeMembership answers a make_* request with a template event and the
// room version. Joins and knocks name the versions the asking server
// supports (ver, by default 1 only).
func (s *Service) makeMembership(r *http.Request, origin spec.ServerName, membership string) (any, error) {
	roomID, userID, err := roomAndUser(r, origin)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	ver, err := s.rs.RoomVersion(ctx, roomID)
	if err != nil {
		return nil, fedErr(err)
	}
	// The ACL first (as Synapse): a denied server learns nothing of the
	// room, its version included.
	if err := s.checkACL(ctx, roomID, origin); err != nil {
		return nil, err
	}
	if membership != spec.Leave {
		supported := r.URL.Query()["ver"]
		if len(supported) == 0 {
			supported = []string{string(gomatrixserverlib.RoomVersionV1)}
		}
		if !slices.Contains(supported, string(ver.Version())) {
			return nil, incompatibleVersion(ver.Version())
		}
	}
	template, ver, err := s.rs.MembershipTemplate(ctx, roomID, userID, membership)
	if err != nil {
		return nil, fedErr(err)
	}
	return map[string]any{"event": template, "room_version": ver.Version()}, nil
}

// receiveMembership parses and checks the event of a send_* request: the
// room's version, a member event of the path's room and ID whose sender
// (its state key) is a user of origin, with the expected membership. It is
// signed by this server (restricted joins need the authorising server's
// signature) and must be accepted into the room's timeline; the room's
// other servers then get it from us.
func (s *Service) receiveMembership(r *http.Request, origin spec.ServerName, membership string) (gomatrixserverlib.PDU, error) {
	roomID, eventID, err := roomAndEvent(r)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	ver, err := s.rs.RoomVersion(ctx, roomID)
	if err != nil {
		return nil, fedErr(err)
	}
	if err := s.checkACL(ctx, roomID, origin); err != nil {
		return nil, err
	}
	pdu, err := parseEventBody(r, ver)
	if err != nil {
		return nil, err
	}
	if err := checkOwnMembership(pdu, roomID, eventID, origin, membership); err != nil {
		return nil, err
	}
	if membership == spec.Join {
		var c struct {
			Via string `json:"join_authorised_via_users_server"`
		}
		json.Unmarshal(pdu.Content(), &c)
		if c.Via != "" && serverOf(c.Via) != s.origin {
			return nil, httputil.BadJSON("the authorising user %s is not a user of this server", c.Via)
		}
	}
	signed, err := s.sign(ver, pdu)
	if err != nil {
		return nil, err
	}
	if _, err := s.rs.InputRemoteMembership(ctx, origin, signed); err != nil {
		return nil, fedErr(err)
	}
	s.forward(ctx, signed.EventID(), origin)
	return signed, nil
}

// parseEventBody reads a request body that is one event of version ver
// (its content hash checked: a mismatch redacts it).
func parseEventBody(r *http.Request, ver gomatrixserverlib.IRoomVersion) (gomatrixserverlib.PDU, error) {
	body, err := httputil.ReadBody(r)
	if err != nil {
		return nil, err
	}
	var obj map[string]json.RawMessage
	if err := httputil.Unmarshal(body, &obj); err != nil {
		return nil, err
	}
	pdu, err := ver.NewEventFromUntrustedJSON(bytes.TrimSpace(body))
	if err != nil {
		return nil, httputil.BadJSON("not a valid event of room version %s: %v", ver.Version(), err)
	}
	return pdu, nil
}

// checkOwnMembership checks that pdu is the member event the path names,
// made by a user of origin about themselves, with membership m.
func checkOwnMembership(pdu gomatrixserverlib.PDU, roomID, eventID string, origin spec.ServerName, m string) error {
	if pdu.RoomID().String() != roomID {
		return httputil.BadJSON("the event is in room %s, not %s", pdu.RoomID().String(), roomID)
	}
	if pdu.EventID() != eventID {
		return httputil.BadJSON("the event's ID is %s, not %s", pdu.EventID(), eventID)
	}
	sender := string(pdu.SenderID())
	if pdu.Type() != spec.MRoomMember || !pdu.StateKeyEquals(sender) {
		return httputil.BadJSON("not a member event of its sender")
	}
	if serverOf(sender) != origin {
		return httputil.Forbidden("%s is not a user of %s", sender, origin)
	}
	if got, err := pdu.Membership(); err != nil || got != m {
		return httputil.BadJSON("membership must be %q", m)
	}
	return nil
}

// sendJoinResponse is the answer to send_join (v2).
type sendJoinResponse struct {
	Origin         spec.ServerName   `json:"origin"`
	State          []json.RawMessage `json:"state"`
	AuthChain      []json.RawMessage `json:"auth_chain"`
	Event          json.RawMessage   `json:"event"`
	MembersOmitted bool              `json:"members_omitted"`
	ServersInRoom  []string          `json:"servers_in_room,omitempty"`
}

// sendJoin serves PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}:
// the state before the join and its auth chain. With omit_members=true
// (MSC3706, as Synapse) the state leaves out member events but the
// joining user's own and, for rooms without a name or canonical alias,
// those of up to five heroes; the auth chain is that of the state
// returned, without the state's events; servers_in_room lists the servers
// joined before the join.
func (s *Service) sendJoin(r *http.Request, origin spec.ServerName) (any, error) {
	omit := false
	switch v := r.URL.Query().Get("omit_members"); v {
	case "", "false":
	case "true":
		omit = true
	default:
		return nil, httputil.InvalidParam("omit_members must be true or false")
	}
	join, err := s.receiveMembership(r, origin, spec.Join)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	roomID := join.RoomID().String()
	state, err := s.rs.StateEventsBefore(ctx, roomID, join.EventID())
	if err != nil {
		return nil, err
	}
	resp := sendJoinResponse{Origin: s.origin, Event: json.RawMessage(join.JSON())}
	returned := state
	if omit {
		returned = omitMembers(state, *join.StateKey())
		resp.MembersOmitted, resp.ServersInRoom = true, joinedServers(state)
	}
	chain, err := s.rs.AuthChainOf(ctx, roomID, append(append([]gomatrixserverlib.PDU{}, returned...), join))
	if err != nil {
		return nil, err
	}
	inState := map[string]bool{}
	for _, ev := range returned {
		inState[ev.EventID()] = true
		resp.State = append(resp.State, json.RawMessage(ev.JSON()))
	}
	resp.AuthChain = []json.RawMessage{}
	for _, ev := range chain {
		if !omit || !inState[ev.EventID()] {
			resp.AuthChain = append(resp.AuthChain, json.RawMessage(ev.JSON()))
		}
	}
	if resp.State == nil {
		resp.State = []json.RawMessage{}
	}
	return resp, nil
}

// sendJoinV1 serves PUT /_matrix/federation/v1/send_join/{roomId}/{eventId}:
// send_join v2's answer with the whole state (v1 has no omit_members).
func (s *Service) sendJoinV1(r *http.Request, origin spec.ServerName) (any, error) {
	q := r.URL.Query()
	q.Del("omit_members")
	r.URL.RawQuery = q.Encode()
	return s.sendJoin(r, origin)
}

// maxHeroes is how many members a partial state keeps for rooms without a
// name (as Synapse's room summary).
const maxHeroes = 5

// omitMembers is the state for omit_members: every event but member
// events, the joining user's own membership, and heroes when the room has
// neither a name nor a canonical alias.
func omitMembers(state []gomatrixserverlib.PDU, joiner string) []gomatrixserverlib.PDU {
	named := false
	var members []gomatrixserverlib.PDU
	out := make([]gomatrixserverlib.PDU, 0, len(state))
	for _, ev := range state {
		switch {
		case ev.Type() == spec.MRoomName || ev.Type() == "m.room.canonical_alias":
			named = true
			out = append(out, ev)
		case ev.Type() != spec.MRoomMember:
			out = append(out, ev)
		case ev.StateKeyEquals(joiner):
			out = append(out, ev)
		default:
			if m, _ := ev.Membership(); m == spec.Join || m == spec.Invite {
				members = append(members, ev)
			}
		}
	}
	if named {
		return out
	}
	// Heroes: the earliest members, as a room summary lists them.
	sort.Slice(members, func(i, j int) bool {
		if members[i].Depth() != members[j].Depth() {
			return members[i].Depth() < members[j].Depth()
		}
		return members[i].EventID() < members[j].EventID()
	})
	if len(members) > maxHeroes {
		members = members[:maxHeroes]
	}
	return append(out, members...)
}

// joinedServers lists the servers with a joined member in state.
func joinedServers(state []gomatrixserverlib.PDU) []string {
	var out []string
	for _, ev := range state {
		if ev.Type() != spec.MRoomMember || ev.StateKey() == nil {
			continue
		}
		if m, _ := ev.Membership(); m != spec.Join {
			continue
		}
		if s := string(serverOf(*ev.StateKey())); s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// sendLeave serves PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}.
func (s *Service) sendLeave(r *http.Request, origin spec.ServerName) (any, error) {
	if _, err := s.receiveMembership(r, origin, spec.Leave); err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}

// sendKnock serves PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}:
// the room's summary for the knocking user (the create event in full,
// MSC4311).
func (s *Service) sendKnock(r *http.Request, origin spec.ServerName) (any, error) {
	knock, err := s.receiveMembership(r, origin, spec.Knock)
	if err != nil {
		return nil, err
	}
	stripped, err := s.rs.StrippedState(r.Context(), knock.RoomID().String(), "")
	if err != nil {
		return nil, err
	}
	if stripped == nil {
		stripped = []json.RawMessage{}
	}
	return map[string]any{"knock_room_state": stripped}, nil
}
