// Package appservice implements the Application Service API: the
// registration files of bridges and bots (Synapse's format), the
// appservice side of authentication (as_token, masquerading as namespace
// users and their devices), the persisted transaction sender that pushes
// events, ephemeral data and to-device messages to each appservice, and
// the queries the homeserver asks of them (users, aliases, third-party
// protocols, ping).
package appservice

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"regexp/syntax"
	"strings"

	"gopkg.in/yaml.v3"
)

// Namespace is one entry of a registration's users, aliases or rooms list.
type Namespace struct {
	Exclusive bool   `yaml:"exclusive" json:"exclusive"`
	Regex     string `yaml:"regex" json:"regex"`
	re        *regexp.Regexp
}

// Matches reports whether s matches the namespace (as Synapse's re.match:
// anchored at the start only).
func (n *Namespace) Matches(s string) bool { return n.re.MatchString(s) }

// Namespaces are the IDs an appservice is interested in.
type Namespaces struct {
	Users   []Namespace `yaml:"users" json:"users"`
	Aliases []Namespace `yaml:"aliases" json:"aliases"`
	Rooms   []Namespace `yaml:"rooms" json:"rooms"`
}

// Registration is one appservice registration file.
type Registration struct {
	ID              string     `yaml:"id"`
	URL             *string    `yaml:"url"`
	ASToken         string     `yaml:"as_token"`
	HSToken         string     `yaml:"hs_token"`
	SenderLocalpart string     `yaml:"sender_localpart"`
	Namespaces      Namespaces `yaml:"namespaces"`
	// RateLimited: nil means true (the spec's default).
	RateLimited      *bool    `yaml:"rate_limited"`
	Protocols        []string `yaml:"protocols"`
	ReceiveEphemeral bool     `yaml:"receive_ephemeral"`
	// PushEphemeral is MSC2409's unstable name of ReceiveEphemeral.
	PushEphemeral bool `yaml:"de.sorunome.msc2409.push_ephemeral"`
	// MSC4190: the appservice manages its users' devices itself (PUT and
	// DELETE /devices), and may not log them in.
	MSC4190 bool `yaml:"io.element.msc4190"`
	// MSC3202: device masquerading, and device lists and key counts in
	// transactions.
	MSC3202 bool `yaml:"org.matrix.msc3202"`

	// File is where the registration was read from.
	File string `yaml:"-"`
	// SenderID is the full user ID of sender_localpart.
	SenderID string `yaml:"-"`
}

// Ephemeral reports whether the appservice wants typing, receipts,
// presence and to-device messages.
func (r *Registration) Ephemeral() bool { return r.ReceiveEphemeral || r.PushEphemeral }

// IsRateLimited reports whether the appservice's users are rate limited.
func (r *Registration) IsRateLimited() bool { return r.RateLimited == nil || *r.RateLimited }

// PushURL is the appservice's base URL ("" when it takes no pushes).
func (r *Registration) PushURL() string {
	if r.URL == nil {
		return ""
	}
	return strings.TrimRight(*r.URL, "/")
}

// IsUserInNamespace reports whether userID is the appservice's sender or
// matches one of its user namespaces.
func (r *Registration) IsUserInNamespace(userID string) bool {
	return userID == r.SenderID || matchAny(r.Namespaces.Users, userID, false)
}

// IsExclusiveUser reports whether userID is the sender or in one of the
// appservice's exclusive user namespaces.
func (r *Registration) IsExclusiveUser(userID string) bool {
	return userID == r.SenderID || matchAny(r.Namespaces.Users, userID, true)
}

// IsAliasInNamespace reports whether alias matches an alias namespace.
func (r *Registration) IsAliasInNamespace(alias string) bool {
	return matchAny(r.Namespaces.Aliases, alias, false)
}

// IsExclusiveAlias reports whether alias is in an exclusive alias namespace.
func (r *Registration) IsExclusiveAlias(alias string) bool {
	return matchAny(r.Namespaces.Aliases, alias, true)
}

// IsRoomInNamespace reports whether roomID matches a room namespace.
func (r *Registration) IsRoomInNamespace(roomID string) bool {
	return matchAny(r.Namespaces.Rooms, roomID, false)
}

func matchAny(ns []Namespace, s string, exclusiveOnly bool) bool {
	for i := range ns {
		if (!exclusiveOnly || ns[i].Exclusive) && ns[i].Matches(s) {
			return true
		}
	}
	return false
}

// LoadFile reads and checks one registration file of serverName.
func LoadFile(path, serverName string) (*Registration, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("appservice registration %s: %w", path, err)
	}
	r, err := Parse(raw, serverName)
	if err != nil {
		return nil, fmt.Errorf("appservice registration %s: %w", path, err)
	}
	r.File = path
	return r, nil
}

// Parse reads and checks one registration.
func Parse(raw []byte, serverName string) (*Registration, error) {
	var r Registration
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("not a valid registration: %w", err)
	}
	if err := r.check(serverName); err != nil {
		return nil, err
	}
	return &r, nil
}

