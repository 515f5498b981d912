package pushrules

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"unicode/utf8"
)

// UserRules is the per-user persisted push rule state: the user-defined
// rules of each kind, most important first, plus the user's changes to
// server-default rules. Server-default rules themselves are not stored, so
// spec updates to them reach every user.
type UserRules struct {
	Override []Rule `json:"override,omitempty"`
	Content  []Rule `json:"content,omitempty"`
	// PostContent stays empty: users may not create postcontent rules.
	PostContent []Rule `json:"postcontent,omitempty"`
	Room        []Rule `json:"room,omitempty"`
	Sender      []Rule `json:"sender,omitempty"`
	Underride   []Rule `json:"underride,omitempty"`
	// Defaults maps kind -> server-default rule ID -> the user's change.
	Defaults map[string]map[string]DefaultChange `json:"defaults,omitempty"`
}

// DefaultChange records what a user changed on a server-default rule; nil
// fields keep the server's value.
type DefaultChange struct {
	Enabled *bool    `json:"enabled,omitempty"`
	Actions *Actions `json:"actions,omitempty"`
}

func (u *UserRules) list(kind string) *[]Rule {
	switch kind {
	case KindOverride:
		return &u.Override
	case KindContent:
		return &u.Content
	case KindPostContent:
		return &u.PostContent
	case KindRoom:
		return &u.Room
	case KindSender:
		return &u.Sender
	case KindUnderride:
		return &u.Underride
	}
	return nil
}

func indexOf(rules []Rule, ruleID string) int {
	for i, r := range rules {
		if r.RuleID == ruleID {
			return i
		}
	}
	return -1
}

// Effective merges the user's state with the server defaults into the full
// ruleset served by GET /pushrules/: .m.rule.master first, then user rules
// ahead of the server-default rules of the same kind.
func Effective(u UserRules, userID, localpart string) Ruleset {
	d := Defaults(userID, localpart)
	for _, kind := range Kinds {
		for i := range *d.list(kind) {
			r := &(*d.list(kind))[i]
			ch, ok := u.Defaults[kind][r.RuleID]
			if !ok {
				continue
			}
			if ch.Enabled != nil {
				r.Enabled = *ch.Enabled
			}
			if ch.Actions != nil {
				r.Actions = append(Actions{}, (*ch.Actions)...)
			}
		}
	}

	var out Ruleset
	for _, kind := range Kinds {
		user := *u.list(kind)
		defs := *d.list(kind)
		merged := make([]Rule, 0, len(user)+len(defs))
		if kind == KindOverride && len(defs) > 0 && defs[0].RuleID == RuleMaster {
			merged = append(merged, defs[0])
			defs = defs[1:]
		}
		for _, r := range user {
			merged = append(merged, normalize(kind, r.clone()))
		}
		merged = append(merged, defs...)
		*out.list(kind) = merged
	}
	return out
}

// normalize enforces the served shape of a user rule for its kind, whatever
// was persisted.
func normalize(kind string, r Rule) Rule {
	r.Default = false
	if r.Actions == nil {
		r.Actions = Actions{}
	}
	if hasConditions(kind) {
		if r.Conditions == nil {
			r.Conditions = []Condition{}
		}
	} else {
		r.Conditions = nil
	}
	if kind != KindContent {
		r.Pattern = ""
	}
	return r
}

