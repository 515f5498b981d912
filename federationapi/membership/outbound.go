package membership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/federationapi/fedclient"
	"matrixhs/internal/httputil"
	"matrixhs/internal/ids"
	"matrixhs/roomserver"
)

// The joining server's side: a local user's join, leave or knock in a room
// this server is not in goes through the servers given, one after the
// other, until one answers: make_* for a template, which is completed and
// signed here, then send_*.

// Join joins a local user to a room (make_join, send_join) and stores the
// room's state and the join once they check out.
func (s *Service) Join(ctx context.Context, req roomserver.RemoteMembership) (roomserver.Sent, error) {
	return s.eachServer(ctx, req, "join", s.joinVia)
}

// Leave rejects an invite or withdraws a knock (make_leave, send_leave)
// and stores the leave out of band.
func (s *Service) Leave(ctx context.Context, req roomserver.RemoteMembership) (roomserver.Sent, error) {
	return s.eachServer(ctx, req, "leave", s.leaveVia)
}

// Knock knocks on a room (make_knock, send_knock) and stores the knock out
// of band with the room summary the server gave.
func (s *Service) Knock(ctx context.Context, req roomserver.RemoteMembership) (roomserver.Sent, error) {
	return s.eachServer(ctx, req, "knock", s.knockVia)
}

type viaFunc func(ctx context.Context, server spec.ServerName, req roomserver.RemoteMembership) (roomserver.Sent, error)

