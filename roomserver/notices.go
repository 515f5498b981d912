package roomserver

// Server notices (as in Synapse): messages from the server to one local user,
// sent by a system user into a room per recipient. The recipient is invited
// (or joined, with auto_join), cannot write there (users_default -10), and
// cannot reject the invite; after leaving, the next notice re-invites them
// to the same room. The room is tagged m.server_notice for the recipient.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

// NoticesConfig describes the notices user and rooms.
type NoticesConfig struct {
	DisplayName, AvatarURL             string
	RoomName, RoomAvatarURL, RoomTopic string
	AutoJoin                           bool
	// RoomVersion of new notices rooms.
	RoomVersion string
}

// ErrNoticesDisabled is a notice asked of a server without a notices user.
var ErrNoticesDisabled = errors.New("server notices are not enabled on this server")

// Notice is one server notice: an event for a local user's notices room.
type Notice struct {
	UserID   string
	Type     string
	StateKey *string
	Content  json.RawMessage
	// TxnID and TxnScope make the notice idempotent (PUT with a txn ID).
	TxnID, TxnScope string
}

// noticeRoomTag marks the notices room in the recipient's room tags.
const noticeRoomTag = "m.server_notice"

// EnsureNoticesUser creates the notices user's account (without a password,
// so nobody can log in as it or register its name) and keeps its profile
// in line with the configuration.
func (rs *Roomserver) EnsureNoticesUser(ctx context.Context) error {
	if rs.noticesUser == "" {
		return nil
	}
	local, _, _ := strings.Cut(strings.TrimPrefix(rs.noticesUser, "@"), ":")
	cfg := rs.noticesCfg
	return rs.db.Write(ctx, func(tx *storage.Tx) error {
		acc, err := tx.Account(ctx, rs.noticesUser)
		if errors.Is(err, storage.ErrNotFound) {
			err = tx.InsertAccount(ctx, storage.Account{UserID: rs.noticesUser, Localpart: local, CreatedTS: rs.now().UnixMilli(), DisplayName: cfg.DisplayName})
			if err != nil {
				return fmt.Errorf("creating the server notices user: %w", err)
			}
			acc = &storage.Account{DisplayName: cfg.DisplayName}
		} else if err != nil {
			return err
		}
		if acc.DisplayName != cfg.DisplayName {
			if err := tx.SetDisplayName(ctx, rs.noticesUser, cfg.DisplayName); err != nil {
				return err
			}
		}
		if acc.AvatarURL != cfg.AvatarURL {
			return tx.SetAvatarURL(ctx, rs.noticesUser, cfg.AvatarURL)
		}
		return nil
	})
}

// SendServerNotice sends a notice to a local user, creating their notices
// room on first use and (re-)inviting them when they are not in it.
func (rs *Roomserver) SendServerNotice(ctx context.Context, n Notice) (Sent, error) {
	if rs.noticesUser == "" {
		return Sent{}, ErrNoticesDisabled
	}
	if !rs.isLocal(n.UserID) || n.UserID == rs.noticesUser {
		return Sent{}, invalidParam("server notices can only be sent to local users")
	}
	// One notice at a time: two first notices must not make two rooms.
	rs.noticesMu.Lock()
	defer rs.noticesMu.Unlock()
	roomID, err := rs.noticesRoom(ctx, n.UserID)
	if err != nil {
		return Sent{}, err
	}
	if err := rs.bringIntoNoticesRoom(ctx, roomID, n.UserID); err != nil {
		return Sent{}, err
	}
	return rs.Send(ctx, LocalEvent{
		RoomID: roomID, Sender: rs.noticesUser, Type: n.Type, StateKey: n.StateKey, Content: n.Content,
		TxnID: n.TxnID, TxnScope: n.TxnScope,
	})
}

