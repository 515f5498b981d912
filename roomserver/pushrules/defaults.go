package pushrules

import "encoding/json"

// Server-default rule IDs, as listed under "Predefined Rules" in the spec
// (content/client-server-api/modules/push.md, v1.19).
const (
	RuleMaster              = ".m.rule.master"
	RuleSuppressNotices     = ".m.rule.suppress_notices"
	RuleInviteForMe         = ".m.rule.invite_for_me"
	RuleMemberEvent         = ".m.rule.member_event"
	RuleIsUserMention       = ".m.rule.is_user_mention"
	RuleContainsDisplayName = ".m.rule.contains_display_name" // deprecated since v1.7, still specified
	RuleIsRoomMention       = ".m.rule.is_room_mention"
	RuleRoomNotif           = ".m.rule.roomnotif" // deprecated since v1.7, still specified
	RuleTombstone           = ".m.rule.tombstone"
	RuleReaction            = ".m.rule.reaction"
	RuleServerACL           = ".m.rule.room.server_acl"
	RuleSuppressEdits       = ".m.rule.suppress_edits"

	RuleContainsUserName = ".m.rule.contains_user_name" // deprecated since v1.7, still specified

	// MSC4306 (thread subscriptions), unstable names: replies in threads
	// the user has not subscribed to do not notify (mentions still do, by
	// the override and content rules before them); replies in subscribed
	// threads always do, whatever the room's rules say.
	RuleUnsubscribedThread = ".io.element.msc4306.rule.unsubscribed_thread"
	RuleSubscribedThread   = ".io.element.msc4306.rule.subscribed_thread"

	RuleCall                  = ".m.rule.call"
	RuleEncryptedRoomOneToOne = ".m.rule.encrypted_room_one_to_one"
	RuleRoomOneToOne          = ".m.rule.room_one_to_one"
	RuleMessage               = ".m.rule.message"
	RuleEncrypted             = ".m.rule.encrypted"
)

// Fresh action values per call so callers can never mutate a shared default.
func notify() any { return "notify" }

func tweak(name string, value any) any {
	if value == nil {
		return map[string]any{"set_tweak": name}
	}
	return map[string]any{"set_tweak": name, "value": value}
}

func soundDefault() any { return tweak("sound", "default") }
func highlight() any    { return tweak("highlight", nil) }

func match(key, pattern string) Condition {
	return Condition{Kind: CondEventMatch, Key: key, Pattern: pattern}
}

func jsonValue(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

func memberCount(is string) Condition { return Condition{Kind: CondRoomMemberCount, Is: is} }

func defRule(id string, conds []Condition, actions ...any) Rule {
	if actions == nil {
		actions = []any{}
	}
	return Rule{RuleID: id, Default: true, Enabled: true, Actions: actions, Conditions: conds}
}

func disabled(r Rule) Rule {
	r.Enabled = false
	return r
}

// Defaults returns the server-default ruleset for a user, in spec order.
// userID fills the invite_for_me state_key and is_user_mention value;
// localpart fills the contains_user_name pattern. Room and sender have no
// defaults. Every call returns fresh slices.
func Defaults(userID, localpart string) Ruleset {
	master := defRule(RuleMaster, []Condition{})
	master.Enabled = false // opt-in "mute everything"

	override := []Rule{
		master,
		defRule(RuleSuppressNotices, []Condition{match("content.msgtype", "m.notice")}),
		defRule(RuleInviteForMe, []Condition{
			match("type", "m.room.member"),
			match("content.membership", "invite"),
			match("state_key", userID),
		}, notify(), soundDefault()),
		defRule(RuleMemberEvent, []Condition{match("type", "m.room.member")}),
		defRule(RuleIsUserMention, []Condition{{
			Kind:  CondEventPropertyContains,
			Key:   `content.m\.mentions.user_ids`,
			Value: jsonValue(userID),
		}}, notify(), soundDefault(), highlight()),
		defRule(RuleContainsDisplayName, []Condition{{Kind: CondContainsDisplayName}},
			notify(), soundDefault(), highlight()),
		defRule(RuleIsRoomMention, []Condition{
			{Kind: CondEventPropertyIs, Key: `content.m\.mentions.room`, Value: jsonValue(true)},
			{Kind: CondSenderNotificationPermission, Key: "room"},
		}, notify(), highlight()),
		defRule(RuleRoomNotif, []Condition{
			match("content.body", "@room"),
			{Kind: CondSenderNotificationPermission, Key: "room"},
		}, notify(), highlight()),
		defRule(RuleTombstone, []Condition{
			match("type", "m.room.tombstone"),
			match("state_key", ""),
		}, notify(), highlight()),
		defRule(RuleReaction, []Condition{match("type", "m.reaction")}),
		defRule(RuleServerACL, []Condition{
			match("type", "m.room.server_acl"),
			match("state_key", ""),
		}),
		defRule(RuleSuppressEdits, []Condition{{
			Kind:  CondEventPropertyIs,
			Key:   `content.m\.relates_to.rel_type`,
			Value: jsonValue("m.replace"),
		}}),
	}

	contains := defRule(RuleContainsUserName, nil, notify(), soundDefault(), highlight())
	contains.Pattern = localpart

	threadSub := func(subscribed bool) []Condition {
		return []Condition{{Kind: CondThreadSubscription, Extra: map[string]json.RawMessage{"subscribed": jsonValue(subscribed)}}}
	}
	// MSC4306's rules stay off until the user (or a client that subscribes
	// to threads) turns them on: with them on, replies in threads nobody
	// subscribed to stop notifying, and clients without thread
	// subscriptions would lose those notifications (Synapse ships them
	// behind an experimental switch, off by default).
	postContent := []Rule{
		disabled(defRule(RuleUnsubscribedThread, threadSub(false))),
		disabled(defRule(RuleSubscribedThread, threadSub(true), notify(), soundDefault())),
	}

	underride := []Rule{
		defRule(RuleCall, []Condition{match("type", "m.call.invite")},
			notify(), tweak("sound", "ring")),
		defRule(RuleEncryptedRoomOneToOne, []Condition{
			memberCount("2"),
			match("type", "m.room.encrypted"),
		}, notify(), soundDefault()),
		defRule(RuleRoomOneToOne, []Condition{
			memberCount("2"),
			match("type", "m.room.message"),
		}, notify(), soundDefault()),
		defRule(RuleMessage, []Condition{match("type", "m.room.message")}, notify()),
		defRule(RuleEncrypted, []Condition{match("type", "m.room.encrypted")}, notify()),
	}

	return Ruleset{
		Override:    override,
		Content:     []Rule{contains},
		PostContent: postContent,
		Room:        []Rule{},
		Sender:      []Rule{},
		Underride:   underride,
	}
}

// defaultIDs[kind][ruleID] marks the server-default rules; IDs do not
// depend on the user, so one table serves every user.
var defaultIDs = func() map[string]map[string]bool {
	d := Defaults("", "")
	out := map[string]map[string]bool{}
	for _, kind := range Kinds {
		out[kind] = map[string]bool{}
		for _, r := range *d.list(kind) {
			out[kind][r.RuleID] = true
		}
	}
	return out
}()

// IsDefault reports whether ruleID names a server-default rule of kind.
func IsDefault(kind, ruleID string) bool { return defaultIDs[kind][ruleID] }