func (r *Registration) check(serverName string) error {
	for key, v := range map[string]string{"id": r.ID, "as_token": r.ASToken, "hs_token": r.HSToken, "sender_localpart": r.SenderLocalpart} {
		if strings.TrimSpace(v) == "" {
			return fmt.Errorf("%s is missing", key)
		}
	}
	if r.ASToken == r.HSToken {
		return errors.New("as_token and hs_token must differ")
	}
	if !validLocalpart(r.SenderLocalpart) {
		return fmt.Errorf("sender_localpart %q is not a valid user ID localpart", r.SenderLocalpart)
	}
	r.SenderID = "@" + r.SenderLocalpart + ":" + serverName
	if u := r.PushURL(); u != "" {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("url %q is not an http(s) URL", *r.URL)
		}
	}
	for _, l := range []struct {
		name string
		ns   []Namespace
	}{{"users", r.Namespaces.Users}, {"aliases", r.Namespaces.Aliases}, {"rooms", r.Namespaces.Rooms}} {
		for i := range l.ns {
			n := &l.ns[i]
			if n.Regex == "" {
				return fmt.Errorf("namespaces.%s[%d] has no regex", l.name, i)
			}
			re, err := regexp.Compile(`^(?:` + n.Regex + `)`)
			if err != nil {
				return fmt.Errorf("namespaces.%s[%d] regex %q: %w", l.name, i, n.Regex, err)
			}
			n.re = re
		}
	}
	for _, p := range r.Protocols {
		if p == "" || strings.ContainsAny(p, "/ ") {
			return fmt.Errorf("protocol %q is not a valid protocol name", p)
		}
	}
	return nil
}

func validLocalpart(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.ContainsRune("._=-/+", c)) {
			return false
		}
	}
	return true
}

// checkSet refuses registrations that cannot live together: the same ID or
// token twice, or an exclusive namespace overlapping another appservice's.
func checkSet(regs []*Registration) error {
	ids, tokens := map[string]string{}, map[string]string{}
	for _, r := range regs {
		if f, ok := ids[r.ID]; ok {
			return fmt.Errorf("appservice registration %s: id %q is already used by %s", r.File, r.ID, f)
		}
		ids[r.ID] = r.File
		for _, t := range []string{r.ASToken, r.HSToken} {
			if f, ok := tokens[t]; ok {
				return fmt.Errorf("appservice registration %s: a token is already used by %s", r.File, f)
			}
			tokens[t] = r.File
		}
	}
	for i, a := range regs {
		for _, b := range regs[i+1:] {
			if err := overlap(a, b); err != nil {
				return err
			}
		}
	}
	return nil
}

// overlap reports an exclusive namespace of one appservice that another's
// namespaces (or sender) also claim. Regex overlap is undecidable in
// general: a namespace overlaps another when an ID built to match one
// matches the other (which catches equal regexes and the usual prefix
// patterns, `@telegram_.*` against `@tele.*`).
func overlap(a, b *Registration) error {
	kinds := []struct {
		name   string
		na, nb []Namespace
	}{{"users", a.Namespaces.Users, b.Namespaces.Users}, {"aliases", a.Namespaces.Aliases, b.Namespaces.Aliases}, {"rooms", a.Namespaces.Rooms, b.Namespaces.Rooms}}
	for _, k := range kinds {
		for i := range k.na {
			for j := range k.nb {
				x, y := &k.na[i], &k.nb[j]
				if !x.Exclusive && !y.Exclusive {
					continue
				}
				if witnessMatches(x, y) || witnessMatches(y, x) {
					return fmt.Errorf("appservice registration %s: namespaces.%s regex %q overlaps %q of %s (exclusive namespaces must not overlap)",
						b.File, k.name, y.Regex, x.Regex, a.File)
				}
			}
		}
	}
	if a.IsExclusiveUser(b.SenderID) || b.IsExclusiveUser(a.SenderID) {
		return fmt.Errorf("appservice registration %s: sender %s and %s overlap an exclusive namespace of the other", b.File, b.SenderID, a.File)
	}
	return nil
}

// witnessMatches reports whether an ID built to match x also matches y.
func witnessMatches(x, y *Namespace) bool {
	w, ok := witness(x.Regex)
	return ok && x.Matches(w) && y.Matches(w)
}

// witness builds a short string matching the regex (false when it cannot).
func witness(expr string) (string, bool) {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return "", false
	}
	var b strings.Builder
	if !buildWitness(&b, re.Simplify()) {
		return "", false
	}
	return b.String(), true
}

func buildWitness(b *strings.Builder, re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpLiteral:
		b.WriteString(string(re.Rune))
	case syntax.OpCharClass:
		if len(re.Rune) == 0 {
			return false
		}
		// Prefer a letter from the class, so `.`-like classes give "a".
		c := re.Rune[0]
		for i := 0; i+1 < len(re.Rune); i += 2 {
			if re.Rune[i] <= 'a' && 'a' <= re.Rune[i+1] {
				c = 'a'
				break
			}
		}
		b.WriteRune(c)
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		b.WriteByte('a')
	case syntax.OpCapture:
		return buildWitness(b, re.Sub[0])
	case syntax.OpPlus:
		return buildWitness(b, re.Sub[0])
	case syntax.OpRepeat:
		for range re.Min {
			if !buildWitness(b, re.Sub[0]) {
				return false
			}
		}
	case syntax.OpConcat:
		for _, s := range re.Sub {
			if !buildWitness(b, s) {
				return false
			}
		}
	case syntax.OpAlternate:
		return buildWitness(b, re.Sub[0])
	case syntax.OpStar, syntax.OpQuest, syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine,
		syntax.OpBeginText, syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
	default:
		return false
	}
	return true
}

// Load reads every registration file and checks them together.
func Load(paths []string, serverName string) ([]*Registration, error) {
	regs := make([]*Registration, 0, len(paths))
	for _, p := range paths {
		r, err := LoadFile(p, serverName)
		if err != nil {
			return nil, err
		}
		regs = append(regs, r)
	}
	if err := checkSet(regs); err != nil {
		return nil, err
	}
	return regs, nil
}
