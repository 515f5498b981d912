package roomserver

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

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
		if _, err := spec.NewUserID(u, true); err != nil {
			return "", badRequest("invalid user ID %q in invite", u)
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
	if ver.PrivilegedCreators() && trusted && len(req.Invite) > 0 {
		create["additional_creators"] = req.Invite
	}
	r := newRoom("", ver)
	if !ver.DomainlessRoomIDs() {
		r.id = "!" + randomString(18) + ":" + string(rs.origin)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// Every event is built and checked before any is queued, so a refused
	// event leaves no half-created room behind.
	var writes []*eventWrite
	send := func(typ string, stateKey *string, content any) error {
		raw, err := json.Marshal(content)
		if err != nil {
			return err
		}
		pdu, err := rs.build(ctx, r, LocalEvent{Sender: req.Creator, DeviceID: req.DeviceID, Type: typ, StateKey: stateKey, Content: raw})
		if err != nil {
			return fmt.Errorf("%s event: %w", typ, err)
		}
		if typ == spec.MRoomCreate && ver.DomainlessRoomIDs() {
			r.id = "!" + strings.TrimPrefix(pdu.EventID(), "$")
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
	if err := send(spec.MRoomCreate, &empty, create); err != nil {
		return fail(err)
	}
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
		if err := send(spec.MRoomTopic, &empty, map[string]string{"topic": *req.Topic}); err != nil {
			return fail(err)
		}
	}
	for _, u := range req.Invite {
		inv := map[string]any{"membership": spec.Invite}
		if req.IsDirect {
			inv["is_direct"] = true
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
	rs.rooms.Add(r.id, r)
	var firstErr error
	for _, w := range waits {
		if err := w(); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		rs.evict(r)
		return "", firstErr
	}
	return r.id, nil
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
		"invite":         0,
		"historical":     100,
		"events": map[string]any{
			"m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
			"m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
			"m.room.server_acl": 100, "m.room.encryption": 100,
		},
		"notifications": map[string]any{"room": 50},
	}
	if len(req.PowerLevelOverride) > 0 {
		var override map[string]any
		if err := json.Unmarshal(req.PowerLevelOverride, &override); err != nil {
			return nil, badRequest("power_level_content_override must be an object")
		}
		for k, v := range override {
			pl[k] = v
		}
	}
	return pl, nil
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
