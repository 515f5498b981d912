package roomserver

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/ids"
	"matrixhs/storage"
)

// Room creation presets.
const (
	PresetPrivateChat        = "private_chat"
	PresetTrustedPrivateChat = "trusted_private_chat"
	PresetPublicChat         = "public_chat"
)

// StateEvent is an initial state event of createRoom.
type StateEvent struct {
	Type     string          `json:"type"`
	StateKey string          `json:"state_key"`
	Content  json.RawMessage `json:"content"`
}

// CreateRoomRequest is a createRoom call, already validated for types.
type CreateRoomRequest struct {
	Creator            string
	DeviceID           string
	Version            string
	Preset             string
	Public             bool // visibility: publish in the directory
	IsDirect           bool
	Invite             []string
	Name               *string
	Topic              *string
	Alias              string // full alias for room_alias_name, "" for none
	InitialState       []StateEvent
	CreationContent    json.RawMessage
	PowerLevelOverride json.RawMessage
	// Profile of the creator, copied into their member event.
	DisplayName string
	AvatarURL   string
}

// CreateRoom creates a room with the events createRoom specifies, in the
// spec's order, and returns its ID.
func (rs *Roomserver) CreateRoom(ctx context.Context, req CreateRoomRequest) (string, error) {
	var remote []string
	for _, u := range req.Invite {
		if !rs.isLocal(u) && ids.UserID(u) == nil && rs.remote != nil {
			remote = append(remote, u)
		}
	}
	roomID, err := rs.createRoom(ctx, req, remote)
	if err != nil {
		return "", err
	}
	// Users of other servers are invited once the room stands, as Synapse
	// does: their servers sign the invites (remote.go).
	for _, u := range remote {
		_, err := rs.SetMembership(ctx, MembershipRequest{
			RoomID: roomID, Sender: req.Creator, DeviceID: req.DeviceID, Target: u, Membership: spec.Invite, IsDirect: req.IsDirect,
		})
		if err != nil {
			return roomID, fmt.Errorf("inviting %s: %w", u, err)
		}
	}
	return roomID, nil
}

