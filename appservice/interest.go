package appservice

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"time"

	"matrixhs/storage"
)

// interested reports whether an event goes to the appservice (Synapse's
// rules): its sender or, for a membership, its target is in the user
// namespaces (so invites reach the bridge); the room's ID or one of its
// local aliases is in the namespaces; or a local user of the namespaces is
// joined to the room before the event.
func (s *Service) interested(ctx context.Context, sd *sender, ev storage.StreamEventMeta) (bool, error) {
	r := sd.reg
	if r.IsUserInNamespace(ev.Sender) {
		return true, nil
	}
	if ev.Type == "m.room.member" && ev.StateKey != nil && r.IsUserInNamespace(*ev.StateKey) {
		return true, nil
	}
	ri, err := s.room(ctx, sd, ev.RoomNID)
	if err != nil || ri.interested {
		return ri.interested, err
	}
	return s.memberJoined(ctx, sd, ev.StateBefore)
}

// room reads what makes a room interesting by itself: its ID and aliases.
// Aliases change: the cache lasts one build.
func (s *Service) room(ctx context.Context, sd *sender, roomNID int64) (roomInfo, error) {
	if ri, ok := sd.rooms[roomNID]; ok {
		return ri, nil
	}
	id, err := s.db.RoomIDOfNID(ctx, roomNID)
	if err != nil {
		return roomInfo{}, err
	}
	ri := roomInfo{id: id, interested: sd.reg.IsRoomInNamespace(id)}
	if !ri.interested && len(sd.reg.Namespaces.Aliases) > 0 {
		aliases, err := s.db.RoomAliases(ctx, roomNID)
		if err != nil {
			return roomInfo{}, err
		}
		ri.interested = slices.ContainsFunc(aliases, sd.reg.IsAliasInNamespace)
	}
	sd.rooms[roomNID] = ri
	return ri, nil
}

// memberJoined reports whether a local user of the namespaces is joined in
// a state snapshot (snapshots never change: cached).
func (s *Service) memberJoined(ctx context.Context, sd *sender, snapshot int64) (bool, error) {
	if ok, cached := sd.members[snapshot]; cached {
		return ok, nil
	}
	view, err := s.db.SnapshotServerMembers(ctx, snapshot, s.opts.ServerName)
	if err != nil {
		return false, err
	}
	ok := false
	for user, m := range view.Members {
		if m == "join" && sd.reg.IsUserInNamespace(user) {
			ok = true
			break
		}
	}
	if len(sd.members) >= interestCacheSize {
		clear(sd.members)
	}
	sd.members[snapshot] = ok
	return ok, nil
}

// federationOnly are the PDU keys clients (and appservices) never see.
var federationOnly = []string{"auth_events", "prev_events", "depth", "hashes", "signatures", "origin", "prev_state", "membership"}

// clientEvent renders a stored event in the client format of transactions:
// the PDU minus federation fields, with room_id, event_id and unsigned
// (stored, computed at storing, and age).
func clientEvent(e *storage.Event) json.RawMessage {
	var fields map[string]json.RawMessage
	if json.Unmarshal(e.JSON, &fields) != nil {
		return e.JSON
	}
	for _, k := range federationOnly {
		delete(fields, k)
	}
	unsigned := map[string]json.RawMessage{}
	if raw, ok := fields["unsigned"]; ok {
		_ = json.Unmarshal(raw, &unsigned)
	}
	if len(e.UnsignedExtra) > 0 {
		var extra map[string]json.RawMessage
		if json.Unmarshal(e.UnsignedExtra, &extra) == nil {
			maps.Copy(unsigned, extra)
		}
	}
	unsigned["age"] = json.RawMessage(strconv.FormatInt(max(0, time.Now().UnixMilli()-e.OriginTS), 10))
	fields["unsigned"], _ = json.Marshal(unsigned)
	fields["room_id"], _ = json.Marshal(e.RoomID)
	fields["event_id"], _ = json.Marshal(e.EventID)
	out, err := json.Marshal(fields)
	if err != nil {
		return e.JSON
	}
	return out
}
