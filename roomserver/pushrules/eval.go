package pushrules

// Push rule evaluation (spec v1.19, "Push Notifications" module, sections
// "Push Rules", "Actions" and "Conditions"; appendices "Glob-style
// matching" and "Dot-separated property paths").
//
// An Event is flattened once per event and then evaluated against every
// recipient's ruleset; Evaluate itself does not allocate in the common case.

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/bits"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// EvalContext is what conditions need besides the event.
type EvalContext struct {
	UserID           string // the recipient
	DisplayName      string // the recipient's display name in the room ("" if none)
	MemberCount      int    // joined members of the room
	SenderPowerLevel int64
	// NotificationPowerLevels is the "notifications" object of the room's
	// m.room.power_levels content. A missing key (or a nil map) requires 50,
	// the spec default for "room".
	NotificationPowerLevels map[string]int64
	// InThread: the event is a reply in a thread (m.thread relation);
	// ThreadSubscribed: the recipient is subscribed to that thread (MSC4306).
	InThread         bool
	ThreadSubscribed bool
}

// Result is the outcome of evaluating a ruleset against an event.
type Result struct {
	Notify    bool   // the matched rule has a "notify" action
	Highlight bool   // a highlight tweak is set (no value means true)
	Sound     string // the sound tweak value, "" if none
	// Actions are the matched rule's actions with the historical
	// "dont_notify" and "coalesce" stripped. It may share the rule's backing
	// array: treat it as read-only.
	Actions Actions
	RuleID  string // "" if no rule matched
	Kind    string // kind of the matched rule, "" if none
}

// The JSON kinds a flattened property can have. Only the kinds the spec's
// conditions can observe are kept: strings, integers, booleans, null and
// arrays of those (compound and float values are dropped).
const (
	valString uint8 = iota + 1
	valInt
	valBool
	valNull
	valArray
)

type value struct {
	kind uint8
	b    bool
	i    int64
	s    string
	arr  []value // valArray: the array's scalar elements, in order
}

// Event is a flattened, read-only view of an event, prepared once with
// NewEvent and shared by the evaluations for every recipient. It is safe for
// concurrent use.
type Event struct {
	// props maps each property's dot-separated path, with '.' and '\' in
	// property names escaped by a backslash, to its value.
	props       map[string]value
	roomID      string
	sender      string
	evType      string
	body        string
	hasBody     bool
	hasMentions bool
}

// NewEvent flattens an event (PDU or client format) for evaluation.
func NewEvent(eventJSON []byte) (*Event, error) {
	dec := json.NewDecoder(bytes.NewReader(eventJSON))
	dec.UseNumber()
	var top map[string]any
	if err := dec.Decode(&top); err != nil {
		return nil, err
	}
	if top == nil {
		return nil, errors.New("pushrules: event is not a JSON object")
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("pushrules: trailing data after event JSON")
	}
	ev := &Event{props: make(map[string]value, 16)}
	flatten(ev.props, "", top)
	ev.roomID, _ = top["room_id"].(string)
	ev.sender, _ = top["sender"].(string)
	ev.evType, _ = top["type"].(string)
	if content, ok := top["content"].(map[string]any); ok {
		ev.body, ev.hasBody = content["body"].(string)
		// Like Synapse: the presence of the property is what counts, even
		// if it is empty or malformed.
		_, ev.hasMentions = content["m.mentions"]
	}
	return ev, nil
}

// RoomID returns the event's room_id ("" if absent).
func (e *Event) RoomID() string { return e.roomID }

// Sender returns the event's sender ("" if absent).
func (e *Event) Sender() string { return e.sender }

// Type returns the event's type ("" if absent).
func (e *Event) Type() string { return e.evType }

// HasMentions reports whether content has an "m.mentions" property, which
// disables the legacy mention rules (spec v1.7).
func (e *Event) HasMentions() bool { return e.hasMentions }

func flatten(out map[string]value, prefix string, obj map[string]any) {
	for k, v := range obj {
		key := EscapeKey(k)
		if prefix != "" {
			key = prefix + "." + key
		}
		switch v := v.(type) {
		case map[string]any:
			flatten(out, key, v)
		case []any:
			arr := make([]value, 0, len(v))
			for _, el := range v {
				if sv, ok := scalar(el); ok {
					arr = append(arr, sv)
				}
			}
			out[key] = value{kind: valArray, arr: arr}
		default:
			if sv, ok := scalar(v); ok {
				out[key] = sv
			}
		}
	}
}

func scalar(v any) (value, bool) {
	switch v := v.(type) {
	case string:
		return value{kind: valString, s: v}, true
	case bool:
		return value{kind: valBool, b: v}, true
	case nil:
		return value{kind: valNull}, true
	case json.Number:
		if i, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return value{kind: valInt, i: i}, true
		}
	}
	return value{}, false
}

