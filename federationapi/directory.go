package federationapi

// The room directory and space hierarchies across servers: this server's
// public room list and space summaries served to other servers
// (/publicRooms, /hierarchy), and the calls that ask other servers for
// theirs (the client API's /publicRooms?server=, /hierarchy and
// /room_summary of rooms this server is not in).

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/federationapi/fedauth"
	"matrixhs/federationapi/fedclient"
	"matrixhs/internal/httputil"
	"matrixhs/internal/ids"
	"matrixhs/internal/roomdir"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

const (
	// directoryQueryTimeout bounds one outbound /publicRooms or
	// /hierarchy request: a client waits on it.
	directoryQueryTimeout = 15 * time.Second
	// maxHierarchyServers bounds the via servers tried for one room.
	maxHierarchyServers = 5
)

// directoryRoutes registers /publicRooms and /hierarchy.
func (f *API) directoryRoutes(rt *httputil.Router) {
	const v1 = "/_matrix/federation/v1"
	rt.Exact(http.MethodGet, v1+"/publicRooms", f.Auth.Handler(f.getPublicRooms))
	rt.Exact(http.MethodPost, v1+"/publicRooms", f.Auth.Handler(f.postPublicRooms))
	rt.Exact(http.MethodGet, v1+"/hierarchy/{roomId}", f.Auth.Handler(f.hierarchy))
}

// getPublicRooms serves GET /_matrix/federation/v1/publicRooms.
func (f *API) getPublicRooms(r *http.Request, _ spec.ServerName) (any, error) {
	q, err := roomdir.ParseGet(r.URL.Query())
	if err != nil {
		return nil, err
	}
	return roomdir.PublicRooms(r.Context(), f.db, q)
}

// postPublicRooms serves POST /_matrix/federation/v1/publicRooms (with a
// filter: generic_search_term and room_types).
func (f *API) postPublicRooms(r *http.Request, _ spec.ServerName) (any, error) {
	var body roomdir.Body
	if err := httputil.DecodeJSONWithNUL(r, &body); err != nil {
		return nil, err
	}
	q, err := body.Query()
	if err != nil {
		return nil, err
	}
	return roomdir.PublicRooms(r.Context(), f.db, q)
}

// hierarchy serves GET /_matrix/federation/v1/hierarchy/{roomId}: the room
// and, when it is a space, the children this server is in that origin may
// see (the others' IDs in inaccessible_children; rooms this server is not
// in are left out). The room must be accessible to origin (see
// serverMayPreview), else 404 as an unknown room.
func (f *API) hierarchy(r *http.Request, origin spec.ServerName) (any, error) {
	ctx := r.Context()
	roomID, err := pathID(r, "roomId", '!')
	if err != nil {
		return nil, err
	}
	suggestedOnly := false
	switch r.URL.Query().Get("suggested_only") {
	case "", "false":
	case "true":
		suggestedOnly = true
	default:
		return nil, httputil.InvalidParam("suggested_only must be true or false")
	}
	root, ok, err := f.serverMayPreview(ctx, roomID, origin, false)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, httputil.NotFound("Unknown room: %s", roomID)
	}
	var children []roomdir.Child
	if root.RoomType == roomdir.SpaceRoomType {
		if children, err = roomdir.Children(ctx, f.db, root.NID, suggestedOnly); err != nil {
			return nil, err
		}
	}
	resp := roomdir.FederationHierarchy{
		Room: roomdir.NewHierarchyRoom(roomdir.NewPreview(root), children), Children: []roomdir.Preview{}, InaccessibleChildren: []string{},
	}
	for _, c := range children {
		p, ok, err := f.serverMayPreview(ctx, c.RoomID, origin, true)
		switch {
		case err != nil:
			return nil, err
		case ok:
			resp.Children = append(resp.Children, roomdir.NewPreview(p))
		case p != nil:
			resp.InaccessibleChildren = append(resp.InaccessibleChildren, c.RoomID)
		}
	}
	return resp, nil
}