// createRoom creates the room with its invitees but those of later.
func (rs *Roomserver) createRoom(ctx context.Context, req CreateRoomRequest, later []string) (string, error) {
	ver, err := gomatrixserverlib.GetRoomVersion(gomatrixserverlib.RoomVersion(req.Version))
	if err != nil || !ver.Stable() {
		return "", ErrUnsupportedVersion
	}
	if req.Preset == "" {
		req.Preset = PresetPrivateChat
		if req.Public {
			req.Preset = PresetPublicChat
		}
	}
	switch req.Preset {
	case PresetPrivateChat, PresetTrustedPrivateChat, PresetPublicChat:
	default:
		return "", badRequest("unknown preset %q", req.Preset)
	}
	for _, u := range req.Invite {
		if err := ids.UserID(u); err != nil {
			return "", invalidParam("invite: %v", err)
		}
		if rs.noticesUser != "" && u == rs.noticesUser {
			return "", forbidden("cannot invite this user")
		}
	}
	if req.Alias != "" {
		if _, err := rs.db.AliasRoom(ctx, req.Alias); err == nil {
			return "", ErrAliasInUse
		} else if !errors.Is(err, storage.ErrNotFound) {
			return "", err
		}
	}
	trusted := req.Preset == PresetTrustedPrivateChat

	// The create event.
	create := map[string]any{}
	if len(req.CreationContent) > 0 {
		if err := json.Unmarshal(req.CreationContent, &create); err != nil {
			return "", badRequest("creation_content must be an object")
		}
	}
	create["room_version"] = req.Version
	if ver.CreatorInCreateEvent() {
		create["creator"] = req.Creator
	}
	if ver.PrivilegedCreators() {
		if err := withAdditionalCreators(create, trusted, req.Invite); err != nil {
			return "", err
		}
	}
	createRaw, err := json.Marshal(create)
	if err != nil {
		return "", err
	}
	r := newRoom("", ver)
	r.mu.Lock()
	defer r.mu.Unlock()
	createPDU, err := rs.buildCreateEvent(ctx, r, req.Creator, req.DeviceID, createRaw)
	if err != nil {
		return "", err
	}
	// The room ID is claimed from here on: a failure releases it.
	created := false
	defer func() {
		if !created {
			rs.evict(r)
		}
	}()
	// Every event is built and checked before any is queued, so a refused
	// event leaves no half-created room behind.
	first, err := rs.advance(ctx, r, createPDU, eventMeta{senderDevice: req.DeviceID})
	if err != nil {
		return "", err
	}
	writes := []*eventWrite{first}
	send := func(typ string, stateKey *string, content any) error {
		raw, err := json.Marshal(content)
		if err != nil {
			return err
		}
		pdu, err := rs.build(ctx, r, LocalEvent{Sender: req.Creator, DeviceID: req.DeviceID, Type: typ, StateKey: stateKey, Content: raw})
		if err != nil {
			return fmt.Errorf("%s event: %w", typ, err)
		}
		w, err := rs.advance(ctx, r, pdu, eventMeta{senderDevice: req.DeviceID})
		if err != nil {
			return err
		}
		writes = append(writes, w)
		return nil
	}
	empty := ""
	fail := func(err error) (string, error) { return "", err }
	member := map[string]any{"membership": spec.Join}
	if req.DisplayName != "" {
		member["displayname"] = req.DisplayName
	}
	if req.AvatarURL != "" {
		member["avatar_url"] = req.AvatarURL
	}
	if req.IsDirect {
		member["is_direct"] = true
	}
	creator := req.Creator
	if err := send(spec.MRoomMember, &creator, member); err != nil {
		return fail(err)
	}
	pl, err := initialPowerLevels(ver, req, trusted)
	if err != nil {
		return fail(err)
	}
	if err := send(spec.MRoomPowerLevels, &empty, pl); err != nil {
		return fail(err)
	}
	if req.Alias != "" {
		if err := send("m.room.canonical_alias", &empty, map[string]any{"alias": req.Alias}); err != nil {
			return fail(err)
		}
	}
	initial := map[gomatrixserverlib.StateKeyTuple]bool{}
	for _, ev := range req.InitialState {
		initial[gomatrixserverlib.StateKeyTuple{EventType: ev.Type, StateKey: ev.StateKey}] = true
	}
	presetEvents := []StateEvent{{Type: spec.MRoomJoinRules, Content: mustJSON(map[string]string{"join_rule": "invite"})}}
	if req.Preset == PresetPublicChat {
		presetEvents[0].Content = mustJSON(map[string]string{"join_rule": "public"})
	}
	presetEvents = append(presetEvents, StateEvent{Type: spec.MRoomHistoryVisibility, Content: mustJSON(map[string]string{"history_visibility": "shared"})})
	if req.Preset != PresetPublicChat {
		presetEvents = append(presetEvents, StateEvent{Type: "m.room.guest_access", Content: mustJSON(map[string]string{"guest_access": "can_join"})})
	}
	for _, ev := range presetEvents {
		if initial[gomatrixserverlib.StateKeyTuple{EventType: ev.Type, StateKey: ev.StateKey}] {
			continue
		}
		sk := ev.StateKey
		if err := send(ev.Type, &sk, ev.Content); err != nil {
			return fail(err)
		}
	}
	for _, ev := range req.InitialState {
		if ev.Type == spec.MRoomCreate || ev.Type == spec.MRoomMember {
			return fail(badRequest("initial_state may not contain %s events", ev.Type))
		}
		sk := ev.StateKey
		if err := send(ev.Type, &sk, ev.Content); err != nil {
			return fail(err)
		}
	}
	if req.Name != nil {
		if err := send(spec.MRoomName, &empty, map[string]string{"name": *req.Name}); err != nil {
			return fail(err)
		}
	}
	if req.Topic != nil {
		if err := send(spec.MRoomTopic, &empty, topicContent(*req.Topic)); err != nil {
			return fail(err)
		}
	}
	for _, u := range req.Invite {
		if slices.Contains(later, u) {
			continue // invited by CreateRoom once the room stands
		}
		inv, err := rs.memberContent(ctx, MembershipRequest{Target: u, Membership: spec.Invite, IsDirect: req.IsDirect})
		if err != nil {
			return fail(err)
		}
		target := u
		if err := send(spec.MRoomMember, &target, inv); err != nil {
			return fail(err)
		}
	}
	var waits []func() error
	for _, w := range writes {
		waits = append(waits, rs.enqueue(ctx, r, w))
	}
	if req.Alias != "" || req.Public {
		waits = append(waits, rs.db.Enqueue(context.WithoutCancel(ctx), func(tx *storage.Tx) error {
			if req.Alias != "" {
				if err := tx.InsertAlias(ctx, req.Alias, r.nid.Load(), req.Creator); err != nil {
					return err
				}
			}
			if req.Public {
				return tx.SetRoomPublished(ctx, r.nid.Load(), true)
			}
			return nil
		}))
	}
	var firstErr error
	for _, w := range waits {
		if err := w(); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		return "", firstErr
	}
	created = true
	return r.id, nil
}

// maxRoomIDAttempts bounds the retries for an unused room ID.
const maxRoomIDAttempts = 10

