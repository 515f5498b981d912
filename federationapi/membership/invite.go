package membership

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/httputil"
	"matrixhs/internal/ids"
	"matrixhs/storage"
)

// invite serves PUT /_matrix/federation/v2/invite/{roomId}/{eventId}: an
// invite of a local user made on the inviting server. It must be an invite
// event of the path's room and ID, of a room version this server supports,
// sent by a user of the requesting server (whose signature must verify),
// for an existing local user. This server signs it and the invitee sees it
// in /sync with the room summary the inviting server gave.
func (s *Service) invite(r *http.Request, origin spec.ServerName) (any, error) {
	roomID, eventID, err := roomAndEvent(r)
	if err != nil {
		return nil, err
	}
	var body inviteRequest
	if err := httputil.DecodeJSONWithNUL(r, &body); err != nil {
		return nil, err
	}
	if body.RoomVersion == "" {
		return nil, httputil.MissingParam("room_version is required")
	}
	ver, ok := roomVersion(body.RoomVersion)
	if !ok {
		return nil, incompatibleVersion(body.RoomVersion)
	}
	ctx := r.Context()
	if err := s.checkACL(ctx, roomID, origin); err != nil {
		return nil, err
	}
	pdu, err := ver.NewEventFromUntrustedJSON(body.Event)
	if err != nil {
		return nil, httputil.BadJSON("not a valid event of room version %s: %v", ver.Version(), err)
	}
	if err := s.checkInvite(ctx, pdu, roomID, eventID, origin); err != nil {
		return nil, err
	}
	if err := s.verifyBy(ctx, ver, pdu, origin); err != nil {
		return nil, httputil.Forbidden("the invite is not signed by %s: %v", origin, err)
	}
	stripped := s.strippedState(ctx, ver, roomID, body.InviteRoomState)
	signed, err := s.sign(ver, pdu)
	if err != nil {
		return nil, err
	}
	if _, err := s.rs.ReceiveInvite(ctx, signed, stripped); err != nil {
		return nil, fedErr(err)
	}
	return map[string]any{"event": json.RawMessage(signed.JSON())}, nil
}

// checkInvite checks an inbound invite event against the request.
func (s *Service) checkInvite(ctx context.Context, pdu gomatrixserverlib.PDU, roomID, eventID string, origin spec.ServerName) error {
	if pdu.RoomID().String() != roomID {
		return httputil.BadJSON("the event is in room %s, not %s", pdu.RoomID().String(), roomID)
	}
	if pdu.EventID() != eventID {
		return httputil.BadJSON("the event's ID is %s, not %s", pdu.EventID(), eventID)
	}
	if m, err := pdu.Membership(); pdu.Type() != spec.MRoomMember || err != nil || m != spec.Invite || pdu.StateKey() == nil {
		return httputil.BadJSON("not an invite event")
	}
	if serverOf(string(pdu.SenderID())) != origin {
		return httputil.Forbidden("the inviter %s is not a user of %s", pdu.SenderID(), origin)
	}
	invitee := *pdu.StateKey()
	if serverOf(invitee) != s.origin {
		return httputil.Forbidden("%s is not a user of this server", invitee)
	}
	if _, err := s.db.Account(ctx, invitee); errors.Is(err, storage.ErrNotFound) {
		return httputil.NotFound("Unknown user %s", invitee)
	} else if err != nil {
		return err
	}
	return nil
}

// verifyBy checks server's signature on an event (its redacted form).
func (s *Service) verifyBy(ctx context.Context, ver gomatrixserverlib.IRoomVersion, pdu gomatrixserverlib.PDU, server spec.ServerName) error {
	redacted, err := ver.RedactEventJSON(pdu.JSON())
	if err != nil {
		return err
	}
	res, err := s.api.KeyRing.VerifyJSONs(ctx, []gomatrixserverlib.VerifyJSONRequest{{
		ServerName: server, Message: redacted, AtTS: pdu.OriginServerTS(), ValidityCheckingFunc: ver.SignatureValidityCheck,
	}})
	if err != nil {
		return err
	}
	return res[0].Error
}

// maxStrippedEvents bounds the room summary kept for an invite or knock.
const maxStrippedEvents = 50

