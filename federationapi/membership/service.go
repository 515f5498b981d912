// Package membership is federation's side of room membership: joining,
// leaving, knocking and inviting across servers.
//
// Inbound, as the room's resident server: make_join/send_join (v2, with
// omit_members and restricted joins), make_leave/send_leave (v2),
// make_knock/send_knock, the invitee side of invite (v2) and
// /query/directory. Each handler checks that the origin is the server of
// the user concerned, the room's version, the room's server ACL, and has
// the roomserver check the auth rules.
//
// Outbound, the Service is the roomserver's Remote: a local user joins,
// knocks on or leaves (an invite or knock of) a room this server is not in
// through the servers given, invites of users of other servers are signed
// by their servers, and aliases of other servers are resolved. Events the
// joins bring are stored through the roomserver (InputRemoteJoin,
// StoreOutOfBand); events made here afterwards reach the other servers
// through the federation sender.
package membership

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/sirupsen/logrus"

	"matrixhs/federationapi"
	"matrixhs/federationapi/fedauth"
	"matrixhs/internal/httputil"
	"matrixhs/internal/ids"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

// Options tune the Service.
type Options struct {
	// Forward carries an event of another server accepted here as the
	// room's resident (send_join, send_leave, send_knock) to the room's
	// other servers (the federation sender's Forward); nil: not carried.
	Forward func(ctx context.Context, eventID, origin string) error
	// JoinTimeout bounds the processing of a remote join once send_join
	// was sent (it goes on if the client goes away): 5 minutes.
	JoinTimeout time.Duration
	Log         logrus.FieldLogger
	Now         func() time.Time
}

// Service serves and performs membership over federation.
type Service struct {
	api    *federationapi.API
	rs     *roomserver.Roomserver
	db     *storage.DB
	origin spec.ServerName
	keyID  gomatrixserverlib.KeyID
	key    ed25519.PrivateKey
	opts   Options
}

var _ roomserver.Remote = (*Service)(nil)