// buildCreateEvent builds the create event of a new room and claims the
// room's ID (r.mu held). From v12 the room ID is the create event's hash, so
// identical createRoom requests in the same millisecond would produce the
// same room: like Synapse, a colliding create event is rebuilt with a
// timestamp a few milliseconds later, which makes it (and the ID) unique.
func (rs *Roomserver) buildCreateEvent(ctx context.Context, r *room, creator, deviceID string, content []byte) (gomatrixserverlib.PDU, error) {
	empty := ""
	ts := rs.now()
	for attempt := range maxRoomIDAttempts {
		if attempt > 0 {
			ts = ts.Add(time.Duration(1+mrand.IntN(10)) * time.Millisecond)
		}
		if !r.version.DomainlessRoomIDs() {
			r.id = "!" + randomString(18) + ":" + string(rs.origin)
		}
		ev := LocalEvent{Sender: creator, DeviceID: deviceID, Type: spec.MRoomCreate, StateKey: &empty, Content: content}
		pdu, err := rs.buildAt(ctx, r, ev, ts)
		if err != nil {
			return nil, fmt.Errorf("%s event: %w", spec.MRoomCreate, err)
		}
		if r.version.DomainlessRoomIDs() {
			r.id = "!" + strings.TrimPrefix(pdu.EventID(), "$")
		}
		claimed, err := rs.claimRoomID(ctx, r)
		if err != nil {
			return nil, err
		}
		if claimed {
			return pdu, nil
		}
	}
	return nil, fmt.Errorf("no unused room ID after %d attempts", maxRoomIDAttempts)
}

// claimRoomID registers r under its ID unless a room with that ID exists or
// is being created.
func (rs *Roomserver) claimRoomID(ctx context.Context, r *room) (bool, error) {
	if _, err := rs.db.Room(ctx, r.id); err == nil {
		return false, nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return false, err
	}
	return rs.rooms.AddIfAbsent(r.id, r) == r, nil
}

// inviteLevel is the power to invite: anyone in private chats, moderators
// in public ones (Synapse's presets).
func inviteLevel(preset string) int {
	if preset == PresetPublicChat {
		return 50
	}
	return 0
}

// initialPowerLevels is the preset's power levels merged with the override.
func initialPowerLevels(ver gomatrixserverlib.IRoomVersion, req CreateRoomRequest, trusted bool) (map[string]any, error) {
	users := map[string]any{}
	if !ver.PrivilegedCreators() {
		// From v12 creators have unlimited power and must not be listed.
		users[req.Creator] = 100
		if trusted {
			for _, u := range req.Invite {
				users[u] = 100
			}
		}
	}
	pl := map[string]any{
		"users":          users,
		"users_default":  0,
		"events_default": 0,
		"state_default":  50,
		"ban":            50,
		"kick":           50,
		"redact":         50,
		"invite":         inviteLevel(req.Preset),
		"historical":     100,
		"events": map[string]any{
			"m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
			"m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": tombstoneLevel(ver),
			"m.room.server_acl": 100, "m.room.encryption": 100,
		},
		"notifications": map[string]any{"room": 50},
	}
	if len(req.PowerLevelOverride) > 0 {
		var override map[string]any
		if err := json.Unmarshal(req.PowerLevelOverride, &override); err != nil {
			return nil, badRequest("power_level_content_override must be an object")
		}
		// Before v12 a users map without the creator would leave the room
		// without an admin; Synapse refuses it.
		if u, ok := override["users"].(map[string]any); ok && !ver.PrivilegedCreators() {
			if _, ok := u[req.Creator]; !ok {
				return nil, &BadRequestError{Code: "M_INVALID_ROOM_STATE",
					Reason: "power_level_content_override: users does not contain the room creator " + req.Creator}
			}
		}
		for k, v := range override {
			pl[k] = v
		}
	}
	return pl, nil
}

// tombstoneLevel is the default power needed to upgrade a room: from v12
// (MSC4289) more than an ordinary admin's 100, so only creators can.
func tombstoneLevel(ver gomatrixserverlib.IRoomVersion) int {
	if ver.PrivilegedCreators() {
		return 150
	}
	return 100
}

// topicContent is m.room.topic content with the plain-text topic also in
// the rich m.topic block (MSC3765).
func topicContent(topic string) map[string]any {
	return map[string]any{
		"topic":   topic,
		"m.topic": map[string]any{"m.text": []map[string]string{{"mimetype": "text/plain", "body": topic}}},
	}
}

// withAdditionalCreators validates additional_creators of a v12 create
// event (MSC4289: a list of user IDs) and, for trusted_private_chat, adds
// the invitees to it; the requested creators are kept.
func withAdditionalCreators(create map[string]any, trusted bool, invite []string) error {
	var creators []string
	if raw, ok := create["additional_creators"]; ok {
		list, ok := raw.([]any)
		if !ok {
			return badRequest("additional_creators must be a list of user IDs")
		}
		for _, v := range list {
			u, ok := v.(string)
			if !ok {
				return badRequest("additional_creators must be a list of user IDs")
			}
			if err := ids.UserID(u); err != nil {
				return badRequest("additional_creators: %v", err)
			}
			creators = append(creators, u)
		}
	}
	if trusted {
		for _, u := range invite {
			if !slices.Contains(creators, u) {
				creators = append(creators, u)
			}
		}
	}
	if creators != nil {
		create["additional_creators"] = creators
	}
	return nil
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func randomString(n int) string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	b := make([]byte, n)
	for i := range b {
		k, err := rand.Int(rand.Reader, big.NewInt(int64(len(letters))))
		if err != nil {
			panic(err)
		}
		b[i] = letters[k.Int64()]
	}
	return string(b)
}
