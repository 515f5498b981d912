// Package pushrules holds the data model of Matrix push rules (spec v1.19,
// "Push Notifications" module): the server-default ruleset, the per-user
// persisted state, and the mutations behind the /pushrules endpoints.
//
// It is pure logic: no HTTP and no storage. Errors carry the Matrix errcode
// and HTTP status the handler should send.
package pushrules

import (
	"bytes"
	"encoding/json"
	"sort"
)

// Rule kinds, in the order the spec evaluates them. postcontent (MSC4306,
// thread subscriptions) sits between content and room and holds only
// server-default rules.
const (
	KindOverride    = "override"
	KindContent     = "content"
	KindPostContent = "postcontent"
	KindRoom        = "room"
	KindSender      = "sender"
	KindUnderride   = "underride"
)

// Kinds lists every rule kind in priority order.
var Kinds = []string{KindOverride, KindContent, KindPostContent, KindRoom, KindSender, KindUnderride}

// ValidKind reports whether kind is one of the rule kinds.
func ValidKind(kind string) bool {
	switch kind {
	case KindOverride, KindContent, KindPostContent, KindRoom, KindSender, KindUnderride:
		return true
	}
	return false
}

// hasConditions reports whether rules of this kind carry an explicit
// `conditions` array (room/sender/content rules have implicit ones).
func hasConditions(kind string) bool {
	return kind == KindOverride || kind == KindPostContent || kind == KindUnderride
}

// Matrix error codes used by this package.
const (
	CodeNotFound     = "M_NOT_FOUND"
	CodeInvalidParam = "M_INVALID_PARAM"
	CodeBadJSON      = "M_BAD_JSON"
	CodeNotJSON      = "M_NOT_JSON"
	CodeUnknown      = "M_UNKNOWN"
)

// Error is a client-facing failure: Code is the Matrix errcode, Status the
// HTTP status and Msg the human-readable "error" string.
type Error struct {
	Code   string
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Code + ": " + e.Msg }

func errNotFound(msg string) *Error { return &Error{Code: CodeNotFound, Status: 404, Msg: msg} }
func errBadJSON(msg string) *Error  { return &Error{Code: CodeBadJSON, Status: 400, Msg: msg} }
func errParam(msg string) *Error    { return &Error{Code: CodeInvalidParam, Status: 400, Msg: msg} }

func errKind(kind string) *Error { return errParam("unknown push rule kind: " + kind) }

// Condition kinds defined by the spec.
const (
	CondEventMatch                   = "event_match"
	CondEventPropertyIs              = "event_property_is"
	CondEventPropertyContains        = "event_property_contains"
	CondContainsDisplayName          = "contains_display_name"
	CondRoomMemberCount              = "room_member_count"
	CondSenderNotificationPermission = "sender_notification_permission"
	// CondThreadSubscription (MSC4306, unstable name) holds for events in a
	// thread the recipient is ("subscribed": true) or is not (false)
	// subscribed to.
	CondThreadSubscription = "io.element.msc4306.thread_subscription"
)

// Condition is one push rule condition. Value is kept as raw JSON so that an
// explicit `"value": null` (valid for event_property_is) survives, distinct
// from an absent value. Extra keeps any other keys (e.g. from unstable MSC
// condition kinds) so user rules round-trip unchanged.
type Condition struct {
	Kind    string                     `json:"kind"`
	Key     string                     `json:"key,omitempty"`
	Pattern string                     `json:"pattern,omitempty"`
	Is      string                     `json:"is,omitempty"`
	Value   json.RawMessage            `json:"value,omitempty"`
	Extra   map[string]json.RawMessage `json:"-"`
}

// forced reports whether a string field must be emitted even when empty,
// because the condition kind requires it (e.g. tombstone's `"pattern": ""`).
func forced(kind, field string) bool {
	switch field {
	case "key":
		switch kind {
		case CondEventMatch, CondEventPropertyIs, CondEventPropertyContains, CondSenderNotificationPermission:
			return true
		}
	case "pattern":
		return kind == CondEventMatch
	case "is":
		return kind == CondRoomMemberCount
	}
	return false
}