// New builds the Service on the federation machinery and the roomserver.
func New(api *federationapi.API, rs *roomserver.Roomserver, db *storage.DB, opts Options) *Service {
	if opts.JoinTimeout <= 0 {
		opts.JoinTimeout = 5 * time.Minute
	}
	if opts.Log == nil {
		opts.Log = logrus.StandardLogger()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Service{
		api: api, rs: rs, db: db, origin: api.Own.ServerName, keyID: api.Own.KeyID, key: api.Own.PrivateKey, opts: opts,
	}
}

// Register adds the inbound endpoints to a route table (the server's one
// table, and the federation listener's).
func (s *Service) Register(rt *httputil.Router) {
	h := s.api.Auth.Handler
	const v1, v2 = "/_matrix/federation/v1", "/_matrix/federation/v2"
	get, put := http.MethodGet, http.MethodPut
	rt.Exact(get, v1+"/make_join/{roomId}/{userId}", h(s.makeJoin))
	rt.Exact(put, v2+"/send_join/{roomId}/{eventId}", h(s.sendJoin))
	rt.Exact(put, v1+"/send_join/{roomId}/{eventId}", h(v1Answer(s.sendJoinV1)))
	rt.Exact(get, v1+"/make_leave/{roomId}/{userId}", h(s.makeLeave))
	rt.Exact(put, v2+"/send_leave/{roomId}/{eventId}", h(s.sendLeave))
	rt.Exact(put, v1+"/send_leave/{roomId}/{eventId}", h(v1Answer(s.sendLeave)))
	rt.Exact(get, v1+"/make_knock/{roomId}/{userId}", h(s.makeKnock))
	rt.Exact(put, v1+"/send_knock/{roomId}/{eventId}", h(s.sendKnock))
	rt.Exact(put, v2+"/invite/{roomId}/{eventId}", h(s.invite))
	rt.Exact(get, v1+"/query/directory", h(s.queryDirectory))
}

// v1Answer wraps a handler's answer as the v1 send_join and send_leave
// give it, [200, answer] (a historical quirk the spec keeps; servers that
// predate v2, and Synapse, still serve them).
func v1Answer(h func(*http.Request, spec.ServerName) (any, error)) func(*http.Request, spec.ServerName) (any, error) {
	return func(r *http.Request, origin spec.ServerName) (any, error) {
		out, err := h(r, origin)
		if err != nil {
			return nil, err
		}
		return []any{http.StatusOK, out}, nil
	}
}

// pathVar is a path parameter, unescaped.
func pathVar(r *http.Request, name string) string { return httputil.PathVar(r, name) }

// roomAndUser reads and checks {roomId} and {userId}: the user must be of
// the server asking.
func roomAndUser(r *http.Request, origin spec.ServerName) (roomID, userID string, err error) {
	roomID, userID = pathVar(r, "roomId"), pathVar(r, "userId")
	if err := ids.RoomID(roomID); err != nil {
		return "", "", httputil.InvalidParam("%v", err)
	}
	if err := ids.UserID(userID); err != nil {
		return "", "", httputil.InvalidParam("%v", err)
	}
	if serverOf(userID) != origin {
		return "", "", httputil.Forbidden("%s is not a user of %s", userID, origin)
	}
	return roomID, userID, nil
}

// roomAndEvent reads and checks {roomId} and {eventId}.
func roomAndEvent(r *http.Request) (roomID, eventID string, err error) {
	roomID, eventID = pathVar(r, "roomId"), pathVar(r, "eventId")
	if err := ids.RoomID(roomID); err != nil {
		return "", "", httputil.InvalidParam("%v", err)
	}
	if err := ids.EventID(eventID); err != nil {
		return "", "", httputil.InvalidParam("%v", err)
	}
	return roomID, eventID, nil
}

// serverOf is the server of a user ID ("" when it is not one).
func serverOf(userID string) spec.ServerName {
	uid, err := spec.NewUserID(userID, true)
	if err != nil {
		return ""
	}
	return uid.Domain()
}

// checkACL refuses origins the room's server ACL denies.
func (s *Service) checkACL(ctx context.Context, roomID string, origin spec.ServerName) error {
	return fedauth.CheckServerACL(ctx, s.aclLookup, roomID, origin)
}

func (s *Service) aclLookup(ctx context.Context, roomID string) ([]byte, bool, error) {
	info, err := s.db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	evs, err := s.db.CurrentStateEvents(ctx, info.NID, "m.room.server_acl")
	if err != nil {
		return nil, false, err
	}
	for _, e := range evs {
		if e.StateKey != nil && *e.StateKey == "" {
			var ev struct {
				Content json.RawMessage `json:"content"`
			}
			if json.Unmarshal(e.JSON, &ev) == nil {
				return ev.Content, true, nil
			}
		}
	}
	return nil, false, nil
}

// supportedVersions are the room versions this server joins (the stable
// ones: pseudonymous-ID rooms are not offered).
func supportedVersions() []gomatrixserverlib.RoomVersion {
	var out []gomatrixserverlib.RoomVersion
	for v := range gomatrixserverlib.StableRoomVersions() {
		out = append(out, v)
	}
	return out
}

// versionQuery is the ver= query of make_join and make_knock.
func versionQuery() string {
	q := url.Values{}
	for _, v := range supportedVersions() {
		q.Add("ver", string(v))
	}
	return q.Encode()
}

// roomVersion is a room version this server can take part in.
func roomVersion(v gomatrixserverlib.RoomVersion) (gomatrixserverlib.IRoomVersion, bool) {
	ver, ok := gomatrixserverlib.StableRoomVersions()[v]
	return ver, ok
}

// incompatibleVersion is M_INCOMPATIBLE_ROOM_VERSION for a room of version v.
func incompatibleVersion(v gomatrixserverlib.RoomVersion) error {
	return (&httputil.Error{Status: http.StatusBadRequest, Code: "M_INCOMPATIBLE_ROOM_VERSION",
		Msg: "Your homeserver does not support the features required to take part in this room"}).With("room_version", string(v))
}

// fedErr maps roomserver errors to the federation API's Matrix errors.
func fedErr(err error) error {
	var fe *roomserver.ForbiddenError
	var be *roomserver.BadRequestError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &fe):
		return httputil.Forbidden("%s", fe.Reason)
	case errors.As(err, &be):
		if be.Code != "" {
			return &httputil.Error{Status: http.StatusBadRequest, Code: be.Code, Msg: be.Reason}
		}
		return httputil.BadJSON("%s", be.Reason)
	case errors.Is(err, roomserver.ErrNotInRoom):
		return httputil.NotFound("Not an active room on this server")
	case errors.Is(err, roomserver.ErrRoomNotFound):
		return httputil.NotFound("Unknown room")
	case errors.Is(err, roomserver.ErrUnableToAuthorise):
		return &httputil.Error{Status: http.StatusBadRequest, Code: "M_UNABLE_TO_AUTHORISE_JOIN", Msg: err.Error()}
	case errors.Is(err, roomserver.ErrUnsupportedVersion):
		return &httputil.Error{Status: http.StatusBadRequest, Code: "M_UNSUPPORTED_ROOM_VERSION", Msg: "unsupported room version"}
	case errors.Is(err, roomserver.ErrEventTooLarge):
		return httputil.TooLarge("event is larger than 65536 bytes")
	}
	return err
}

// sign adds this server's signature to an event of room version ver.
func (s *Service) sign(ver gomatrixserverlib.IRoomVersion, pdu gomatrixserverlib.PDU) (gomatrixserverlib.PDU, error) {
	return signEvent(ver, pdu, s.origin, s.keyID, s.key)
}

// signEvent signs pdu as origin. gomatrixserverlib's PDU.Sign hands a v12
// event back in the shape of older versions, whose auth events lack the
// create event a v12 room ID implies (state resolution and the auth rules
// then miss it): the signed JSON is parsed again with the room version.
func signEvent(ver gomatrixserverlib.IRoomVersion, pdu gomatrixserverlib.PDU, origin spec.ServerName,
	keyID gomatrixserverlib.KeyID, key ed25519.PrivateKey) (gomatrixserverlib.PDU, error) {
	signed := pdu.Sign(string(origin), keyID, key)
	out, err := ver.NewEventFromTrustedJSONWithEventID(pdu.EventID(), signed.JSON(), pdu.Redacted())
	if err != nil {
		return nil, fmt.Errorf("signing %s: %w", pdu.EventID(), err)
	}
	return out, nil
}

// forward hands an event accepted as the room's resident to the sender.
func (s *Service) forward(ctx context.Context, eventID string, origin spec.ServerName) {
	if s.opts.Forward == nil {
		return
	}
	if err := s.opts.Forward(context.WithoutCancel(ctx), eventID, string(origin)); err != nil {
		s.opts.Log.WithError(err).WithField("event_id", eventID).Warn("forwarding a membership event to the room's servers")
	}
}