// serverMayPreview decides whether another server may learn about a room
// (Synapse's rule): anyone may of rooms they could join, knock on or read
// without joining; a server may of rooms it has a joined or invited member
// in, and of
// restricted rooms it is in an allowed room of. The room's server ACL must
// let origin in. The preview is nil when this server does not hold the
// room's state (or, with joined, has no member in it): it knows nothing
// to tell.
func (f *API) serverMayPreview(ctx context.Context, roomID string, origin spec.ServerName, joined bool) (*storage.RoomPreview, bool, error) {
	fr, err := f.rooms.rs.FederationRoom(ctx, roomID)
	if errors.Is(err, roomserver.ErrRoomNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if joined && !fr.LocalJoined {
		return nil, false, nil
	}
	p, err := f.db.RoomPreview(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if fr.ACL != nil && !fedauth.ParseACL(fr.ACL).Allows(origin) {
		return p, false, nil
	}
	preview := roomdir.NewPreview(p)
	if preview.OpenToAll() || fr.ServerJoinedOrInvited(origin) {
		return p, true, nil
	}
	if preview.JoinRule == spec.Restricted {
		for _, allowed := range preview.AllowedRoomIDs {
			ar, err := f.rooms.rs.FederationRoom(ctx, allowed)
			if errors.Is(err, roomserver.ErrRoomNotFound) {
				continue
			}
			if err != nil {
				return nil, false, err
			}
			if ar.ServerJoined(origin) {
				return p, true, nil
			}
		}
	}
	return p, false, nil
}

// PublicRooms asks another server for a page of its public room list:
// with a filter by POST (MSC2197), falling back to filtering the first
// page of its unfiltered list here when it does not support that (as
// Synapse does); without one by GET. The server's refusals (4xx with an
// errcode) come back as its error; a server that cannot be reached, or
// answers anything else, is 502.
func (f *API) PublicRooms(ctx context.Context, server spec.ServerName, body roomdir.Body) (*roomdir.RemotePublicRooms, error) {
	if f.opts.Disabled {
		return nil, httputil.NotFound("This server does not federate")
	}
	ctx, cancel := context.WithTimeout(ctx, directoryQueryTimeout)
	defer cancel()
	const path = "/_matrix/federation/v1/publicRooms"
	var resp roomdir.RemotePublicRooms
	filtered := body.Filter != nil && (body.Filter.GenericSearchTerm != "" || len(body.Filter.RoomTypes) > 0)
	if filtered {
		err := f.Client.Do(ctx, http.MethodPost, server, path, body, &resp)
		if err == nil {
			return validPublicRooms(&resp), nil
		}
		var re *fedclient.RemoteError
		if !errors.As(err, &re) || !(re.Status == http.StatusNotFound || re.Status == http.StatusMethodNotAllowed ||
			re.Errcode == "M_UNRECOGNIZED" || re.Errcode == "M_NOT_FOUND") {
			f.opts.Log.WithError(err).WithField("server", server).Info("remote public room list failed")
			return nil, &httputil.Error{Status: http.StatusBadGateway, Code: "M_UNKNOWN", Msg: "Failed to fetch room list"}
		}
		// No filtering there: one unfiltered page, filtered here, no tokens.
		body.Limit, body.Since = nil, ""
	}
	q := url.Values{}
	if body.Limit != nil {
		q.Set("limit", strconv.Itoa(*body.Limit))
	}
	if body.Since != "" {
		q.Set("since", body.Since)
	}
	if body.IncludeAllNetworks {
		q.Set("include_all_networks", "true")
	}
	if body.ThirdPartyInstanceID != "" {
		q.Set("third_party_instance_id", body.ThirdPartyInstanceID)
	}
	p := path
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	if err := f.Client.Do(ctx, http.MethodGet, server, p, nil, &resp); err != nil {
		f.opts.Log.WithError(err).WithField("server", server).Info("remote public room list failed")
		var re *fedclient.RemoteError
		if !filtered && errors.As(err, &re) && re.Status >= 400 && re.Status < 500 && re.Errcode != "" {
			return nil, &httputil.Error{Status: re.Status, Code: re.Errcode, Msg: re.Message}
		}
		return nil, &httputil.Error{Status: http.StatusBadGateway, Code: "M_UNKNOWN", Msg: "Failed to fetch room list"}
	}
	validPublicRooms(&resp)
	if filtered {
		resp = filterPublicRooms(resp, body.Filter)
	}
	return &resp, nil
}

// validPublicRooms drops the rooms of another server's list that are not
// objects with a room ID, and makes the chunk a list.
func validPublicRooms(resp *roomdir.RemotePublicRooms) *roomdir.RemotePublicRooms {
	kept := make([]json.RawMessage, 0, len(resp.Chunk))
	for _, raw := range resp.Chunk {
		var c struct {
			RoomID string `json:"room_id"`
		}
		if json.Unmarshal(raw, &c) == nil && ids.RoomID(c.RoomID) == nil {
			kept = append(kept, raw)
		}
	}
	resp.Chunk = kept
	return resp
}

// filterPublicRooms applies a filter to a list another server did not
// filter: the search term in the name, topic or canonical alias, and the
// room types.
func filterPublicRooms(resp roomdir.RemotePublicRooms, filter *roomdir.Filter) roomdir.RemotePublicRooms {
	out := roomdir.RemotePublicRooms{Chunk: []json.RawMessage{}}
	for _, raw := range resp.Chunk {
		var c roomdir.Chunk
		if json.Unmarshal(raw, &c) != nil {
			continue
		}
		if filter.GenericSearchTerm != "" && !roomdir.MatchesSearch(filter.GenericSearchTerm, c.Name, c.Topic, c.CanonicalAlias) {
			continue
		}
		if len(filter.RoomTypes) > 0 && !roomTypeIn(c.RoomType, filter.RoomTypes) {
			continue
		}
		out.Chunk = append(out.Chunk, raw)
	}
	return out
}

func roomTypeIn(t string, types []*string) bool {
	for _, want := range types {
		if (want == nil && t == "") || (want != nil && *want == t) {
			return true
		}
	}
	return false
}

// Hierarchy asks the servers (in order, this one skipped, at most
// maxHierarchyServers) for a room's hierarchy: the first valid answer.
// roomserver.ErrRoomNotFound when none gives one (unknown or inaccessible
// room, or the servers cannot be reached).
func (f *API) Hierarchy(ctx context.Context, roomID string, servers []string, suggestedOnly bool) (*roomdir.FederationHierarchy, error) {
	if f.opts.Disabled {
		return nil, roomserver.ErrRoomNotFound
	}
	path := "/_matrix/federation/v1/hierarchy/" + url.PathEscape(roomID) + "?suggested_only=" + strconv.FormatBool(suggestedOnly)
	tried := map[string]bool{string(f.serverName): true}
	for _, server := range servers {
		if tried[server] || len(tried) > maxHierarchyServers {
			continue
		}
		tried[server] = true
		var resp roomdir.FederationHierarchy
		qctx, cancel := context.WithTimeout(ctx, directoryQueryTimeout)
		err := f.Client.Do(qctx, http.MethodGet, spec.ServerName(server), path, nil, &resp)
		cancel()
		if err != nil {
			f.opts.Log.WithError(err).WithField("server", server).WithField("room_id", roomID).Debug("remote hierarchy failed")
			continue
		}
		if resp.Room.RoomID != roomID {
			f.opts.Log.WithField("server", server).WithField("room_id", roomID).Info("remote hierarchy answered another room")
			continue
		}
		return &resp, nil
	}
	return nil, roomserver.ErrRoomNotFound
}
