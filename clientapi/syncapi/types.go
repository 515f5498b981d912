package syncapi

import (
	"encoding/json"

	"matrixhs/clientapi/internal/roomview"
	"matrixhs/internal/ephemeral"
	"matrixhs/roomserver/pushrules"
)

// The response shapes of /sync and sliding sync. Lists the spec always
// sends are never nil here (they encode as []); fields sent only at times
// are omitzero, so a nil slice is left out while an empty one is sent.
// testdata/sync_golden in tests/e2e pins the JSON these produce.

// Response is the body of GET /sync.
type Response struct {
	NextBatch              string         `json:"next_batch"`
	Rooms                  Rooms          `json:"rooms"`
	AccountData            AccountData    `json:"account_data"`
	Presence               PresenceEvents `json:"presence"`
	ToDevice               ToDevice       `json:"to_device"`
	DeviceLists            DeviceLists    `json:"device_lists"`
	OneTimeKeysCount       map[string]int `json:"device_one_time_keys_count"`
	UnusedFallbackKeyTypes []string       `json:"device_unused_fallback_key_types"`
}

// Rooms are the rooms of a sync response by the user's membership.
type Rooms struct {
	Join   map[string]*JoinedRoom  `json:"join"`
	Invite map[string]*InvitedRoom `json:"invite"`
	Leave  map[string]*LeftRoom    `json:"leave"`
	Knock  map[string]*KnockedRoom `json:"knock"`
}

// JoinedRoom is an entry of rooms.join.
type JoinedRoom struct {
	Timeline            Timeline     `json:"timeline"`
	State               Events       `json:"state"`
	AccountData         AccountData  `json:"account_data"`
	Ephemeral           Ephemeral    `json:"ephemeral"`
	UnreadNotifications UnreadCounts `json:"unread_notifications"`
	// UnreadThreadNotifications: per thread root, only when the filter
	// asks for them and there are some.
	UnreadThreadNotifications map[string]UnreadCounts `json:"unread_thread_notifications,omitzero"`
	// Summary: when the room's members changed in the window.
	Summary *Summary `json:"summary,omitzero"`
}

// LeftRoom is an entry of rooms.leave.
type LeftRoom struct {
	Timeline    Timeline    `json:"timeline"`
	State       Events      `json:"state"`
	AccountData AccountData `json:"account_data"`
}

// InvitedRoom is an entry of rooms.invite.
type InvitedRoom struct {
	InviteState StrippedState `json:"invite_state"`
}

// KnockedRoom is an entry of rooms.knock.
type KnockedRoom struct {
	KnockState StrippedState `json:"knock_state"`
}

// StrippedState is what an invited or knocking user may see of a room.
type StrippedState struct {
	Events []roomview.Stripped `json:"events"`
}

// Timeline is a room's new events, oldest first.
type Timeline struct {
	Events    []json.RawMessage `json:"events"`
	Limited   bool              `json:"limited"`
	PrevBatch string            `json:"prev_batch"`
}

// Events is a list of events in the client format.
type Events struct {
	Events []json.RawMessage `json:"events"`
}

// AccountData is a list of account data events.
type AccountData struct {
	Events []AccountDataEvent `json:"events"`
}

// AccountDataEvent is one type of a user's (global or room) account data.
type AccountDataEvent struct {
	Type    string          `json:"type"`
	Content json.RawMessage `json:"content"`
}

// pushRulesEvent is the m.push_rules account data event.
func pushRulesEvent(rules pushrules.Ruleset) AccountDataEvent {
	content, _ := json.Marshal(struct {
		Global pushrules.Ruleset `json:"global"`
	}{rules})
	return AccountDataEvent{Type: "m.push_rules", Content: content}
}

// Ephemeral is a joined room's typing and receipt events.
type Ephemeral struct {
	Events []EphemeralEvent `json:"events"`
}

// EphemeralEvent is an m.typing or m.receipt event.
type EphemeralEvent struct {
	Type string `json:"type"`
	// Content is a TypingContent (m.typing) or ephemeral.Receipts (m.receipt).
	Content any `json:"content"`
}

// TypingContent is the content of m.typing: who types now.
type TypingContent struct {
	UserIDs []string `json:"user_ids"`
}

func typingEvent(users []string) EphemeralEvent {
	return EphemeralEvent{Type: "m.typing", Content: TypingContent{UserIDs: users}}
}

func receiptEvent(rs ephemeral.Receipts) EphemeralEvent {
	return EphemeralEvent{Type: "m.receipt", Content: rs}
}

// UnreadCounts are a room's (or thread's) notification counts.
type UnreadCounts struct {
	HighlightCount    int `json:"highlight_count"`
	NotificationCount int `json:"notification_count"`
}

