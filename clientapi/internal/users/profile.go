package users

import (
	"context"
	"encoding/json"
	"sync"
	"unicode/utf8"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/clientapi/internal/roomview"
	"matrixhs/internal/httputil"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

// CheckProfileValue refuses a display name or avatar URL that is too long
// (nil: nothing to check).
func CheckProfileValue(field string, value *string) error {
	if value == nil {
		return nil
	}
	if field == "displayname" && utf8.RuneCountInString(*value) > 256 {
		return httputil.BadJSON("displayname is longer than 256 characters")
	}
	if len(*value) > 1000 {
		return httputil.BadJSON("%s is too long", field)
	}
	return nil
}

// SetProfileField stores a user's new display name or avatar ("" clears it)
// and sends it into their rooms.
func (us *Service) SetProfileField(ctx context.Context, userID, deviceID, field, value string) error {
	if err := CheckProfileValue(field, &value); err != nil {
		return err
	}
	err := us.db.Write(ctx, func(tx *storage.Tx) error {
		if field == "displayname" {
			return tx.SetDisplayName(ctx, userID, value)
		}
		return tx.SetAvatarURL(ctx, userID, value)
	})
	if err != nil {
		return err
	}
	us.propagateProfile(context.WithoutCancel(ctx), userID, deviceID, field, value)
	return nil
}

// propagateProfile sends an updated join event into every room the user is
// joined to, so members see the new display name or avatar. A room that
// refuses the update is logged and skipped.
func (us *Service) propagateProfile(ctx context.Context, userID, deviceID, field, value string) {
	log := httputil.Logger(ctx).WithField("user_id", userID)
	members, err := us.db.JoinedMemberEvents(ctx, userID)
	if err != nil {
		log.WithError(err).Warn("listing joined rooms to propagate a profile change")
		return
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4) // rooms are independent; their writes share group commits
	for _, m := range members {
		var content map[string]any
		if json.Unmarshal(roomview.Content(m.JSON), &content) != nil || content == nil {
			content = map[string]any{}
		}
		if cur, _ := content[field].(string); cur == value && (value != "" || content[field] == nil) {
			continue // already up to date
		}
		// Keep the rest of the member event (is_direct, ...), but not what
		// described the previous change.
		delete(content, "reason")
		delete(content, "join_authorised_via_users_server")
		content["membership"] = spec.Join
		if value == "" {
			delete(content, field)
		} else {
			content[field] = value
		}
		raw, err := json.Marshal(content)
		if err != nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(roomID string) {
			defer func() { <-sem; wg.Done() }()
			self := userID
			_, err := us.rooms.Send(ctx, roomserver.LocalEvent{
				RoomID: roomID, Sender: userID, DeviceID: deviceID, Type: spec.MRoomMember, StateKey: &self, Content: raw,
			})
			if err != nil {
				log.WithError(err).WithField("room_id", roomID).Warn("could not propagate profile change into room")
			}
		}(m.RoomID)
	}
	wg.Wait()
}
