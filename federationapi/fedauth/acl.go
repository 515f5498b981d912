package fedauth

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/httputil"
)

// ACL is a room's server access control list (the content of its
// m.room.server_acl state event).
type ACL struct {
	allow, deny     []string // lower-cased globs
	allowIPLiterals bool
}

// ParseACL reads m.room.server_acl content the way Synapse does: allow and
// deny default to empty (so an ACL without allow denies everyone), entries
// that are not strings are ignored, and allow_ip_literals defaults to true
// (also when it is not a boolean).
func ParseACL(content []byte) ACL {
	var raw struct {
		Allow           json.RawMessage `json:"allow"`
		Deny            json.RawMessage `json:"deny"`
		AllowIPLiterals json.RawMessage `json:"allow_ip_literals"`
	}
	acl := ACL{allowIPLiterals: true}
	if json.Unmarshal(content, &raw) != nil {
		return acl
	}
	acl.allow, acl.deny = globs(raw.Allow), globs(raw.Deny)
	var b bool
	if json.Unmarshal(raw.AllowIPLiterals, &b) == nil {
		acl.allowIPLiterals = b
	}
	return acl
}

// globs reads a JSON list, keeping its string entries.
func globs(raw json.RawMessage) []string {
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil {
		return nil
	}
	var out []string
	for _, e := range list {
		var s string
		if json.Unmarshal(e, &s) == nil {
			out = append(out, strings.ToLower(s))
		}
	}
	return out
}

// Allows reports whether server may take part in the room: its host name
// (without port, compared case-insensitively) must match no deny glob and
// some allow glob, and be no IP literal unless those are allowed.
func (a ACL) Allows(server spec.ServerName) bool {
	host, _, ok := spec.ParseAndValidateServerName(server)
	if !ok {
		return false
	}
	if !a.allowIPLiterals && isIPLiteral(host) {
		return false
	}
	host = strings.ToLower(host)
	for _, g := range a.deny {
		if globMatch(g, host) {
			return false
		}
	}
	for _, g := range a.allow {
		if globMatch(g, host) {
			return true
		}
	}
	return false
}

func isIPLiteral(host string) bool {
	if strings.HasPrefix(host, "[") {
		return true // the grammar only brackets IPv6 literals
	}
	_, err := netip.ParseAddr(host)
	return err == nil
}

// globMatch matches s against a glob where * is any run of characters and
// ? exactly one, in linear time (backtracking to the last star only).
func globMatch(glob, s string) bool {
	gi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case gi < len(glob) && (glob[gi] == '?' || glob[gi] == s[si]):
			gi++
			si++
		case gi < len(glob) && glob[gi] == '*':
			star, mark = gi, si
			gi++
		case star >= 0:
			gi, mark = star+1, mark+1
			si = mark
		default:
			return false
		}
	}
	for gi < len(glob) && glob[gi] == '*' {
		gi++
	}
	return gi == len(glob)
}

// ACLLookup returns the content of a room's current m.room.server_acl
// state event; found is false when the room has none.
type ACLLookup func(ctx context.Context, roomID string) (content []byte, found bool, err error)

// CheckServerACL is nil when origin may act in the room (which it may when
// the room has no ACL) and a 403 M_FORBIDDEN when the ACL denies it.
func CheckServerACL(ctx context.Context, lookup ACLLookup, roomID string, origin spec.ServerName) error {
	content, found, err := lookup(ctx, roomID)
	if err != nil {
		return fmt.Errorf("reading the server ACL of %s: %w", roomID, err)
	}
	if found && !ParseACL(content).Allows(origin) {
		return httputil.Forbidden("Server %s is banned from room %s by its server ACL", origin, roomID)
	}
	return nil
}