// Summary is a joined room's heroes and member counts.
type Summary struct {
	Heroes             []string `json:"m.heroes"`
	JoinedMemberCount  int      `json:"m.joined_member_count"`
	InvitedMemberCount int      `json:"m.invited_member_count"`
}

// PresenceEvents are the presence changes a sync carries.
type PresenceEvents struct {
	Events []PresenceEvent `json:"events"`
}

// PresenceEvent is one user's presence.
type PresenceEvent struct {
	Type    string             `json:"type"`
	Sender  string             `json:"sender"`
	Content ephemeral.Presence `json:"content"`
}

// ToDevice are a device's to-device messages.
type ToDevice struct {
	Events []ToDeviceEvent `json:"events"`
}

// ToDeviceEvent is one to-device message.
type ToDeviceEvent struct {
	Type    string          `json:"type"`
	Sender  string          `json:"sender"`
	Content json.RawMessage `json:"content"`
}

// DeviceLists are the users whose devices changed (changed) and those the
// user no longer shares a room with (left).
type DeviceLists struct {
	Changed []string `json:"changed"`
	Left    []string `json:"left"`
}

// Sliding sync (MSC4186).

// SSResponse is the body of a sliding-sync response.
type SSResponse struct {
	Pos        string             `json:"pos"`
	TxnID      *string            `json:"txn_id,omitzero"`
	Lists      map[string]SSList  `json:"lists"`
	Rooms      map[string]*SSRoom `json:"rooms"`
	Extensions SSExtensions       `json:"extensions"`
}

// SSList is a list's entry: how many rooms match its filters.
type SSList struct {
	Count int `json:"count"`
}

// SSRoom is a room of a sliding-sync response: whole when Initial, else
// what changed since the client's position.
type SSRoom struct {
	Initial   bool  `json:"initial,omitzero"`
	BumpStamp int64 `json:"bump_stamp"`
	// InviteState: for invites, which carry nothing else.
	InviteState []roomview.Stripped `json:"invite_state,omitzero"`
	*SSCounts
	// Timeline and PrevBatch: when there are events, or the room is initial.
	Timeline  []json.RawMessage `json:"timeline,omitzero"`
	PrevBatch string            `json:"prev_batch,omitzero"`
	Limited   bool              `json:"limited,omitzero"`
	// NumLive: for rooms the client already holds.
	NumLive       *int              `json:"num_live,omitzero"`
	RequiredState []json.RawMessage `json:"required_state,omitzero"`
	// SSRoomMeta: when the room's state changed (or it is initial).
	*SSRoomMeta
}

// SSCounts are a joined (or left) room's unread counts.
type SSCounts struct {
	NotificationCount int `json:"notification_count"`
	HighlightCount    int `json:"highlight_count"`
}

// SSRoomMeta is what clients show of a room: its name, avatar, heroes and
// member counts.
type SSRoomMeta struct {
	Name         string   `json:"name,omitzero"`
	Avatar       string   `json:"avatar,omitzero"`
	Heroes       []SSHero `json:"heroes"`
	JoinedCount  int      `json:"joined_count"`
	InvitedCount int      `json:"invited_count"`
}

// SSHero is one of the members a room without a name is shown by.
type SSHero struct {
	UserID      string `json:"user_id"`
	DisplayName string `json:"displayname,omitzero"`
	AvatarURL   string `json:"avatar_url,omitzero"`
}

// SSExtensions are the extensions of a response, each present when the
// connection enabled it.
type SSExtensions struct {
	ToDevice    *SSToDevice       `json:"to_device,omitzero"`
	E2EE        *SSE2EE           `json:"e2ee,omitzero"`
	AccountData *SSAccountData    `json:"account_data,omitzero"`
	Receipts    *SSRoomsEphemeral `json:"receipts,omitzero"`
	Typing      *SSRoomsEphemeral `json:"typing,omitzero"`
}

// SSToDevice is the to_device extension: messages up to NextBatch, the
// token the client acknowledges them with.
type SSToDevice struct {
	NextBatch string          `json:"next_batch"`
	Events    []ToDeviceEvent `json:"events"`
}

// SSE2EE is the e2ee extension.
type SSE2EE struct {
	DeviceLists            DeviceLists    `json:"device_lists"`
	OneTimeKeysCount       map[string]int `json:"device_one_time_keys_count"`
	UnusedFallbackKeyTypes []string       `json:"device_unused_fallback_key_types"`
}

// SSAccountData is the account_data extension.
type SSAccountData struct {
	Global []AccountDataEvent            `json:"global"`
	Rooms  map[string][]AccountDataEvent `json:"rooms"`
}

// SSRoomsEphemeral is the receipts or typing extension: one event per room.
type SSRoomsEphemeral struct {
	Rooms map[string]EphemeralEvent `json:"rooms"`
}