func validateRuleID(ruleID string) error {
	switch {
	case ruleID == "":
		return errParam("rule_id must not be empty")
	case strings.HasPrefix(ruleID, "."):
		// Spec: IDs starting with "." are reserved for server-default rules.
		return errParam("rule_id must not start with '.': reserved for server-default rules")
	case strings.ContainsAny(ruleID, `/\`):
		return errParam("rule_id must not contain slashes")
	}
	return nil
}

// parseObject distinguishes unparseable bodies (M_NOT_JSON) from valid JSON
// of the wrong shape (M_BAD_JSON).
func parseObject(body []byte) (map[string]json.RawMessage, error) {
	if !json.Valid(body) || !utf8.Valid(body) {
		return nil, &Error{Code: CodeNotJSON, Status: 400, Msg: "content not JSON"}
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil || m == nil {
		return nil, errBadJSON("body must be a JSON object")
	}
	return m, nil
}

// decodeActions parses and validates an actions array. Legacy "dont_notify"
// and "coalesce" are accepted and kept verbatim (the spec says to ignore
// them at evaluation; clients expect to read back what they set).
func decodeActions(raw json.RawMessage) (Actions, error) {
	var a Actions
	if err := json.Unmarshal(raw, &a); err != nil || isNull(raw) {
		return nil, errBadJSON("actions must be an array")
	}
	if err := validateActions(a); err != nil {
		return nil, err
	}
	return a, nil
}

func validateActions(a Actions) error {
	for _, act := range a {
		switch v := act.(type) {
		case string:
			if v != "notify" && v != "dont_notify" && v != "coalesce" {
				return errBadJSON("unrecognised action: " + v)
			}
		case map[string]any:
			if _, ok := v["set_tweak"].(string); !ok {
				return errBadJSON("object actions must have a string set_tweak")
			}
		default:
			return errBadJSON("actions must be strings or set_tweak objects")
		}
	}
	return nil
}

const maxSafeInt = 1<<53 - 1

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

var memberCountRe = regexp.MustCompile(`^(==|<=|>=|<|>)?[0-9]+$`)

// validateCondition checks the raw condition object: kind is required;
// known kinds must carry their parameters with the right types. Unknown
// kinds are kept (the spec makes them never match) so clients may use
// unstable conditions.
func validateCondition(m map[string]json.RawMessage) error {
	str := func(field string, nonEmpty bool) (string, error) {
		raw, ok := m[field]
		if !ok {
			return "", errBadJSON("condition missing " + field)
		}
		var s string
		if isNull(raw) || json.Unmarshal(raw, &s) != nil {
			return "", errBadJSON("condition " + field + " must be a string")
		}
		if nonEmpty && s == "" {
			return "", errBadJSON("condition " + field + " must not be empty")
		}
		return s, nil
	}
	kind, err := str("kind", true)
	if err != nil {
		return errBadJSON("condition without kind")
	}
	switch kind {
	case CondEventMatch:
		if _, err := str("key", true); err != nil {
			return err
		}
		if _, err := str("pattern", false); err != nil {
			return err
		}
	case CondEventPropertyIs, CondEventPropertyContains:
		if _, err := str("key", true); err != nil {
			return err
		}
		raw, ok := m["value"]
		if !ok {
			return errBadJSON("condition missing value")
		}
		if !scalarValue(raw) {
			return errBadJSON("condition value must be a string, integer, boolean or null")
		}
	case CondRoomMemberCount:
		is, err := str("is", true)
		if err != nil {
			return err
		}
		if !memberCountRe.MatchString(is) {
			return errBadJSON("condition is must be an integer with optional ==, <, >, <=, >= prefix")
		}
	case CondSenderNotificationPermission:
		if _, err := str("key", true); err != nil {
			return err
		}
	case CondThreadSubscription:
		var b bool
		if raw, ok := m["subscribed"]; !ok || isNull(raw) || json.Unmarshal(raw, &b) != nil {
			return errBadJSON("condition subscribed must be a boolean")
		}
	}
	return nil
}

// scalarValue accepts the canonical-JSON scalars the spec allows for
// event_property_is/contains: strings, booleans, null and integers within
// +/-(2^53-1).
func scalarValue(raw json.RawMessage) bool {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return false
	}
	switch n := v.(type) {
	case nil, string, bool:
		return true
	case json.Number:
		i, err := n.Int64()
		return err == nil && i >= -maxSafeInt && i <= maxSafeInt
	}
	return false
}

// Put creates or replaces a user-defined rule (PUT /pushrules/global/{kind}/{ruleID}).
// A new rule without before/after becomes the most important user rule of
// its kind; a replaced one keeps its position and enabled state unless
// before/after move it. If both are given, before wins (spec).
func (u *UserRules) Put(kind, ruleID string, body []byte, before, after string) error {
	if !ValidKind(kind) {
		return errKind(kind)
	}
	if kind == KindPostContent {
		// MSC4306: servers must refuse custom rules of this kind.
		return errParam("custom postcontent push rules cannot be created")
	}
	if err := validateRuleID(ruleID); err != nil {
		return err
	}
	m, err := parseObject(body)
	if err != nil {
		return err
	}
	rawActions, ok := m["actions"]
	if !ok {
		return errBadJSON("missing actions")
	}
	actions, err := decodeActions(rawActions)
	if err != nil {
		return err
	}
	rule := Rule{RuleID: ruleID, Enabled: true, Actions: actions}

	switch kind {
	case KindOverride, KindUnderride:
		rule.Conditions = []Condition{}
		if raw, ok := m["conditions"]; ok && !isNull(raw) {
			var rawConds []json.RawMessage
			if json.Unmarshal(raw, &rawConds) != nil {
				return errBadJSON("conditions must be an array")
			}
			for _, rc := range rawConds {
				var cm map[string]json.RawMessage
				if json.Unmarshal(rc, &cm) != nil || cm == nil {
					return errBadJSON("conditions must be objects")
				}
				if err := validateCondition(cm); err != nil {
					return err
				}
				var c Condition
				if err := json.Unmarshal(rc, &c); err != nil {
					return errBadJSON("invalid condition")
				}
				rule.Conditions = append(rule.Conditions, c)
			}
		}
	case KindContent:
		raw, ok := m["pattern"]
		if !ok {
			return errBadJSON("content rules require a pattern")
		}
		if json.Unmarshal(raw, &rule.Pattern) != nil || rule.Pattern == "" {
			return errBadJSON("pattern must be a non-empty string")
		}
	}

	// Position: before takes precedence over after, per the spec.
	rel, isBefore := before, true
	if rel == "" {
		rel, isBefore = after, false
	}
	if strings.HasPrefix(rel, ".") {
		return errParam("cannot position a rule relative to a server-default rule: " + rel)
	}

	list := u.list(kind)
	idx := indexOf(*list, ruleID)
	if idx >= 0 {
		rule.Enabled = (*list)[idx].Enabled
	}
	if rel == "" || (rel == ruleID && idx >= 0) {
		if idx >= 0 {
			(*list)[idx] = rule
		} else {
			*list = append([]Rule{rule}, *list...)
		}
		return nil
	}
	if indexOf(*list, rel) < 0 {
		// Spec example and Synapse: 400 M_UNKNOWN for a missing anchor.
		return &Error{Code: CodeUnknown, Status: 400, Msg: "before/after rule not found: " + rel}
	}
	rest := make([]Rule, 0, len(*list)+1)
	for _, r := range *list {
		if r.RuleID != ruleID {
			rest = append(rest, r)
		}
	}
	at := indexOf(rest, rel)
	if !isBefore {
		at++
	}
	rest = append(rest[:at], append([]Rule{rule}, rest[at:]...)...)
	*list = rest
	return nil
}

// Delete removes a user-defined rule. Server-default rules cannot be
// deleted; like Synapse, that is reported as 404 since no such user rule
// exists.
func (u *UserRules) Delete(kind, ruleID string) error {
	if !ValidKind(kind) {
		return errKind(kind)
	}
	if strings.HasPrefix(ruleID, ".") {
		return errNotFound("server-default push rules cannot be deleted")
	}
	list := u.list(kind)
	idx := indexOf(*list, ruleID)
	if idx < 0 {
		return errNotFound("push rule not found")
	}
	*list = append((*list)[:idx:idx], (*list)[idx+1:]...)
	return nil
}

// change returns the DefaultChange slot for a server-default rule, creating
// it, or a 404 if no such default exists.
func (u *UserRules) change(kind, ruleID string) (*DefaultChange, error) {
	if !IsDefault(kind, ruleID) {
		return nil, errNotFound("push rule not found")
	}
	if u.Defaults == nil {
		u.Defaults = map[string]map[string]DefaultChange{}
	}
	if u.Defaults[kind] == nil {
		u.Defaults[kind] = map[string]DefaultChange{}
	}
	ch := u.Defaults[kind][ruleID]
	return &ch, nil
}

// SetEnabled enables or disables a user-defined or server-default rule.
func (u *UserRules) SetEnabled(kind, ruleID string, enabled bool) error {
	return u.modify(kind, ruleID,
		func(ch *DefaultChange) { ch.Enabled = &enabled },
		func(r *Rule) { r.Enabled = enabled })
}

// SetActions replaces the actions of a user-defined or server-default rule.
func (u *UserRules) SetActions(kind, ruleID string, actions Actions) error {
	if ValidKind(kind) {
		if err := validateActions(actions); err != nil {
			return err
		}
	}
	actions = append(Actions{}, actions...)
	return u.modify(kind, ruleID,
		func(ch *DefaultChange) { ch.Actions = &actions },
		func(r *Rule) { r.Actions = actions })
}

// modify applies a change to a server-default rule (recorded as an
// override) or to a user-defined rule.
func (u *UserRules) modify(kind, ruleID string, onDefault func(*DefaultChange), onUser func(*Rule)) error {
	if !ValidKind(kind) {
		return errKind(kind)
	}
	if strings.HasPrefix(ruleID, ".") {
		ch, err := u.change(kind, ruleID)
		if err != nil {
			return err
		}
		onDefault(ch)
		u.Defaults[kind][ruleID] = *ch
		return nil
	}
	list := *u.list(kind)
	idx := indexOf(list, ruleID)
	if idx < 0 {
		return errNotFound("push rule not found")
	}
	onUser(&list[idx])
	return nil
}

// ParseEnabled decodes the PUT .../enabled body {"enabled": bool}. A bare
// boolean is also accepted, as Synapse does for older clients.
func ParseEnabled(body []byte) (bool, error) {
	if !json.Valid(body) || !utf8.Valid(body) {
		return false, &Error{Code: CodeNotJSON, Status: 400, Msg: "content not JSON"}
	}
	var b bool
	if !isNull(body) && json.Unmarshal(body, &b) == nil {
		return b, nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil || m == nil {
		return false, errBadJSON("body must be a JSON object")
	}
	raw, ok := m["enabled"]
	if !ok {
		return false, errBadJSON("missing enabled")
	}
	if json.Unmarshal(raw, &b) != nil || isNull(raw) {
		return false, errBadJSON("enabled must be a boolean")
	}
	return b, nil
}

// ParseActions decodes and validates the PUT .../actions body {"actions": [...]}.
func ParseActions(body []byte) (Actions, error) {
	m, err := parseObject(body)
	if err != nil {
		return nil, err
	}
	raw, ok := m["actions"]
	if !ok {
		return nil, errBadJSON("missing actions")
	}
	return decodeActions(raw)
}
