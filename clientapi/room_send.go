package clientapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/internal/ids"
	"matrixhs/internal/matrixerr"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

// readContent reads an event content body: a JSON object.
func readContent(r *http.Request) (json.RawMessage, error) {
	body, err := httputil.ReadBody(r)
	if err != nil {
		return nil, err
	}
	var obj map[string]json.RawMessage
	if err := httputil.Unmarshal(body, &obj); err != nil {
		return nil, err
	}
	if len(body) > 65536 {
		return nil, httputil.TooLarge("event content is larger than 65536 bytes")
	}
	if len(obj) == 0 {
		return json.RawMessage("{}"), nil
	}
	return body, nil
}

// sendMessage serves PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}.
func (a *API) sendMessage(r *http.Request, s *accounts.Session) (any, error) {
	content, err := readContent(r)
	if err != nil {
		return nil, err
	}
	roomID, err := roomIDVar(r)
	if err != nil {
		return nil, err
	}
	typ := pathVar(r, "eventType")
	if delay, ok, err := delayFrom(r); err != nil {
		return nil, err
	} else if ok {
		return a.scheduleDelayed(r.Context(), s, roomID, typ, nil, content, delay)
	}
	ts, err := massagedTS(r, s)
	if err != nil {
		return nil, err
	}
	sent, err := a.rooms.Send(r.Context(), roomserver.LocalEvent{
		RoomID: roomID, Sender: s.UserID, DeviceID: s.DeviceID, Type: typ, Content: content,
		TxnID: pathVar(r, "txnId"), TxnScope: "send|" + roomID + "|" + typ, OriginTS: ts,
	})
	if err != nil {
		return nil, matrixerr.From(err)
	}
	return map[string]string{"event_id": sent.EventID}, nil
}

// putState serves PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}.
func (a *API) putState(r *http.Request, s *accounts.Session) (any, error) {
	content, err := readContent(r)
	if err != nil {
		return nil, err
	}
	roomID, err := roomIDVar(r)
	if err != nil {
		return nil, err
	}
	typ, key := pathVar(r, "eventType"), pathVar(r, "stateKey")
	if typ == spec.MRoomMember {
		if content, err = withoutAuthorisingUser(content); err != nil {
			return nil, err
		}
	}
	if typ == "m.room.canonical_alias" {
		if err := a.checkCanonicalAlias(r, roomID, content); err != nil {
			return nil, err
		}
	}
	if delay, ok, err := delayFrom(r); err != nil {
		return nil, err
	} else if ok {
		return a.scheduleDelayed(r.Context(), s, roomID, typ, &key, content, delay)
	}
	ts, err := massagedTS(r, s)
	if err != nil {
		return nil, err
	}
	sent, err := a.rooms.Send(r.Context(), roomserver.LocalEvent{
		RoomID: roomID, Sender: s.UserID, DeviceID: s.DeviceID, Type: typ, StateKey: &key, Content: content, OriginTS: ts,
	})
	if err != nil {
		return nil, matrixerr.From(err)
	}
	return map[string]string{"event_id": sent.EventID}, nil
}

// massagedTS is the origin_server_ts an appservice asked for with the ts
// query parameter (timestamp massaging, for bridges importing history);
// zero (now) for everyone else, whose ts is ignored as Synapse does.
func massagedTS(r *http.Request, s *accounts.Session) (time.Time, error) {
	raw := r.URL.Query().Get("ts")
	if raw == "" || s.AppServiceID == "" {
		return time.Time{}, nil
	}
	ms, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || ms < 0 {
		return time.Time{}, httputil.InvalidParam("ts must be a non-negative integer (ms since the epoch)")
	}
	return time.UnixMilli(ms), nil
}

// withoutAuthorisingUser drops join_authorised_via_users_server from member
// content a client sends (a display name change copies it from the current
// event): only the server sets it, for restricted joins, and the event
// would need the named user's server's signature, so every other server
// would refuse it (as Synapse, which strips it unconditionally).
func withoutAuthorisingUser(content json.RawMessage) (json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(content, &obj); err != nil {
		return nil, httputil.BadJSON("content must be an object")
	}
	if _, ok := obj["join_authorised_via_users_server"]; !ok {
		return content, nil
	}
	delete(obj, "join_authorised_via_users_server")
	return json.Marshal(obj)
}

// checkCanonicalAlias requires local aliases in m.room.canonical_alias to
// exist and point at the room (spec: 400 M_BAD_ALIAS otherwise).
func (a *API) checkCanonicalAlias(r *http.Request, roomID string, content json.RawMessage) error {
	var c struct {
		Alias      *string  `json:"alias"`
		AltAliases []string `json:"alt_aliases"`
	}
	if err := json.Unmarshal(content, &c); err != nil {
		return httputil.BadJSON("alias must be a string and alt_aliases a list of strings")
	}
	aliases := c.AltAliases
	if c.Alias != nil && *c.Alias != "" {
		aliases = append(aliases, *c.Alias)
	}
	for _, alias := range aliases {
		if !validAlias(alias) {
			return httputil.InvalidParam("%q is not a room alias", alias)
		}
		id, err := a.db.AliasRoom(r.Context(), alias)
		if errors.Is(err, storage.ErrNotFound) || (err == nil && id != roomID) {
			return &httputil.Error{Status: http.StatusBadRequest, Code: "M_BAD_ALIAS", Msg: "alias " + alias + " does not point to this room"}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// redactEvent serves PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}.
func (a *API) redactEvent(r *http.Request, s *accounts.Session) (any, error) {
	var body map[string]json.RawMessage
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	roomID, err := roomIDVar(r)
	if err != nil {
		return nil, err
	}
	target := pathVar(r, "eventId")
	if err := ids.EventID(target); err != nil {
		return nil, httputil.InvalidParam("%v", err)
	}
	info, err := a.db.Room(r.Context(), roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("Unknown room")
	}
	if err != nil {
		return nil, err
	}
	content := map[string]json.RawMessage{}
	if reason, ok := body["reason"]; ok {
		content["reason"] = reason
	}
	// From room version 11 the target is named in the content; the top-level
	// key stays for older clients and servers.
	if v, err := strconv.Atoi(info.Version); err == nil && v >= 11 {
		content["redacts"], _ = json.Marshal(target)
	}
	raw, _ := json.Marshal(content)
	sent, err := a.rooms.Send(r.Context(), roomserver.LocalEvent{
		RoomID: roomID, Sender: s.UserID, DeviceID: s.DeviceID, Type: spec.MRoomRedaction, Content: raw,
		Redacts: target, TxnID: pathVar(r, "txnId"), TxnScope: "redact|" + roomID,
	})
	if err != nil {
		return nil, matrixerr.From(err)
	}
	return map[string]string{"event_id": sent.EventID}, nil
}