// eachServer tries req.Servers in order and answers the first success, or
// the last failure.
func (s *Service) eachServer(ctx context.Context, req roomserver.RemoteMembership, what string, via viaFunc) (roomserver.Sent, error) {
	if s.api.Options().Disabled {
		return roomserver.Sent{}, &roomserver.ForbiddenError{Reason: "federation is disabled on this server"}
	}
	var last error
	for _, server := range req.Servers {
		sent, err := via(ctx, server, req)
		if err == nil {
			return sent, nil
		}
		s.opts.Log.WithError(err).WithFields(map[string]any{"room_id": req.RoomID, "user_id": req.UserID, "server": server}).
			Info("remote " + what + " failed")
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	if last == nil {
		return roomserver.Sent{}, roomserver.ErrNoServers
	}
	return roomserver.Sent{}, remoteFailure(last)
}

// remoteFailure is what the client hears when no server took the change:
// the refusal of the last server asked (403, 404 and 400 with their
// errcode), our own refusal of what it answered, or 502.
func remoteFailure(err error) error {
	var re *fedclient.RemoteError
	var fe *roomserver.ForbiddenError
	var be *roomserver.BadRequestError
	switch {
	case errors.As(err, &re) && re.Status == http.StatusForbidden:
		return &roomserver.ForbiddenError{Reason: orDefault(re.Message, "the room's server refused")}
	case errors.As(err, &re) && re.Status == http.StatusNotFound:
		return fmt.Errorf("%w: %s", roomserver.ErrRoomNotFound, re.Message)
	case errors.As(err, &re) && re.Status == http.StatusBadRequest && re.Errcode != "":
		return &roomserver.BadRequestError{Reason: re.Message, Code: re.Errcode}
	case errors.As(err, &fe), errors.As(err, &be), errors.Is(err, roomserver.ErrRoomNotFound):
		return err
	}
	return &httputil.Error{Status: http.StatusBadGateway, Code: "M_UNKNOWN", Msg: "No server of the room could be reached"}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// template is a make_* answer.
type template struct {
	Event       gomatrixserverlib.ProtoEvent  `json:"event"`
	RoomVersion gomatrixserverlib.RoomVersion `json:"room_version"`
}

// makeTemplate asks server for a template of the user's membership change
// (endpoint: make_join, make_leave or make_knock) and checks it is one.
// fallback is the room version assumed when the answer names none.
func (s *Service) makeTemplate(ctx context.Context, server spec.ServerName, endpoint string, req roomserver.RemoteMembership,
	fallback gomatrixserverlib.RoomVersion) (gomatrixserverlib.ProtoEvent, gomatrixserverlib.IRoomVersion, error) {
	path := "/_matrix/federation/v1/" + endpoint + "/" + url.PathEscape(req.RoomID) + "/" + url.PathEscape(req.UserID)
	if endpoint != "make_leave" {
		path += "?" + versionQuery()
	}
	var t template
	if err := s.api.Client.Do(ctx, http.MethodGet, server, path, nil, &t); err != nil {
		return t.Event, nil, err
	}
	v := t.RoomVersion
	if v == "" {
		v = fallback
	}
	ver, ok := roomVersion(v)
	if !ok {
		return t.Event, nil, &roomserver.BadRequestError{Reason: fmt.Sprintf("room version %q is not supported", v), Code: "M_INCOMPATIBLE_ROOM_VERSION"}
	}
	e := t.Event
	if e.SenderID != req.UserID || e.StateKey == nil || *e.StateKey != req.UserID || e.RoomID != req.RoomID ||
		(e.Type != "" && e.Type != spec.MRoomMember) {
		return e, nil, fmt.Errorf("%s answered %s with a template for another event", server, endpoint)
	}
	return e, ver, nil
}

// buildFromTemplate completes a template with the member content and signs
// it.
func (s *Service) buildFromTemplate(proto gomatrixserverlib.ProtoEvent, ver gomatrixserverlib.IRoomVersion, req roomserver.RemoteMembership,
	content map[string]any) (gomatrixserverlib.PDU, error) {
	raw, err := json.Marshal(content)
	if err != nil {
		return nil, err
	}
	user := req.UserID
	proto.Type, proto.SenderID, proto.StateKey, proto.RoomID = spec.MRoomMember, user, &user, req.RoomID
	proto.Content, proto.Redacts, proto.Unsigned, proto.Signature = raw, "", nil, nil
	pdu, err := ver.NewEventBuilderFromProtoEvent(&proto).Build(s.opts.Now(), s.origin, s.keyID, s.key)
	if err != nil {
		return nil, fmt.Errorf("building the member event from the template: %w", err)
	}
	return pdu, nil
}

// memberContent is req's content with the membership set.
func memberContent(req roomserver.RemoteMembership, membership string) map[string]any {
	c := make(map[string]any, len(req.Content)+1)
	for k, v := range req.Content {
		c[k] = v
	}
	delete(c, "join_authorised_via_users_server")
	c["membership"] = membership
	return c
}

func eventPath(version, endpoint string, pdu gomatrixserverlib.PDU) string {
	return "/_matrix/federation/" + version + "/" + endpoint + "/" + url.PathEscape(pdu.RoomID().String()) + "/" + url.PathEscape(pdu.EventID())
}

// joinVia joins through one server. Restricted joins keep the authorising
// user the template names, and the signature of that user's server from
// send_join's answer.
func (s *Service) joinVia(ctx context.Context, server spec.ServerName, req roomserver.RemoteMembership) (roomserver.Sent, error) {
	proto, ver, err := s.makeTemplate(ctx, server, "make_join", req, gomatrixserverlib.RoomVersionV1)
	if err != nil {
		return roomserver.Sent{}, err
	}
	content := memberContent(req, spec.Join)
	var tc struct {
		Via string `json:"join_authorised_via_users_server"`
	}
	json.Unmarshal(proto.Content, &tc)
	if tc.Via != "" {
		content["join_authorised_via_users_server"] = tc.Via
	}
	join, err := s.buildFromTemplate(proto, ver, req, content)
	if err != nil {
		return roomserver.Sent{}, err
	}
	// Once send_join is out the room may count us in: finish the join even
	// if the client stops waiting.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.JoinTimeout)
	defer cancel()
	var resp sendJoinResponse
	if err := s.api.Client.Do(ctx, http.MethodPut, server, eventPath("v2", "send_join", join), json.RawMessage(join.JSON()), &resp); err != nil {
		return roomserver.Sent{}, err
	}
	if resp.MembersOmitted {
		return roomserver.Sent{}, fmt.Errorf("%s omitted members from send_join unasked", server)
	}
	if tc.Via != "" {
		returned, err := ver.NewEventFromUntrustedJSON(resp.Event)
		if err != nil {
			return roomserver.Sent{}, fmt.Errorf("%s returned an invalid join: %w", server, err)
		}
		if join, err = roomserver.GraftSignatures(ver, join, returned, serverOf(tc.Via)); err != nil {
			return roomserver.Sent{}, err
		}
	}
	events, stateIDs, err := checkJoinState(ver, req.RoomID, join, resp.State, resp.AuthChain)
	if err != nil {
		return roomserver.Sent{}, fmt.Errorf("send_join answer of %s: %w", server, err)
	}
	return s.rs.InputRemoteJoin(ctx, server, join, events, stateIDs)
}

// checkJoinState parses send_join's state and auth chain and checks what
// can be checked before storing: events of the room, state events with
// one per key, the create event of this room and version, and a join the
// state allows. Signatures and each event's auth events are checked when
// the roomserver stores them.
func checkJoinState(ver gomatrixserverlib.IRoomVersion, roomID string, join gomatrixserverlib.PDU, stateJSON, chainJSON []json.RawMessage) ([]gomatrixserverlib.PDU, []string, error) {
	parse := func(list []json.RawMessage) []gomatrixserverlib.PDU {
		out := make([]gomatrixserverlib.PDU, 0, len(list))
		for _, js := range list {
			if pdu, err := roomserver.ParseRemoteEvent(ver, js); err == nil && pdu.RoomID().String() == roomID {
				out = append(out, pdu)
			}
		}
		return out
	}
	state, chain := parse(stateJSON), parse(chainJSON)
	byKey := map[gomatrixserverlib.StateKeyTuple]gomatrixserverlib.PDU{}
	ids := make([]string, 0, len(state))
	for _, ev := range state {
		if ev.StateKey() == nil {
			return nil, nil, fmt.Errorf("state event %s has no state key", ev.EventID())
		}
		k := gomatrixserverlib.StateKeyTuple{EventType: ev.Type(), StateKey: *ev.StateKey()}
		if _, dup := byKey[k]; dup {
			return nil, nil, fmt.Errorf("two state events for (%s, %s)", k.EventType, k.StateKey)
		}
		byKey[k] = ev
		ids = append(ids, ev.EventID())
	}
	create := byKey[gomatrixserverlib.StateKeyTuple{EventType: spec.MRoomCreate}]
	if create == nil {
		return nil, nil, errors.New("the state has no create event")
	}
	var cc struct {
		Version string `json:"room_version"`
	}
	json.Unmarshal(create.Content(), &cc)
	if cc.Version == "" {
		cc.Version = string(gomatrixserverlib.RoomVersionV1)
	}
	if cc.Version != string(ver.Version()) {
		return nil, nil, fmt.Errorf("the create event says version %s, not %s", cc.Version, ver.Version())
	}
	if ver.DomainlessRoomIDs() && "$"+roomID[1:] != create.EventID() {
		return nil, nil, errors.New("the create event is not that of this room")
	}
	provider, err := gomatrixserverlib.NewAuthEvents(state)
	if err != nil {
		return nil, nil, err
	}
	if err := gomatrixserverlib.Allowed(join, provider, userIDForSender); err != nil {
		return nil, nil, fmt.Errorf("the state does not allow the join: %w", err)
	}
	return append(chain, state...), ids, nil
}

func userIDForSender(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) {
	return spec.NewUserID(string(s), true)
}

// leaveVia rejects an invite (or withdraws a knock) through one server.
func (s *Service) leaveVia(ctx context.Context, server spec.ServerName, req roomserver.RemoteMembership) (roomserver.Sent, error) {
	fallback := gomatrixserverlib.RoomVersionV1
	if ver, err := s.rs.RoomVersion(ctx, req.RoomID); err == nil {
		fallback = ver.Version()
	}
	proto, ver, err := s.makeTemplate(ctx, server, "make_leave", req, fallback)
	if err != nil {
		return roomserver.Sent{}, err
	}
	leave, err := s.buildFromTemplate(proto, ver, req, memberContent(req, spec.Leave))
	if err != nil {
		return roomserver.Sent{}, err
	}
	if err := s.api.Client.Do(ctx, http.MethodPut, server, eventPath("v2", "send_leave", leave), json.RawMessage(leave.JSON()), nil); err != nil {
		return roomserver.Sent{}, err
	}
	return s.rs.StoreOutOfBand(context.WithoutCancel(ctx), leave, nil)
}

// knockVia knocks through one server.
func (s *Service) knockVia(ctx context.Context, server spec.ServerName, req roomserver.RemoteMembership) (roomserver.Sent, error) {
	proto, ver, err := s.makeTemplate(ctx, server, "make_knock", req, gomatrixserverlib.RoomVersionV1)
	if err != nil {
		return roomserver.Sent{}, err
	}
	knock, err := s.buildFromTemplate(proto, ver, req, memberContent(req, spec.Knock))
	if err != nil {
		return roomserver.Sent{}, err
	}
	var resp struct {
		KnockRoomState []json.RawMessage `json:"knock_room_state"`
	}
	if err := s.api.Client.Do(ctx, http.MethodPut, server, eventPath("v1", "send_knock", knock), json.RawMessage(knock.JSON()), &resp); err != nil {
		return roomserver.Sent{}, err
	}
	stripped := s.strippedState(ctx, ver, req.RoomID, resp.KnockRoomState)
	return s.rs.StoreOutOfBand(context.WithoutCancel(ctx), knock, stripped)
}

// inviteRequest is the body of PUT /_matrix/federation/v2/invite.
type inviteRequest struct {
	RoomVersion     gomatrixserverlib.RoomVersion `json:"room_version"`
	Event           json.RawMessage               `json:"event"`
	InviteRoomState []json.RawMessage             `json:"invite_room_state"`
}

// Invite has the invitee's server sign an invite (PUT /invite, v2) and
// returns the event it sent back.
func (s *Service) Invite(ctx context.Context, invite gomatrixserverlib.PDU, stripped []json.RawMessage) (gomatrixserverlib.PDU, error) {
	if s.api.Options().Disabled {
		return nil, &roomserver.ForbiddenError{Reason: "federation is disabled on this server"}
	}
	server := serverOf(*invite.StateKey())
	if stripped == nil {
		stripped = []json.RawMessage{}
	}
	body := inviteRequest{RoomVersion: invite.Version(), Event: json.RawMessage(invite.JSON()), InviteRoomState: stripped}
	var resp struct {
		Event json.RawMessage `json:"event"`
	}
	if err := s.api.Client.Do(ctx, http.MethodPut, server, eventPath("v2", "invite", invite), body, &resp); err != nil {
		s.opts.Log.WithError(err).WithField("server", server).Info("remote invite failed")
		// The invitee's server's refusal is the client's answer (an
		// unknown user, a blocked room…), as in Synapse.
		var re *fedclient.RemoteError
		if errors.As(err, &re) && re.Status/100 == 4 && re.Errcode != "" {
			return nil, &httputil.Error{Status: re.Status, Code: re.Errcode, Msg: re.Message}
		}
		return nil, remoteFailure(err)
	}
	ver, err := gomatrixserverlib.GetRoomVersion(invite.Version())
	if err != nil {
		return nil, err
	}
	returned, err := ver.NewEventFromUntrustedJSON(resp.Event)
	if err != nil {
		return nil, &roomserver.BadRequestError{Reason: fmt.Sprintf("%s returned an invalid invite: %v", server, err)}
	}
	return returned, nil
}

// Alias resolves an alias of another server through its /query/directory.
func (s *Service) Alias(ctx context.Context, alias string) (string, []string, error) {
	if s.api.Options().Disabled {
		return "", nil, roomserver.ErrRoomNotFound
	}
	server := spec.ServerName(aliasServer(alias))
	var resp struct {
		RoomID  string   `json:"room_id"`
		Servers []string `json:"servers"`
	}
	path := "/_matrix/federation/v1/query/directory?" + url.Values{"room_alias": {alias}}.Encode()
	if err := s.api.Client.Do(ctx, http.MethodGet, server, path, nil, &resp); err != nil {
		s.opts.Log.WithError(err).WithField("alias", alias).Info("remote alias lookup failed")
		return "", nil, remoteFailure(err)
	}
	if err := ids.RoomID(resp.RoomID); err != nil {
		return "", nil, &httputil.Error{Status: http.StatusBadGateway, Code: "M_UNKNOWN", Msg: "the alias's server answered with an invalid room ID"}
	}
	return resp.RoomID, resp.Servers, nil
}