// strippedState turns an invite_room_state or knock_room_state into what
// sync serves (a JSON array; nil when nothing is usable): each entry cut
// to type, state key, sender and content. The create event, which MSC4311
// has servers send in full, is kept only when it is that of the room (a
// v12 room's ID is its hash; older rooms' create events must carry the
// room's ID and their sender's signature), with its event ID, room ID and
// timestamp for the client.
func (s *Service) strippedState(ctx context.Context, ver gomatrixserverlib.IRoomVersion, roomID string, in []json.RawMessage) []byte {
	out := make([]map[string]any, 0, len(in))
	for _, raw := range in {
		if len(out) == maxStrippedEvents {
			break
		}
		var e struct {
			Type     string          `json:"type"`
			StateKey *string         `json:"state_key"`
			Sender   string          `json:"sender"`
			Content  json.RawMessage `json:"content"`
		}
		if json.Unmarshal(raw, &e) != nil || e.Type == "" || e.StateKey == nil || len(e.Content) == 0 || e.Content[0] != '{' {
			continue
		}
		entry := map[string]any{"type": e.Type, "state_key": *e.StateKey, "sender": e.Sender, "content": e.Content}
		if e.Type == spec.MRoomCreate && *e.StateKey == "" {
			create, ok := s.createEventOf(ctx, ver, roomID, raw)
			if !ok {
				continue
			}
			entry["event_id"], entry["room_id"], entry["origin_server_ts"] = create.EventID(), roomID, create.OriginServerTS()
			entry["sender"], entry["content"] = string(create.SenderID()), json.RawMessage(create.Content())
		}
		out = append(out, entry)
	}
	if len(out) == 0 {
		return nil
	}
	js, err := json.Marshal(out)
	if err != nil {
		return nil
	}
	return js
}

// createEventOf checks a full create event given for a room.
func (s *Service) createEventOf(ctx context.Context, ver gomatrixserverlib.IRoomVersion, roomID string, raw json.RawMessage) (gomatrixserverlib.PDU, bool) {
	var probe map[string]json.RawMessage
	if json.Unmarshal(raw, &probe) != nil || probe["signatures"] == nil {
		return nil, false // a stripped create event (before MSC4311): nothing to check it by
	}
	create, err := ver.NewEventFromUntrustedJSON(raw)
	if err != nil || create.Type() != spec.MRoomCreate || !create.StateKeyEquals("") {
		return nil, false
	}
	if ver.DomainlessRoomIDs() {
		return create, "$"+strings.TrimPrefix(roomID, "!") == create.EventID()
	}
	if create.RoomID().String() != roomID {
		return nil, false
	}
	sender := serverOf(string(create.SenderID()))
	return create, sender != "" && s.verifyBy(ctx, ver, create, sender) == nil
}

// queryDirectory serves GET /_matrix/federation/v1/query/directory: the
// room of one of this server's aliases and servers to join it through
// (this one first).
func (s *Service) queryDirectory(r *http.Request, _ spec.ServerName) (any, error) {
	alias := r.URL.Query().Get("room_alias")
	if alias == "" {
		return nil, httputil.MissingParam("room_alias is required")
	}
	if err := ids.RoomAlias(alias); err != nil {
		return nil, httputil.InvalidParam("%v", err)
	}
	if spec.ServerName(aliasServer(alias)) != s.origin {
		return nil, httputil.NotFound("Room alias %s is not on this server", alias)
	}
	ctx := r.Context()
	roomID, err := s.db.AliasRoom(ctx, alias)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("Room alias %s not found", alias)
	}
	if err != nil {
		return nil, err
	}
	servers := []string{string(s.origin)}
	if info, err := s.db.Room(ctx, roomID); err == nil {
		joined, err := s.db.CurrentJoinedServers(ctx, info.NID)
		if err != nil {
			return nil, err
		}
		for _, j := range joined {
			if j != string(s.origin) {
				servers = append(servers, j)
			}
		}
	}
	return map[string]any{"room_id": roomID, "servers": servers}, nil
}

// aliasServer is the server part of a room alias.
func aliasServer(alias string) string {
	_, server, _ := strings.Cut(alias, ":")
	return server
}