// MarshalJSON writes the spec shape: kind-required fields always, optional
// ones only when set, then any preserved extra keys.
func (c Condition) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	emitted := map[string]bool{}
	write := func(k string, raw []byte) {
		if len(emitted) > 0 {
			buf.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		buf.Write(kb)
		buf.WriteByte(':')
		buf.Write(raw)
		emitted[k] = true
	}
	str := func(k, v string) {
		b, _ := json.Marshal(v)
		write(k, b)
	}
	if _, extraKind := c.Extra["kind"]; c.Kind != "" || !extraKind {
		str("kind", c.Kind)
	}
	for _, f := range []struct{ name, val string }{{"key", c.Key}, {"pattern", c.Pattern}, {"is", c.Is}} {
		if f.val != "" || forced(c.Kind, f.name) {
			str(f.name, f.val)
		}
	}
	if len(c.Value) > 0 {
		write("value", c.Value)
	}
	keys := make([]string, 0, len(c.Extra))
	for k := range c.Extra {
		if !emitted[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		write(k, c.Extra[k])
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// UnmarshalJSON is lenient: anything that does not fit a typed field (wrong
// JSON type, or an empty string the marshaller would drop) goes to Extra, so
// stored data is never lost; Put validates separately.
func (c *Condition) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*c = Condition{}
	take := func(field string, dst *string, allowEmpty func() bool) {
		raw, ok := m[field]
		if !ok {
			return
		}
		var s string
		if json.Unmarshal(raw, &s) != nil || (s == "" && !allowEmpty()) {
			return
		}
		*dst = s
		delete(m, field)
	}
	take("kind", &c.Kind, func() bool { return false })
	for _, f := range []struct {
		name string
		dst  *string
	}{{"key", &c.Key}, {"pattern", &c.Pattern}, {"is", &c.Is}} {
		name := f.name
		take(name, f.dst, func() bool { return forced(c.Kind, name) })
	}
	if raw, ok := m["value"]; ok {
		c.Value = compact(raw)
		delete(m, "value")
	}
	if len(m) > 0 {
		c.Extra = make(map[string]json.RawMessage, len(m))
		for k, v := range m {
			c.Extra[k] = compact(v)
		}
	}
	return nil
}

func compact(raw []byte) json.RawMessage {
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil {
		return append(json.RawMessage(nil), raw...)
	}
	return buf.Bytes()
}

// Actions is a rule's action list: strings ("notify", legacy "dont_notify"
// / "coalesce") and objects ({"set_tweak": ..., "value": ...}). It always
// marshals as an array, never null, and decodes numbers as json.Number so
// tweak values keep their exact form.
type Actions []any

func (a Actions) MarshalJSON() ([]byte, error) {
	if a == nil {
		return []byte("[]"), nil
	}
	return json.Marshal([]any(a))
}

func (a *Actions) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v []any
	if err := dec.Decode(&v); err != nil {
		return err
	}
	if v == nil {
		v = []any{}
	}
	*a = v
	return nil
}

// Rule is one push rule as served by GET /pushrules/. Conditions is only
// emitted when non-nil: override/underride rules keep a non-nil (possibly
// empty) slice, content/room/sender rules keep it nil. Pattern is for
// content rules only.
type Rule struct {
	RuleID     string      `json:"rule_id"`
	Default    bool        `json:"default"`
	Enabled    bool        `json:"enabled"`
	Actions    Actions     `json:"actions"`
	Conditions []Condition `json:"conditions,omitempty"`
	Pattern    string      `json:"pattern,omitempty"`
}

func (r Rule) MarshalJSON() ([]byte, error) {
	type wire struct {
		RuleID     string       `json:"rule_id"`
		Default    bool         `json:"default"`
		Enabled    bool         `json:"enabled"`
		Actions    Actions      `json:"actions"`
		Conditions *[]Condition `json:"conditions,omitempty"`
		Pattern    string       `json:"pattern,omitempty"`
	}
	w := wire{RuleID: r.RuleID, Default: r.Default, Enabled: r.Enabled, Actions: r.Actions, Pattern: r.Pattern}
	if r.Conditions != nil {
		w.Conditions = &r.Conditions
	}
	return json.Marshal(w)
}

// clone deep-copies the slices of r so callers may mutate the result.
func (r Rule) clone() Rule {
	if r.Actions != nil {
		r.Actions = append(Actions{}, r.Actions...)
	}
	if r.Conditions != nil {
		r.Conditions = append([]Condition{}, r.Conditions...)
	}
	return r
}

// Ruleset is the "global" push ruleset. It always marshals every kind's array.
type Ruleset struct {
	Override    []Rule `json:"override"`
	Content     []Rule `json:"content"`
	PostContent []Rule `json:"postcontent"`
	Room        []Rule `json:"room"`
	Sender      []Rule `json:"sender"`
	Underride   []Rule `json:"underride"`
}

func (rs Ruleset) MarshalJSON() ([]byte, error) {
	type plain Ruleset // drops the method, avoiding recursion
	p := plain(rs)
	for _, l := range []*[]Rule{&p.Override, &p.Content, &p.PostContent, &p.Room, &p.Sender, &p.Underride} {
		if *l == nil {
			*l = []Rule{}
		}
	}
	return json.Marshal(p)
}

// list returns a pointer to the slice for kind, or nil for an unknown kind.
func (rs *Ruleset) list(kind string) *[]Rule {
	switch kind {
	case KindOverride:
		return &rs.Override
	case KindContent:
		return &rs.Content
	case KindPostContent:
		return &rs.PostContent
	case KindRoom:
		return &rs.Room
	case KindSender:
		return &rs.Sender
	case KindUnderride:
		return &rs.Underride
	}
	return nil
}

// Rules returns the rules of one kind, in priority order
// (GET /pushrules/global/{kind}/).
func (rs Ruleset) Rules(kind string) ([]Rule, error) {
	l := rs.list(kind)
	if l == nil {
		return nil, errKind(kind)
	}
	if *l == nil {
		return []Rule{}, nil
	}
	return *l, nil
}

// Get returns one rule, user-defined or server-default.
func (rs Ruleset) Get(kind, ruleID string) (Rule, error) {
	rules, err := rs.Rules(kind)
	if err != nil {
		return Rule{}, err
	}
	for _, r := range rules {
		if r.RuleID == ruleID {
			return r, nil
		}
	}
	return Rule{}, errNotFound("push rule not found")
}

// GetEnabled returns whether a rule is enabled.
func (rs Ruleset) GetEnabled(kind, ruleID string) (bool, error) {
	r, err := rs.Get(kind, ruleID)
	return r.Enabled, err
}

// GetActions returns a rule's actions (never nil on success).
func (rs Ruleset) GetActions(kind, ruleID string) (Actions, error) {
	r, err := rs.Get(kind, ruleID)
	if err != nil {
		return nil, err
	}
	if r.Actions == nil {
		return Actions{}, nil
	}
	return r.Actions, nil
}
