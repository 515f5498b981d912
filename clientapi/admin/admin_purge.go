package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/clientapi/internal/roomview"
	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

// Room deletion (shut down, then purge) and history purges: Synapse's
// Delete Room API (v1 synchronous, v2 in the background with a status) and
// Purge History API.

// reclaimChunk is how many free pages one write gives back to the file
// system after a purge (a few MB), so the vacuum never holds the writer.
const reclaimChunk = 1000

// federationFlushWait bounds how long a purge waits for the federation
// sender to pass the room's last events (the leaves of the shutdown) on.
const federationFlushWait = 10 * time.Second

// deleteRoomRequest is the body of DELETE /rooms/{roomId}.
type deleteRoomRequest struct {
	Block         bool    `json:"block"`
	Purge         *bool   `json:"purge"`
	ForcePurge    bool    `json:"force_purge"`
	NewRoomUserID *string `json:"new_room_user_id"`
	RoomName      *string `json:"room_name"`
	Message       *string `json:"message"`
}

func (req *deleteRoomRequest) purge() bool { return req.Purge == nil || *req.Purge }

// shutdownResult is what a shutdown did, as Synapse reports it.
type shutdownResult struct {
	Kicked    []string `json:"kicked_users"`
	Failed    []string `json:"failed_to_kick_users"`
	Aliases   []string `json:"local_aliases"`
	NewRoomID *string  `json:"new_room_id"`
}

func emptyShutdown() *shutdownResult {
	return &shutdownResult{Kicked: []string{}, Failed: []string{}, Aliases: []string{}}
}

// parseDeleteRoom reads and checks a room deletion request.
func (a *API) parseDeleteRoom(r *http.Request) (string, *deleteRoomRequest, error) {
	roomID := httputil.PathVar(r, "roomId")
	if !strings.HasPrefix(roomID, "!") || len(roomID) > 255 {
		return "", nil, httputil.InvalidParam("%q is not a room ID", roomID)
	}
	var req deleteRoomRequest
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return "", nil, err
	}
	if req.NewRoomUserID != nil {
		if _, err := a.accounts.ParseLocalUser(*req.NewRoomUserID); err != nil || !strings.HasPrefix(*req.NewRoomUserID, "@") {
			return "", nil, httputil.InvalidParam("new_room_user_id must be a local user ID")
		}
	}
	return roomID, &req, nil
}

// adminDeleteRoom serves DELETE /_synapse/admin/v1/rooms/{roomId} (and the
// older POST .../rooms/{roomId}/delete): shut down, and unless "purge":
// false, purge, answering when done.
func (a *API) adminDeleteRoom(r *http.Request, s *accounts.Session) (any, error) {
	roomID, req, err := a.parseDeleteRoom(r)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	if _, err := a.db.Room(ctx, roomID); errors.Is(err, storage.ErrNotFound) {
		if !req.Block {
			return nil, httputil.NotFound("Room not found")
		}
		// Synapse's v1 blocks a room it does not know, pre-emptively.
		if err := a.blockRoom(ctx, roomID, s.UserID); err != nil {
			return nil, err
		}
		return emptyShutdown(), nil
	} else if err != nil {
		return nil, err
	}
	t, ok := a.tasks.start(roomID, taskDeleteRoom)
	if !ok {
		return nil, httputil.InvalidParam("A deletion of room %s is already in progress", roomID)
	}
	// The deletion goes on if the client leaves: a purge cut short leaves
	// the room half deleted.
	a.runDeletion(context.WithoutCancel(ctx), t, s.UserID, req)
	done, _ := a.tasks.get(t.id)
	if done.status == taskFailed {
		return nil, done.cause
	}
	return done.shutdown, nil
}

// adminDeleteRoomV2 serves DELETE /_synapse/admin/v2/rooms/{roomId}: the
// deletion runs in the background; its status is at delete_status.
func (a *API) adminDeleteRoomV2(r *http.Request, s *accounts.Session) (any, error) {
	roomID, req, err := a.parseDeleteRoom(r)
	if err != nil {
		return nil, err
	}
	if _, err := a.db.Room(r.Context(), roomID); errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("Room not found")
	} else if err != nil {
		return nil, err
	}
	t, ok := a.tasks.start(roomID, taskDeleteRoom)
	if !ok {
		return nil, httputil.InvalidParam("A deletion of room %s is already in progress", roomID)
	}
	ctx := context.WithoutCancel(r.Context())
	go a.runDeletion(ctx, t, s.UserID, req)
	return map[string]any{"delete_id": t.id}, nil
}