// noticesRoom finds the user's notices room, bringing its name, topic,
// avatar and the notices user's profile in line with the configuration, or
// creates and tags it.
func (rs *Roomserver) noticesRoom(ctx context.Context, userID string) (string, error) {
	roomID, err := rs.db.NoticesRoom(ctx, rs.noticesUser, userID)
	if err == nil {
		return roomID, rs.refreshNoticesRoom(ctx, roomID)
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return "", err
	}
	cfg := rs.noticesCfg
	req := CreateRoomRequest{
		Creator: rs.noticesUser, Version: cfg.RoomVersion, Preset: PresetPrivateChat,
		PowerLevelOverride: json.RawMessage(`{"users_default":-10}`),
		DisplayName:        cfg.DisplayName, AvatarURL: cfg.AvatarURL,
	}
	if cfg.RoomName != "" {
		req.Name = &cfg.RoomName
	}
	if cfg.RoomTopic != "" {
		req.Topic = &cfg.RoomTopic
	}
	if cfg.RoomAvatarURL != "" {
		req.InitialState = []StateEvent{{Type: "m.room.avatar", Content: mustJSON(map[string]string{"url": cfg.RoomAvatarURL})}}
	}
	roomID, err = rs.CreateRoom(ctx, req)
	if err != nil {
		return "", fmt.Errorf("creating the server notices room: %w", err)
	}
	err = rs.db.Write(ctx, func(tx *storage.Tx) error {
		tags := map[string]any{}
		if raw, err := tx.AccountData(ctx, userID, roomID, "m.tag"); err == nil {
			var c struct {
				Tags map[string]any `json:"tags"`
			}
			if json.Unmarshal(raw, &c) == nil && c.Tags != nil {
				tags = c.Tags
			}
		}
		tags[noticeRoomTag] = map[string]any{}
		_, err := tx.PutAccountData(ctx, userID, roomID, "m.tag", mustJSON(map[string]any{"tags": tags}))
		return err
	})
	return roomID, err
}

// refreshNoticesRoom updates what the configuration may have changed since
// the room was made: the notices user's profile and the room's name,
// avatar and topic.
func (rs *Roomserver) refreshNoticesRoom(ctx context.Context, roomID string) error {
	r, err := rs.room(ctx, roomID)
	if err != nil {
		return err
	}
	cfg := rs.noticesCfg
	member := map[string]any{"membership": spec.Join}
	if cfg.DisplayName != "" {
		member["displayname"] = cfg.DisplayName
	}
	if cfg.AvatarURL != "" {
		member["avatar_url"] = cfg.AvatarURL
	}
	own, err := rs.currentEvent(ctx, r, spec.MRoomMember, rs.noticesUser)
	if err != nil {
		return err
	}
	if own == nil || stringField(own.Content(), "displayname") != cfg.DisplayName || stringField(own.Content(), "avatar_url") != cfg.AvatarURL {
		self := rs.noticesUser
		if _, err := rs.Send(ctx, LocalEvent{RoomID: roomID, Sender: self, Type: spec.MRoomMember, StateKey: &self, Content: mustJSON(member)}); err != nil {
			return err
		}
	}
	for _, info := range []struct{ typ, field, value string }{
		{spec.MRoomName, "name", cfg.RoomName},
		{"m.room.avatar", "url", cfg.RoomAvatarURL},
		{spec.MRoomTopic, "topic", cfg.RoomTopic},
	} {
		cur, err := rs.currentEvent(ctx, r, info.typ, "")
		if err != nil {
			return err
		}
		have := ""
		if cur != nil {
			have = stringField(cur.Content(), info.field)
		}
		if have == info.value {
			continue
		}
		content := map[string]any{info.field: info.value}
		if info.typ == spec.MRoomTopic {
			content = topicContent(info.value)
		}
		empty := ""
		if _, err := rs.Send(ctx, LocalEvent{RoomID: roomID, Sender: rs.noticesUser, Type: info.typ, StateKey: &empty, Content: mustJSON(content)}); err != nil {
			return err
		}
	}
	return nil
}

// stringField is a string field of event content ("" when absent).
func stringField(content []byte, field string) string {
	var m map[string]any
	json.Unmarshal(content, &m)
	s, _ := m[field].(string)
	return s
}

// bringIntoNoticesRoom invites the user unless they are invited or joined,
// and joins them with auto_join.
func (rs *Roomserver) bringIntoNoticesRoom(ctx context.Context, roomID, userID string) error {
	m, err := rs.Membership(ctx, roomID, userID)
	if err != nil {
		return err
	}
	if m != spec.Invite && m != spec.Join {
		if _, err := rs.SetMembership(ctx, MembershipRequest{RoomID: roomID, Sender: rs.noticesUser, Target: userID, Membership: spec.Invite}); err != nil {
			return fmt.Errorf("inviting %s to the server notices room: %w", userID, err)
		}
		m = spec.Invite
	}
	if rs.noticesCfg.AutoJoin && m != spec.Join {
		name, avatar, err := rs.localProfile(ctx, userID)
		if err != nil {
			return err
		}
		_, err = rs.SetMembership(ctx, MembershipRequest{RoomID: roomID, Sender: userID, Target: userID, Membership: spec.Join, DisplayName: name, AvatarURL: avatar})
		if err != nil {
			return fmt.Errorf("joining %s to the server notices room: %w", userID, err)
		}
	}
	return nil
}
