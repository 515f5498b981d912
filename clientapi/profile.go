package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"unicode/utf8"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/clientapi/internal/roomview"
	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

// lookupProfile returns a local user's account for profile reads.
func (a *API) lookupProfile(r *http.Request) (*storage.Account, error) {
	userID := pathVar(r, "userId")
	acc, err := a.db.Account(r.Context(), userID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("Profile not found")
	}
	return acc, err
}

// getProfile serves GET /_matrix/client/v3/profile/{userId}.
func (a *API) getProfile(r *http.Request) (any, error) {
	acc, err := a.lookupProfile(r)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	if acc.DisplayName != "" {
		out["displayname"] = acc.DisplayName
	}
	if acc.AvatarURL != "" {
		out["avatar_url"] = acc.AvatarURL
	}
	return out, nil
}

// getProfileField serves GET /_matrix/client/v3/profile/{userId}/{displayname|avatar_url}.
func (a *API) getProfileField(r *http.Request) (any, error) {
	acc, err := a.lookupProfile(r)
	if err != nil {
		return nil, err
	}
	field := pathVar(r, "field")
	value := acc.DisplayName
	if field == "avatar_url" {
		value = acc.AvatarURL
	}
	if value == "" {
		return nil, httputil.NotFound("No %s set for this user", field)
	}
	return map[string]string{field: value}, nil
}

// setProfileField serves PUT /_matrix/client/v3/profile/{userId}/{displayname|avatar_url}.
func (a *API) setProfileField(r *http.Request, s *accounts.Session) (any, error) {
	if err := requireSelf(s, pathVar(r, "userId")); err != nil {
		return nil, err
	}
	field := pathVar(r, "field")
	var body map[string]any
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	value := ""
	switch v := body[field].(type) {
	case nil:
	case string:
		value = v
	default:
		return nil, httputil.BadJSON("%s must be a string", field)
	}
	if err := a.updateProfile(r.Context(), s.UserID, s.DeviceID, field, value); err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}

// checkProfileValue refuses a display name or avatar URL that is too long
// (nil: nothing to check).
func checkProfileValue(field string, value *string) error {
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

// updateProfile stores a user's new display name or avatar ("" clears it)
// and sends it into their rooms.
func (a *API) updateProfile(ctx context.Context, userID, deviceID, field, value string) error {
	if err := checkProfileValue(field, &value); err != nil {
		return err
	}
	err := a.db.Write(ctx, func(tx *storage.Tx) error {
		if field == "displayname" {
			return tx.SetDisplayName(ctx, userID, value)
		}
		return tx.SetAvatarURL(ctx, userID, value)
	})
	if err != nil {
		return err
	}
	a.propagateProfile(context.WithoutCancel(ctx), userID, deviceID, field, value)
	return nil
}

// propagateProfile sends an updated join event into every room the user is
// joined to, so members see the new display name or avatar. A room that
// refuses the update is logged and skipped.
func (a *API) propagateProfile(ctx context.Context, userID, deviceID, field, value string) {
	log := httputil.Logger(ctx).WithField("user_id", userID)
	members, err := a.db.JoinedMemberEvents(ctx, userID)
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
			_, err := a.rooms.Send(ctx, roomserver.LocalEvent{
				RoomID: roomID, Sender: userID, DeviceID: deviceID, Type: spec.MRoomMember, StateKey: &self, Content: raw,
			})
			if err != nil {
				log.WithError(err).WithField("room_id", roomID).Warn("could not propagate profile change into room")
			}
		}(m.RoomID)
	}
	wg.Wait()
}