// runDeletion shuts a room down and purges it, recording the outcome.
func (a *API) runDeletion(ctx context.Context, t *task, adminID string, req *deleteRoomRequest) {
	log := a.log.WithField("room_id", t.roomID).WithField("delete_id", t.id).WithField("admin", adminID)
	a.tasks.update(t, func(t *task) { t.status = taskActive })
	fail := func(err error) {
		log.WithError(err).Warn("Deleting a room failed")
		a.tasks.update(t, func(t *task) { t.status, t.err, t.cause = taskFailed, err.Error(), err })
	}
	res, err := a.shutdownRoom(ctx, adminID, t.roomID, req)
	if err != nil {
		fail(err)
		return
	}
	a.tasks.update(t, func(t *task) { t.shutdown = res })
	if req.purge() {
		if len(res.Failed) > 0 && !req.ForcePurge {
			fail(errors.New("local users are still in the room; retry with force_purge"))
			return
		}
		if err := a.purgeRoom(ctx, t, req.Block); err != nil {
			fail(err)
			return
		}
	}
	log.WithField("purged", req.purge()).Info("Room deleted")
	a.tasks.update(t, func(t *task) { t.status = taskComplete })
}

// purgeRoom deletes every row of a room once its leaves went out over
// federation, then gives the freed space back to the file system.
func (a *API) purgeRoom(ctx context.Context, t *task, keepBlock bool) error {
	if info, err := a.db.Room(ctx, t.roomID); err == nil {
		a.waitFederationFlushed(ctx, info.NID)
	}
	end := a.rooms.BeginPurge(t.roomID)
	defer end()
	var keep []string
	if keepBlock {
		keep = []string{"blocked_rooms"}
	}
	err := a.db.PurgeRoom(ctx, t.roomID, keep, func(p storage.PurgeProgress) {
		a.tasks.update(t, func(t *task) { t.progress = p })
	})
	if err != nil {
		return err
	}
	return a.reclaimSpace(ctx)
}