// EscapeKey escapes one property name for use in a dot-separated path:
// '.' and '\' are prefixed with a backslash.
func EscapeKey(name string) string {
	if !strings.ContainsAny(name, `.\`) {
		return name
	}
	var b strings.Builder
	b.Grow(len(name) + 4)
	for i := 0; i < len(name); i++ {
		if c := name[i]; c == '.' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(name[i])
	}
	return b.String()
}

// canonicalPath rewrites a rule's key into the escaping used by the
// flattened event. Per the spec, escape sequences other than `\.` and `\\`
// are literal (`\x` is a backslash then 'x'), so such a backslash becomes
// `\\`. Keys already canonical (the normal case) are returned as-is.
func canonicalPath(key string) string {
	i := strings.IndexByte(key, '\\')
	for i >= 0 && i < len(key) {
		if i+1 < len(key) && (key[i+1] == '.' || key[i+1] == '\\') {
			j := strings.IndexByte(key[i+2:], '\\')
			if j < 0 {
				return key
			}
			i += 2 + j
			continue
		}
		break // a lone backslash: rewrite
	}
	if i < 0 || i >= len(key) {
		return key
	}
	var b strings.Builder
	b.Grow(len(key) + 4)
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c == '\\' {
			if i+1 < len(key) && (key[i+1] == '.' || key[i+1] == '\\') {
				b.WriteByte('\\')
				b.WriteByte(key[i+1])
				i++
				continue
			}
			b.WriteString(`\\`)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func (e *Event) lookup(key string) (value, bool) {
	v, ok := e.props[canonicalPath(key)]
	return v, ok
}

const keyBody = "content.body"

// Evaluate runs the recipient's ruleset against the event: the first
// enabled rule, in kind order override > content > postcontent > room >
// sender > underride, whose conditions all hold decides the actions. No match means
// no notification.
//
// Evaluate does not apply the spec's rule that users are never notified of
// their own events: callers skip the sender.
func Evaluate(rs Ruleset, ev *Event, ctx EvalContext) Result {
	for _, r := range rs.Override {
		if r.Enabled && !legacySkipped(ev, r.RuleID) && matchConditions(r.Conditions, ev, &ctx) {
			return result(KindOverride, r)
		}
	}
	for _, r := range rs.Content {
		if r.Enabled && !legacySkipped(ev, r.RuleID) && r.Pattern != "" &&
			ev.hasBody && globMatch(r.Pattern, ev.body, true, false) {
			return result(KindContent, r)
		}
	}
	for _, r := range rs.PostContent {
		if r.Enabled && matchConditions(r.Conditions, ev, &ctx) {
			return result(KindPostContent, r)
		}
	}
	for _, r := range rs.Room {
		if r.Enabled && ev.roomID != "" && r.RuleID == ev.roomID {
			return result(KindRoom, r)
		}
	}
	for _, r := range rs.Sender {
		if r.Enabled && ev.sender != "" && r.RuleID == ev.sender {
			return result(KindSender, r)
		}
	}
	for _, r := range rs.Underride {
		if r.Enabled && matchConditions(r.Conditions, ev, &ctx) {
			return result(KindUnderride, r)
		}
	}
	return Result{}
}

// legacySkipped: the pre-v1.7 mention rules are disabled for events that
// carry m.mentions. User rule IDs cannot start with '.', so the ID alone
// identifies them.
func legacySkipped(ev *Event, ruleID string) bool {
	if !ev.hasMentions {
		return false
	}
	switch ruleID {
	case RuleContainsDisplayName, RuleRoomNotif, RuleContainsUserName:
		return true
	}
	return false
}

func matchConditions(conds []Condition, ev *Event, ctx *EvalContext) bool {
	for i := range conds {
		if !matchCondition(&conds[i], ev, ctx) {
			return false
		}
	}
	return true
}

func matchCondition(c *Condition, ev *Event, ctx *EvalContext) bool {
	switch c.Kind {
	case CondEventMatch:
		v, ok := ev.lookup(c.Key)
		if !ok || v.kind != valString {
			return false
		}
		return globMatch(c.Pattern, v.s, c.Key == keyBody, false)
	case CondEventPropertyIs:
		v, ok := ev.lookup(c.Key)
		return ok && v.kind != valArray && rawEquals(c.Value, v)
	case CondEventPropertyContains:
		v, ok := ev.lookup(c.Key)
		if !ok || v.kind != valArray {
			return false
		}
		for _, el := range v.arr {
			if rawEquals(c.Value, el) {
				return true
			}
		}
		return false
	case CondContainsDisplayName:
		// An empty display name would match everywhere; never match.
		return ctx.DisplayName != "" && ev.hasBody && globMatch(ctx.DisplayName, ev.body, true, true)
	case CondRoomMemberCount:
		return memberCountMatches(c.Is, ctx.MemberCount)
	case CondSenderNotificationPermission:
		need, ok := ctx.NotificationPowerLevels[c.Key]
		if !ok {
			need = 50
		}
		return ctx.SenderPowerLevel >= need
	case CondThreadSubscription:
		if !ctx.InThread {
			return false
		}
		want := bytes.TrimSpace(c.Extra["subscribed"])
		return bytes.Equal(want, jsonTrue) == ctx.ThreadSubscribed &&
			(bytes.Equal(want, jsonTrue) || bytes.Equal(want, jsonFalse))
	}
	return false // unknown kinds never match
}

var jsonTrue, jsonFalse = []byte("true"), []byte("false")

// rawEquals compares a condition's JSON value with an event scalar exactly,
// without casting between types. A missing or compound value never matches.
func rawEquals(raw json.RawMessage, v value) bool {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return false
	}
	switch raw[0] {
	case 'n':
		return v.kind == valNull && string(raw) == "null"
	case 't':
		return v.kind == valBool && v.b && string(raw) == "true"
	case 'f':
		return v.kind == valBool && !v.b && string(raw) == "false"
	case '"':
		if v.kind != valString {
			return false
		}
		if len(raw) >= 2 && raw[len(raw)-1] == '"' && bytes.IndexByte(raw, '\\') < 0 {
			return string(raw[1:len(raw)-1]) == v.s
		}
		var s string
		return json.Unmarshal(raw, &s) == nil && s == v.s
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		if v.kind != valInt {
			return false
		}
		i, err := strconv.ParseInt(string(raw), 10, 64)
		return err == nil && i == v.i
	}
	return false
}

// memberCountMatches evaluates room_member_count's "is": an integer with an
// optional ==, <, >, <= or >= prefix (none means ==). Malformed never matches.
func memberCountMatches(is string, count int) bool {
	op := ""
	for _, p := range [...]string{"==", "<=", ">=", "<", ">"} {
		if strings.HasPrefix(is, p) {
			op = p
			break
		}
	}
	digits := is[len(op):]
	if digits == "" {
		return false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return false
		}
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return false
	}
	c := int64(count)
	switch op {
	case "<":
		return c < n
	case ">":
		return c > n
	case "<=":
		return c <= n
	case ">=":
		return c >= n
	}
	return c == n
}

func result(kind string, r Rule) Result {
	res := Result{Actions: r.Actions, RuleID: r.RuleID, Kind: kind}
	legacy := false
	for _, a := range r.Actions {
		switch a := a.(type) {
		case string:
			switch a {
			case "notify":
				res.Notify = true
			case "dont_notify", "coalesce":
				legacy = true
			}
		case map[string]any:
			switch a["set_tweak"] {
			case "highlight":
				res.Highlight = highlightValue(a)
			case "sound":
				res.Sound, _ = a["value"].(string)
			}
		}
	}
	if legacy {
		kept := make(Actions, 0, len(r.Actions))
		for _, a := range r.Actions {
			if s, ok := a.(string); ok && (s == "dont_notify" || s == "coalesce") {
				continue
			}
			kept = append(kept, a)
		}
		res.Actions = kept
	}
	return res
}

// highlightValue: an omitted value means true (spec); otherwise the value's
// truthiness, as Synapse reads it.
func highlightValue(a map[string]any) bool {
	v, ok := a["value"]
	if !ok {
		return true
	}
	switch v := v.(type) {
	case bool:
		return v
	case nil:
		return false
	case string:
		return v != ""
	case json.Number:
		f, err := v.Float64()
		return err != nil || f != 0
	case float64:
		return v != 0
	}
	return true
}

// literalWordMatch reports whether pattern occurs case-insensitively in s,
// starting and ending at word boundaries.
func literalWordMatch(pattern, s string) bool {
	if pattern == "" {
		return true // the start of s is a boundary
	}
	prevWord := false
	for i := 0; i < len(s); {
		c := s[i]
		size := 1
		curWord := false
		if c < utf8.RuneSelf {
			curWord = isWordByte(c)
		} else {
			_, size = utf8.DecodeRuneInString(s[i:])
		}
		if i == 0 || !prevWord || !curWord {
			if n, ok := prefixFold(s[i:], pattern); ok {
				end := i + n
				if end == len(s) || !isWordByte(s[end]) || !isWordByte(s[end-1]) {
					return true
				}
			}
		}
		prevWord = curWord
		i += size
	}
	return false
}

// prefixFold reports whether s starts with pattern case-insensitively and
// how many bytes of s the match covers.
func prefixFold(s, pattern string) (int, bool) {
	i := 0
	for j := 0; j < len(pattern); {
		if i >= len(s) {
			return 0, false
		}
		pr, ps := rune(pattern[j]), 1
		if pr >= utf8.RuneSelf {
			pr, ps = utf8.DecodeRuneInString(pattern[j:])
		}
		r, rs := rune(s[i]), 1
		if r >= utf8.RuneSelf {
			r, rs = utf8.DecodeRuneInString(s[i:])
		}
		if !foldEq(pr, r) {
			return 0, false
		}
		i += rs
		j += ps
	}
	return i, true
}

// isWordByte reports whether c is in [A-Za-z0-9_]; the spec defines a word
// boundary as the start or end of the value or any other character.
func isWordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// foldEq compares two runes case-insensitively (Unicode simple folding, as
// strings.EqualFold).
func foldEq(a, b rune) bool {
	if a == b {
		return true
	}
	if a < utf8.RuneSelf && b < utf8.RuneSelf {
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		return a == b
	}
	for f := unicode.SimpleFold(a); f != a; f = unicode.SimpleFold(f) {
		if f == b {
			return true
		}
	}
	return false
}

// globMatch matches pattern against s case-insensitively. '*' matches zero
// or more characters and '?' exactly one, unless literal is set. With word
// set, the pattern may match any substring of s that starts and ends at a
// word boundary (the content.body rule); otherwise it must match all of s.
//
// Patterns without wildcards take a direct case-insensitive scan. Wildcard
// patterns run on a simulation of the pattern's NFA (states are byte offsets
// into pattern) in one pass over s: O(len(s) * len(pattern)) at worst, with
// no backtracking blow-up on hostile bodies and no allocation for patterns
// of up to 127 bytes.
func globMatch(pattern, s string, word, literal bool) bool {
	if !literal && !strings.ContainsAny(pattern, "*?") {
		literal = true
	}
	if literal {
		if !word {
			return strings.EqualFold(pattern, s)
		}
		return literalWordMatch(pattern, s)
	}
	return nfaMatch(pattern, s, word)
}

// nfaMatch is globMatch for patterns with wildcards.
func nfaMatch(pattern, s string, word bool) bool {
	m := len(pattern)
	n := (m + 1 + 63) / 64 // words per state set (offsets 0..m)
	var buf [4]uint64
	var sets []uint64
	if 2*n <= len(buf) {
		sets = buf[:2*n]
	} else {
		sets = make([]uint64, 2*n)
	}
	cur, next := sets[:n], sets[n:]
	has := func(set []uint64, k int) bool { return set[k>>6]&(1<<(uint(k)&63)) != 0 }
	add := func(set []uint64, k int) {
		// Add k plus its epsilon closure: a '*' may match nothing.
		for {
			set[k>>6] |= 1 << (uint(k) & 63)
			if k >= m || pattern[k] != '*' {
				return
			}
			k++
		}
	}
	empty := func(set []uint64) bool {
		for _, w := range set {
			if w != 0 {
				return false
			}
		}
		return true
	}

	prevWord := false // word-ness of the character before position i
	for i := 0; ; {
		var r rune
		size := 0
		curWord := false
		if i < len(s) {
			if c := s[i]; c < utf8.RuneSelf {
				r, size = rune(c), 1
				curWord = isWordByte(c)
			} else {
				r, size = utf8.DecodeRuneInString(s[i:])
			}
		}
		// A boundary lies at i unless it splits two word characters.
		boundary := i == 0 || i == len(s) || !prevWord || !curWord
		if i == 0 || (word && boundary) {
			add(cur, 0)
		}
		if has(cur, m) && i == len(s) || word && boundary && has(cur, m) {
			return true
		}
		if i == len(s) || empty(cur) && !word {
			return false
		}
		clear(next)
		for w, b := range cur {
			for b != 0 {
				k := w<<6 | bits.TrailingZeros64(b)
				b &= b - 1
				if k >= m {
					continue
				}
				pc := pattern[k]
				if pc == '*' {
					add(next, k) // '*' consumes r and stays
					continue
				}
				if pc == '?' {
					add(next, k+1)
					continue
				}
				var pr rune
				psize := 1
				if pc < utf8.RuneSelf {
					pr = rune(pc)
				} else {
					pr, psize = utf8.DecodeRuneInString(pattern[k:])
				}
				if foldEq(pr, r) {
					add(next, k+psize)
				}
			}
		}
		cur, next = next, cur
		prevWord = curWord
		i += size
	}
}
