package roomserver

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/ids"
	"matrixhs/storage"
)

// upgradeCopiedState is the state an upgrade carries into the new room.
var upgradeCopiedState = []string{
	"m.room.server_acl", "m.room.encryption", spec.MRoomName, "m.room.avatar", spec.MRoomTopic,
	"m.room.guest_access", spec.MRoomHistoryVisibility, spec.MRoomJoinRules, "m.room.canonical_alias",
	"m.room.pinned_events",
}

// UpgradeRequest asks for a room upgrade.
type UpgradeRequest struct {
	RoomID, UserID, DeviceID string
	NewVersion               string
	// AdditionalCreators of the new room, from v12 (MSC4289); nil for none.
	AdditionalCreators []string
	// Profile of the upgrader, copied into their member event.
	DisplayName, AvatarURL string
}

// UpgradeRoom replaces a room with a new one of another version (spec
// "Room upgrades"): the new room gets the old one's important state and
// bans, the old room a tombstone and power levels that stop ordinary users
// from talking, and the local aliases move over. It returns the new room ID.
func (rs *Roomserver) UpgradeRoom(ctx context.Context, req UpgradeRequest) (string, error) {
	roomID, userID, deviceID, newVersion := req.RoomID, req.UserID, req.DeviceID, req.NewVersion
	ver, err := gomatrixserverlib.GetRoomVersion(gomatrixserverlib.RoomVersion(newVersion))
	if err != nil || !ver.Stable() {
		return "", ErrUnsupportedVersion
	}
	for _, u := range req.AdditionalCreators {
		if err := ids.UserID(u); err != nil {
			return "", badRequest("additional_creators: %v", err)
		}
	}
	old, err := rs.room(ctx, roomID)
	if err != nil {
		return "", err
	}
	old.mu.Lock()
	pl, err := rs.powerLevels(ctx, old)
	if err != nil {
		old.mu.Unlock()
		return "", err
	}
	if old.membership(userID) != spec.Join {
		old.mu.Unlock()
		return "", forbidden("you are not in the room")
	}
	if pl.UserLevel(spec.SenderID(userID)) < pl.EventLevel("m.room.tombstone", true) && !old.isCreator(userID) {
		old.mu.Unlock()
		return "", forbidden("you may not upgrade this room")
	}
	createContent := map[string]any{}
	oldState, err := rs.stateEvents(ctx, old, append(upgradeCopiedState, spec.MRoomCreate, spec.MRoomPowerLevels))
	if err != nil {
		old.mu.Unlock()
		return "", err
	}
	if c := oldState[spec.MRoomCreate]; c != nil {
		var oc map[string]any
		json.Unmarshal(c.Content(), &oc)
		for _, k := range []string{"type", "m.federate"} {
			if v, ok := oc[k]; ok {
				createContent[k] = v
			}
		}
	}
	createContent["predecessor"] = map[string]any{"room_id": roomID}
	if ver.PrivilegedCreators() && req.AdditionalCreators != nil {
		createContent["additional_creators"] = req.AdditionalCreators
	}
	var initial []StateEvent
	for _, typ := range upgradeCopiedState {
		if ev := oldState[typ]; ev != nil {
			initial = append(initial, StateEvent{Type: typ, Content: json.RawMessage(ev.Content())})
		}
	}
	var bans []string
	var oldPL map[string]any
	if ev := oldState[spec.MRoomPowerLevels]; ev != nil {
		json.Unmarshal(ev.Content(), &oldPL)
		fixupPowerLevels(oldPL)
	}
	for t, ref := range old.state {
		if t.EventType == spec.MRoomMember && ref.value == spec.Ban {
			bans = append(bans, t.StateKey)
		}
	}
	sort.Strings(bans)
	old.mu.Unlock()

	newPL := upgradedPowerLevels(ver, oldPL, userID, req.AdditionalCreators)
	plRaw, _ := json.Marshal(newPL)
	createRaw, _ := json.Marshal(createContent)
	newRoomID, err := rs.CreateRoom(ctx, CreateRoomRequest{
		Creator: userID, DeviceID: deviceID, Version: newVersion, Preset: PresetPrivateChat,
		InitialState: initial, CreationContent: createRaw, PowerLevelOverride: plRaw,
		DisplayName: req.DisplayName, AvatarURL: req.AvatarURL,
	})
	if err != nil {
		return "", err
	}
	for _, u := range bans {
		if _, err := rs.SetMembership(ctx, MembershipRequest{RoomID: newRoomID, Sender: userID, Target: u, Membership: spec.Ban}); err != nil {
			return "", err
		}
	}
	tomb, _ := json.Marshal(map[string]string{"body": "This room has been replaced", "replacement_room": newRoomID})
	empty := ""
	if _, err := rs.Send(ctx, LocalEvent{RoomID: roomID, Sender: userID, DeviceID: deviceID, Type: "m.room.tombstone", StateKey: &empty, Content: tomb}); err != nil {
		return "", err
	}
	// Stop ordinary users from talking in the old room.
	restricted := int64(50)
	if pl.UsersDefault+1 > restricted {
		restricted = pl.UsersDefault + 1
	}
	if oldPL == nil {
		oldPL = map[string]any{}
	}
	changed := false
	for _, k := range []string{"events_default", "invite"} {
		cur, _ := oldPL[k].(float64)
		if int64(cur) < restricted {
			oldPL[k] = restricted
			changed = true
		}
	}
	if changed {
		raw, _ := json.Marshal(oldPL)
		if _, err := rs.Send(ctx, LocalEvent{RoomID: roomID, Sender: userID, DeviceID: deviceID, Type: spec.MRoomPowerLevels, StateKey: &empty, Content: raw}); err != nil {
			return "", err
		}
	}
	oldInfo, err := rs.db.Room(ctx, roomID)
	if err != nil {
		return "", err
	}
	newInfo, err := rs.db.Room(ctx, newRoomID)
	if err != nil {
		return "", err
	}
	err = rs.db.Write(ctx, func(tx *storage.Tx) error {
		if err := tx.MoveAliases(ctx, oldInfo.NID, newInfo.NID); err != nil {
			return err
		}
		if oldInfo.Published {
			if err := tx.SetRoomPublished(ctx, oldInfo.NID, false); err != nil {
				return err
			}
			return tx.SetRoomPublished(ctx, newInfo.NID, true)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	// The old room no longer advertises the aliases that moved.
	ca, err := rs.currentEvent(ctx, old, "m.room.canonical_alias", "")
	if err != nil {
		return "", err
	}
	if ca != nil && string(ca.Content()) != "{}" {
		if _, err := rs.Send(ctx, LocalEvent{RoomID: roomID, Sender: userID, DeviceID: deviceID, Type: "m.room.canonical_alias", StateKey: &empty, Content: json.RawMessage("{}")}); err != nil {
			return "", err
		}
	}
	return newRoomID, nil
}

// upgradedPowerLevels are the new room's power levels: the old ones, with
// the upgrader raised to the power needed to set up the new room (as
// Synapse); from v12 creators have unlimited power and must not be listed,
// neither the upgrader nor the additional creators.
func upgradedPowerLevels(ver gomatrixserverlib.IRoomVersion, oldPL map[string]any, upgrader string, additional []string) map[string]any {
	newPL := map[string]any{}
	for k, v := range oldPL {
		newPL[k] = v
	}
	users, _ := oldPL["users"].(map[string]any)
	copied := map[string]any{}
	for u, l := range users {
		if !ver.PrivilegedCreators() || (u != upgrader && !slices.Contains(additional, u)) {
			copied[u] = l
		}
	}
	if !ver.PrivilegedCreators() {
		needed := max(plInt(oldPL["state_default"], 50), plInt(oldPL["ban"], 50))
		if events, ok := oldPL["events"].(map[string]any); ok {
			for _, l := range events {
				needed = max(needed, plInt(l, 0))
			}
		}
		copied[upgrader] = max(needed, plInt(copied[upgrader], plInt(oldPL["users_default"], 0)))
	}
	newPL["users"] = copied
	return newPL
}

// plInt reads a power level decoded from JSON, def when absent or not a number.
func plInt(v any, def int64) int64 {
	if f, ok := v.(float64); ok {
		return int64(f)
	}
	return def
}

// fixupPowerLevels turns the string levels older room versions allowed
// ("50") into numbers and drops levels that are no numbers at all, as
// Synapse does when it copies power levels, so the copies pass the checks
// on new power level events.
func fixupPowerLevels(pl map[string]any) {
	fix := func(m map[string]any, k string) {
		switch v := m[k].(type) {
		case float64:
		case string:
			if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
				m[k] = float64(n)
			} else {
				delete(m, k)
			}
		default:
			delete(m, k)
		}
	}
	for _, k := range powerLevelInts {
		if _, ok := pl[k]; ok {
			fix(pl, k)
		}
	}
	for _, k := range powerLevelMaps {
		if m, ok := pl[k].(map[string]any); ok {
			for key := range m {
				fix(m, key)
			}
		}
	}
}
