// Package ids checks Matrix identifiers against the grammar of the spec's
// appendix ("Identifier Grammar"), for input from clients. Identifiers
// already in rooms are not re-checked: historical ones may be odder.
package ids

import (
	"errors"
	"fmt"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

// maxLen is the limit on user, room and event IDs and room aliases, in bytes.
const maxLen = 255

// hashLen is the length of an unpadded base64 SHA-256 hash: v3+ event IDs
// and v12 room IDs.
const hashLen = 43

// UserID checks a user ID. The localpart may use the historical character
// set (printable ASCII but ':'), which existing users may still have.
func UserID(id string) error {
	local, err := split(id, '@', "user ID")
	if err != nil {
		return err
	}
	for i := 0; i < len(local); i++ {
		if c := local[i]; c < 0x21 || c > 0x7e {
			return fmt.Errorf("user ID %q: the localpart has a character outside printable ASCII", id)
		}
	}
	return nil
}

// RoomAlias checks a room alias: #localpart:server_name.
func RoomAlias(alias string) error {
	local, err := split(alias, '#', "room alias")
	if err != nil {
		return err
	}
	if strings.ContainsRune(local, 0) {
		return fmt.Errorf("room alias %q contains NUL", alias)
	}
	return nil
}

// RoomID checks a room ID: !opaque:server_name, or from room version 12 the
// create event's hash, !<43 URL-safe base64 characters>.
func RoomID(id string) error {
	if !strings.Contains(id, ":") {
		if !strings.HasPrefix(id, "!") || !isHash(id[1:], true) {
			return fmt.Errorf("%q is not a room ID", id)
		}
		return nil
	}
	local, err := split(id, '!', "room ID")
	if err != nil {
		return err
	}
	return printable(id, local)
}

// EventID checks an event ID: $opaque:server_name in room versions 1 and 2,
// the event's hash (standard or URL-safe base64) from version 3.
func EventID(id string) error {
	if !strings.Contains(id, ":") {
		if !strings.HasPrefix(id, "$") || !isHash(id[1:], false) {
			return fmt.Errorf("%q is not an event ID", id)
		}
		return nil
	}
	local, err := split(id, '$', "event ID")
	if err != nil {
		return err
	}
	return printable(id, local)
}

// split checks sigil, length and server name, and returns the localpart.
func split(id string, sigil byte, what string) (string, error) {
	if len(id) > maxLen {
		return "", fmt.Errorf("%s is longer than %d bytes", what, maxLen)
	}
	if len(id) == 0 || id[0] != sigil {
		return "", fmt.Errorf("%s %q does not start with '%c'", what, id, sigil)
	}
	local, server, ok := strings.Cut(id[1:], ":")
	if !ok || local == "" {
		return "", fmt.Errorf("%s %q is not of the form %clocalpart:server", what, id, sigil)
	}
	if _, _, valid := spec.ParseAndValidateServerName(spec.ServerName(server)); !valid {
		return "", fmt.Errorf("%s %q has an invalid server name", what, id)
	}
	return local, nil
}

var errUnprintable = errors.New("contains a character outside printable ASCII")

func printable(id, local string) error {
	for i := 0; i < len(local); i++ {
		if c := local[i]; c < 0x21 || c > 0x7e {
			return fmt.Errorf("%q %w", id, errUnprintable)
		}
	}
	return nil
}

// isHash reports whether s is an unpadded base64 SHA-256 hash; urlOnly
// allows only the URL-safe alphabet.
func isHash(s string, urlOnly bool) bool {
	if len(s) != hashLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		case !urlOnly && (c == '+' || c == '/'):
		default:
			return false
		}
	}
	return true
}
