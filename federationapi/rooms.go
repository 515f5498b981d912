package federationapi

import (
	"context"
	"errors"
	"net/http"
	"unicode/utf8"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/federationapi/fedauth"
	"matrixhs/internal/httputil"
	"matrixhs/roomserver"
)

// roomFederation is what serving rooms over federation needs beyond the
// API itself.
type roomFederation struct {
	rs      *roomserver.Roomserver
	fetcher *Fetcher
	txns    *txnQueue
	turns   *roomTurns
}

// AttachRooms makes the API serve room federation through rs: inbound
// transactions (/send) and room history (/backfill, /get_missing_events,
// /state, /state_ids, /event, /event_auth, /timestamp_to_event); and lets
// rs backfill history from other servers through the API's client. Call
// it before Routes. With federation disabled none of this is served.
func (f *API) AttachRooms(rs *roomserver.Roomserver) {
	f.rooms = &roomFederation{rs: rs, fetcher: f.Fetcher(), txns: newTxnQueue(), turns: newRoomTurns()}
	if !f.opts.Disabled {
		rs.SetBackfiller(f.rooms.fetcher)
	}
}

// roomRoutes registers the room federation endpoints (every one behind
// X-Matrix authentication).
func (f *API) roomRoutes(rt *httputil.Router) {
	if f.opts.Disabled {
		return
	}
	const v1 = "/_matrix/federation/v1"
	a, get := f.Auth, http.MethodGet
	// A transaction (50 PDUs of up to 64 KiB, 100 EDUs) may be larger than
	// other requests: the server's body limit bounds it.
	rt.Exact(http.MethodPut, v1+"/send/{txnId}", a.HandlerWithBody(f.sendTransaction, 0))
	rt.Exact(get, v1+"/backfill/{roomId}", a.Handler(f.backfill))
	rt.Exact(http.MethodPost, v1+"/get_missing_events/{roomId}", a.Handler(f.getMissingEvents))
	rt.Exact(get, v1+"/state/{roomId}", a.Handler(f.roomState))
	rt.Exact(get, v1+"/state_ids/{roomId}", a.Handler(f.roomStateIDs))
	rt.Exact(get, v1+"/event/{eventId}", a.Handler(f.event))
	rt.Exact(get, v1+"/event_auth/{roomId}/{eventId}", a.Handler(f.eventAuth))
	rt.Exact(get, v1+"/timestamp_to_event/{roomId}", a.Handler(f.timestampToEvent))
	f.directoryRoutes(rt)
}

// pathID reads a path parameter (escaped as sent) that must be an ID with
// the given sigil.
func pathID(r *http.Request, name string, sigil byte) (string, error) {
	id := httputil.PathVar(r, name)
	if len(id) < 2 || len(id) > 255 || id[0] != sigil || !utf8.ValidString(id) {
		return "", httputil.InvalidParam("%s is not a valid ID", name)
	}
	return id, nil
}

// roomFor checks that origin may ask about a room: this server holds it,
// its server ACL lets origin in, and origin has a joined member or the room
// is world-readable. Anything else is 403 M_FORBIDDEN (an unknown room
// too: nothing is told of rooms).
func (f *API) roomFor(ctx context.Context, roomID string, origin spec.ServerName) (*roomserver.FederationRoom, error) {
	fr, err := f.rooms.rs.FederationRoom(ctx, roomID)
	if errors.Is(err, roomserver.ErrRoomNotFound) {
		return nil, httputil.Forbidden("Host not in room")
	}
	if err != nil {
		return nil, err
	}
	if fr.ACL != nil && !fedauth.ParseACL(fr.ACL).Allows(origin) {
		return nil, httputil.Forbidden("Server %s is banned from room %s by its server ACL", origin, roomID)
	}
	if !fr.ServerJoined(origin) && !fr.WorldReadable {
		return nil, httputil.Forbidden("Host not in room")
	}
	return fr, nil
}

// pathRoom reads the {roomId} path parameter and checks origin may ask
// about the room.
func (f *API) pathRoom(r *http.Request, origin spec.ServerName) (*roomserver.FederationRoom, error) {
	roomID, err := pathID(r, "roomId", '!')
	if err != nil {
		return nil, err
	}
	return f.roomFor(r.Context(), roomID, origin)
}

// notFound maps the roomserver's event-not-found to 404 M_NOT_FOUND.
func notFound(err error) error {
	if errors.Is(err, roomserver.ErrEventNotFound) {
		return httputil.NotFound("Event not found")
	}
	return err
}
