package federationapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/httputil"
	"matrixhs/roomserver"
)

// Room history for other servers. Every endpoint first checks that the
// asking server may ask about the room (roomFor); the roomserver then
// serves each event redacted where the server may not see it.

// Bounds, as Synapse's.
const (
	maxBackfillLimit      = roomserver.MaxBackfillLimit
	defaultMissingLimit   = 10
	maxMissingEventsLimit = 20
	// maxEventIDsInRequest bounds the event IDs a request may name.
	maxEventIDsInRequest = 1000
)

// transaction is the {origin, origin_server_ts, pdus} shape of /backfill
// and /event answers.
func (f *API) transaction(pdus []json.RawMessage) map[string]any {
	if pdus == nil {
		pdus = []json.RawMessage{}
	}
	return map[string]any{"origin": f.serverName, "origin_server_ts": f.now().UnixMilli(), "pdus": pdus}
}

// backfill serves GET /_matrix/federation/v1/backfill/{roomId}?v=…&limit=….
func (f *API) backfill(r *http.Request, origin spec.ServerName) (any, error) {
	fr, err := f.pathRoom(r, origin)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	from := q["v"]
	if len(from) == 0 {
		return nil, httputil.MissingParam("v is required")
	}
	if len(from) > maxEventIDsInRequest {
		return nil, httputil.InvalidParam("at most %d event IDs", maxEventIDsInRequest)
	}
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit < 1 {
		return nil, httputil.InvalidParam("limit must be a positive integer")
	}
	pdus, err := f.rooms.rs.BackfillFor(r.Context(), fr, origin, from, min(limit, maxBackfillLimit))
	if err != nil {
		return nil, err
	}
	return f.transaction(pdus), nil
}

// getMissingEvents serves POST /_matrix/federation/v1/get_missing_events/{roomId}.
func (f *API) getMissingEvents(r *http.Request, origin spec.ServerName) (any, error) {
	fr, err := f.pathRoom(r, origin)
	if err != nil {
		return nil, err
	}
	var body struct {
		Earliest *[]string `json:"earliest_events"`
		Latest   *[]string `json:"latest_events"`
		Limit    *int      `json:"limit"`
		MinDepth *int64    `json:"min_depth"`
	}
	if err := httputil.DecodeJSONWithNUL(r, &body); err != nil {
		return nil, err
	}
	if body.Earliest == nil || body.Latest == nil {
		return nil, httputil.BadJSON("earliest_events and latest_events are required")
	}
	if len(*body.Earliest)+len(*body.Latest) > maxEventIDsInRequest {
		return nil, httputil.BadJSON("at most %d event IDs", maxEventIDsInRequest)
	}
	limit := defaultMissingLimit
	if body.Limit != nil {
		limit = *body.Limit
	}
	limit = min(max(limit, 0), maxMissingEventsLimit)
	var minDepth int64
	if body.MinDepth != nil {
		minDepth = *body.MinDepth
	}
	events, err := f.rooms.rs.MissingEventsFor(r.Context(), fr, origin, *body.Earliest, *body.Latest, limit, minDepth)
	if err != nil {
		return nil, err
	}
	if events == nil {
		events = []json.RawMessage{}
	}
	return map[string]any{"events": events}, nil
}

// stateQuery reads the room and the required event_id of /state and
// /state_ids, and the state before that event.
func (f *API) stateQuery(r *http.Request, origin spec.ServerName) (fr *roomserver.FederationRoom, state, chain []string, err error) {
	if fr, err = f.pathRoom(r, origin); err != nil {
		return nil, nil, nil, err
	}
	eventID := r.URL.Query().Get("event_id")
	if eventID == "" {
		return nil, nil, nil, httputil.MissingParam("event_id is required")
	}
	state, chain, err = f.rooms.rs.StateBeforeEvent(r.Context(), fr, eventID)
	return fr, state, chain, notFound(err)
}

// roomStateIDs serves GET /_matrix/federation/v1/state_ids/{roomId}?event_id=…:
// the state before the event and its auth chain, as event IDs.
func (f *API) roomStateIDs(r *http.Request, origin spec.ServerName) (any, error) {
	_, state, chain, err := f.stateQuery(r, origin)
	if err != nil {
		return nil, err
	}
	return map[string]any{"pdu_ids": state, "auth_chain_ids": chain}, nil
}

// roomState serves GET /_matrix/federation/v1/state/{roomId}?event_id=…:
// the state before the event and its auth chain, as events.
func (f *API) roomState(r *http.Request, origin spec.ServerName) (any, error) {
	fr, state, chain, err := f.stateQuery(r, origin)
	if err != nil {
		return nil, err
	}
	pdus, err := f.rooms.rs.EventJSONs(r.Context(), fr, state)
	if err != nil {
		return nil, err
	}
	auth, err := f.rooms.rs.EventJSONs(r.Context(), fr, chain)
	if err != nil {
		return nil, err
	}
	return map[string]any{"pdus": pdus, "auth_chain": auth}, nil
}

// event serves GET /_matrix/federation/v1/event/{eventId}.
func (f *API) event(r *http.Request, origin spec.ServerName) (any, error) {
	eventID, err := pathID(r, "eventId", '$')
	if err != nil {
		return nil, err
	}
	roomID, err := f.rooms.rs.EventRoomID(r.Context(), eventID)
	if err != nil {
		return nil, notFound(err)
	}
	fr, err := f.roomFor(r.Context(), roomID, origin)
	if err != nil {
		return nil, err
	}
	pdu, err := f.rooms.rs.EventFor(r.Context(), fr, origin, eventID)
	if err != nil {
		return nil, notFound(err)
	}
	return f.transaction([]json.RawMessage{pdu}), nil
}

// eventAuth serves GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}.
func (f *API) eventAuth(r *http.Request, origin spec.ServerName) (any, error) {
	fr, err := f.pathRoom(r, origin)
	if err != nil {
		return nil, err
	}
	eventID, err := pathID(r, "eventId", '$')
	if err != nil {
		return nil, err
	}
	chain, err := f.rooms.rs.EventAuthChain(r.Context(), fr, eventID)
	if err != nil {
		return nil, notFound(err)
	}
	events, err := f.rooms.rs.EventJSONs(r.Context(), fr, chain)
	if err != nil {
		return nil, err
	}
	return map[string]any{"auth_chain": events}, nil
}

// timestampToEvent serves GET /_matrix/federation/v1/timestamp_to_event/{roomId}?ts=…&dir=f|b.
func (f *API) timestampToEvent(r *http.Request, origin spec.ServerName) (any, error) {
	fr, err := f.pathRoom(r, origin)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	ts, err := strconv.ParseInt(q.Get("ts"), 10, 64)
	if err != nil || ts < 0 {
		return nil, httputil.InvalidParam("ts must be a timestamp in milliseconds")
	}
	dir := q.Get("dir")
	if dir != "f" && dir != "b" {
		return nil, httputil.InvalidParam("dir must be f or b")
	}
	e, err := f.rooms.rs.TimestampEventFor(r.Context(), fr, origin, ts, dir == "f")
	if err != nil {
		if errors.Is(err, roomserver.ErrEventNotFound) {
			return nil, httputil.NotFound("No event found from %d in direction %s", ts, dir)
		}
		return nil, err
	}
	return map[string]any{"event_id": e.EventID, "origin_server_ts": e.OriginTS}, nil
}