// waitFederationFlushed waits (a bounded time) until the federation sender
// has queued and sent the room's events, so a purge does not delete the
// leaves of the shutdown before other servers heard of them.
func (a *API) waitFederationFlushed(ctx context.Context, roomNID int64) {
	if a.fedSender == nil {
		return
	}
	deadline := time.Now().Add(federationFlushWait)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		pending, err := a.db.RoomFederationPending(ctx, roomNID)
		if err != nil || !pending {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// reclaimSpace returns the database's free pages to the file system, a
// chunk per write.
func (a *API) reclaimSpace(ctx context.Context) error {
	for range 10_000 {
		free, err := a.db.FreePages(ctx)
		if err != nil || free == 0 {
			return err
		}
		if err := a.db.ReclaimSpace(ctx, reclaimChunk); err != nil {
			return err
		}
		if after, err := a.db.FreePages(ctx); err != nil || after >= free {
			return err // not in incremental mode (an older database): nothing to give back
		}
	}
	return nil
}

// blockRoom records that a room may not be joined.
func (a *API) blockRoom(ctx context.Context, roomID, adminID string) error {
	return a.db.Write(ctx, func(tx *storage.Tx) error {
		return tx.SetRoomBlocked(ctx, roomID, true, adminID, a.accounts.Now().UnixMilli())
	})
}

// shutdownRoom makes every local member leave (invites and knocks
// withdrawn), removes the local aliases, takes the room out of the
// directory and, with block, keeps it from being joined again. With
// new_room_user_id, that user makes a new room with the message and
// invites the members there, and the aliases move to it.
func (a *API) shutdownRoom(ctx context.Context, adminID, roomID string, req *deleteRoomRequest) (*shutdownResult, error) {
	info, err := a.db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("Room not found")
	}
	if err != nil {
		return nil, err
	}
	aliases, err := a.db.RoomAliases(ctx, info.NID)
	if err != nil {
		return nil, err
	}
	err = a.db.Write(ctx, func(tx *storage.Tx) error {
		if req.Block {
			if err := tx.SetRoomBlocked(ctx, info.ID, true, adminID, a.accounts.Now().UnixMilli()); err != nil {
				return err
			}
		}
		for _, alias := range aliases {
			if err := tx.DeleteAlias(ctx, alias); err != nil && !errors.Is(err, storage.ErrNotFound) {
				return err
			}
		}
		return tx.SetRoomPublished(ctx, info.NID, false)
	})
	if err != nil {
		return nil, err
	}
	res := emptyShutdown()
	if aliases != nil {
		res.Aliases = aliases
	}
	members, err := a.db.CurrentStateEvents(ctx, info.NID, spec.MRoomMember)
	if err != nil {
		return nil, err
	}
	for _, m := range members {
		switch roomview.ContentString(m.JSON, "membership") {
		case spec.Join, spec.Invite, spec.Knock:
		default:
			continue
		}
		user := *m.StateKey
		if _, err := a.accounts.ParseLocalUser(user); err != nil {
			continue // other servers' users are theirs to remove
		}
		_, err := a.rooms.SetMembership(ctx, roomserver.MembershipRequest{RoomID: info.ID, Sender: user, Target: user, Membership: spec.Leave})
		if err != nil {
			a.log.WithError(err).WithField("user_id", user).Warn("Removing a member from a room being shut down")
			res.Failed = append(res.Failed, user)
			continue
		}
		res.Kicked = append(res.Kicked, user)
	}
	if req.NewRoomUserID != nil {
		newRoom, err := a.violationRoom(ctx, *req, res.Kicked, res.Aliases)
		if err != nil {
			return nil, err
		}
		res.NewRoomID = &newRoom
	}
	return res, nil
}

// adminDeleteStatusByRoom serves GET /_synapse/admin/v2/rooms/{roomId}/delete_status.
func (a *API) adminDeleteStatusByRoom(r *http.Request, _ *accounts.Session) (any, error) {
	roomID := httputil.PathVar(r, "roomId")
	list := a.tasks.ofRoom(roomID, taskDeleteRoom)
	if len(list) == 0 {
		return nil, httputil.NotFound("No delete task for room")
	}
	results := []map[string]any{}
	for _, t := range list {
		results = append(results, deleteStatusJSON(t))
	}
	return map[string]any{"results": results}, nil
}

// adminDeleteStatusByID serves GET /_synapse/admin/v2/rooms/delete_status/{deleteId}.
func (a *API) adminDeleteStatusByID(r *http.Request, _ *accounts.Session) (any, error) {
	t, ok := a.tasks.get(httputil.PathVar(r, "deleteId"))
	if !ok || t.kind != taskDeleteRoom {
		return nil, httputil.NotFound("delete id '%s' not found", httputil.PathVar(r, "deleteId"))
	}
	return deleteStatusJSON(t), nil
}

func deleteStatusJSON(t task) map[string]any {
	out := map[string]any{"delete_id": t.id, "room_id": t.roomID, "status": t.status, "progress": progressJSON(t.progress)}
	shutdown := t.shutdown
	if shutdown == nil {
		shutdown = emptyShutdown()
	}
	out["shutdown_room"] = shutdown
	if t.status == taskFailed {
		out["error"] = t.err
	}
	return out
}

// progressJSON is how far a purge got (beyond Synapse's fields: what a UI
// can show while it runs).
func progressJSON(p storage.PurgeProgress) map[string]any {
	return map[string]any{"events_deleted": p.Events, "state_snapshots_deleted": p.Snapshots}
}

// adminPurgeHistory serves POST /_synapse/admin/v1/purge_history/{roomId}[/{eventId}]:
// deletes the room's events before a point (an event, or a time), keeping
// state, the newest events and, unless delete_local_events, local users'
// events. It runs in the background.
func (a *API) adminPurgeHistory(r *http.Request, s *accounts.Session) (any, error) {
	var req struct {
		DeleteLocal *bool   `json:"delete_local_events"`
		UpToEventID *string `json:"purge_up_to_event_id"`
		UpToTS      *int64  `json:"purge_up_to_ts"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	ctx := r.Context()
	info, err := a.db.Room(ctx, httputil.PathVar(r, "roomId"))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("Room not found")
	}
	if err != nil {
		return nil, err
	}
	eventID := httputil.PathVar(r, "eventId")
	if eventID == "" && req.UpToEventID != nil {
		eventID = *req.UpToEventID
	}
	var before storage.TopoPos
	switch {
	case eventID != "":
		ev, err := a.db.EventByID(ctx, eventID)
		if errors.Is(err, storage.ErrNotFound) || (err == nil && ev.RoomNID != info.NID) {
			return nil, httputil.NotFound("Event %s not found in room %s", eventID, info.ID)
		}
		if err != nil {
			return nil, err
		}
		// That event and the others at its depth stay.
		before = storage.TopoPos{Depth: ev.Depth, NID: 0}
	case req.UpToTS != nil:
		if before, err = a.db.TopoPosAtTS(ctx, info.NID, *req.UpToTS); err != nil {
			return nil, err
		}
	default:
		return nil, httputil.MissingParam("must specify purge_up_to_event_id or purge_up_to_ts")
	}
	p := storage.HistoryPurge{RoomNID: info.NID, Before: before, Keep: info.Extremities, KeepLocal: a.cfg.Server.Name}
	if req.DeleteLocal != nil && *req.DeleteLocal {
		p.KeepLocal = ""
	}
	t, ok := a.tasks.start(info.ID, taskPurgeHistory)
	if !ok {
		return nil, httputil.InvalidParam("History purge already in progress for %s", info.ID)
	}
	go a.runHistoryPurge(context.WithoutCancel(ctx), t, s.UserID, p)
	return map[string]any{"purge_id": t.id}, nil
}

func (a *API) runHistoryPurge(ctx context.Context, t *task, adminID string, p storage.HistoryPurge) {
	log := a.log.WithField("room_id", t.roomID).WithField("purge_id", t.id).WithField("admin", adminID)
	a.tasks.update(t, func(t *task) { t.status = taskActive })
	err := a.db.PurgeHistory(ctx, p, func(pr storage.PurgeProgress) {
		a.tasks.update(t, func(t *task) { t.progress = pr })
	})
	if err == nil {
		err = a.reclaimSpace(ctx)
	}
	if err != nil {
		log.WithError(err).Warn("Purging room history failed")
		a.tasks.update(t, func(t *task) { t.status, t.err = taskFailed, err.Error() })
		return
	}
	done, _ := a.tasks.get(t.id)
	log.WithField("events_deleted", done.progress.Events).Info("Room history purged")
	a.tasks.update(t, func(t *task) { t.status = taskComplete })
}

// adminPurgeHistoryStatus serves GET /_synapse/admin/v1/purge_history_status/{purgeId}.
func (a *API) adminPurgeHistoryStatus(r *http.Request, _ *accounts.Session) (any, error) {
	t, ok := a.tasks.get(httputil.PathVar(r, "purgeId"))
	if !ok || t.kind != taskPurgeHistory {
		return nil, httputil.NotFound("purge id '%s' not found", httputil.PathVar(r, "purgeId"))
	}
	out := map[string]any{"status": t.status, "progress": progressJSON(t.progress)}
	if t.status == taskFailed {
		out["error"] = t.err
	}
	return out, nil
}

// Synapse's defaults for the room users of a shut-down room move to.
const (
	defaultViolationRoomName = "Content Violation Notification"
	defaultViolationMessage  = "Sharing illegal content on this server is not permitted and rooms in violation will be blocked."
)

// violationRoom makes the room a shut-down room's users move to: created
// by new_room_user_id, where others cannot speak (users_default -10), with
// the admin's message; the users are joined to it and the old room's local
// aliases point to it.
func (a *API) violationRoom(ctx context.Context, req deleteRoomRequest, users, aliases []string) (string, error) {
	name, message := defaultViolationRoomName, defaultViolationMessage
	if req.RoomName != nil {
		name = *req.RoomName
	}
	if req.Message != nil {
		message = *req.Message
	}
	creator := *req.NewRoomUserID
	roomID, err := a.rooms.CreateRoom(ctx, roomserver.CreateRoomRequest{
		Creator: creator, Version: a.cfg.Rooms.DefaultRoomVersion, Preset: roomserver.PresetPublicChat, Name: &name,
		PowerLevelOverride: []byte(`{"users_default": -10}`),
	})
	if err != nil {
		return "", err
	}
	content, _ := json.Marshal(map[string]string{"msgtype": "m.text", "body": message})
	if _, err := a.rooms.Send(ctx, roomserver.LocalEvent{RoomID: roomID, Sender: creator, Type: "m.room.message", Content: content}); err != nil {
		return "", err
	}
	for _, user := range users {
		if user == creator {
			continue
		}
		for _, m := range []roomserver.MembershipRequest{
			{RoomID: roomID, Sender: creator, Target: user, Membership: spec.Invite},
			{RoomID: roomID, Sender: user, Target: user, Membership: spec.Join},
		} {
			if _, err := a.rooms.SetMembership(ctx, m); err != nil {
				a.log.WithError(err).WithField("user_id", user).Warn("Moving a user to the room of a shut-down room")
				break
			}
		}
	}
	info, err := a.db.Room(ctx, roomID)
	if err != nil {
		return "", err
	}
	err = a.db.Write(ctx, func(tx *storage.Tx) error {
		for _, alias := range aliases {
			if err := tx.InsertAlias(ctx, alias, info.NID, creator); err != nil && !errors.Is(err, storage.ErrExists) {
				return err
			}
		}
		return nil
	})
	return roomID, err
}
