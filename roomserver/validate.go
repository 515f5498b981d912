package roomserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/ids"
)

// Canonical JSON's integer range (spec "Canonical JSON").
const (
	maxCanonicalInt = 1<<53 - 1
	minCanonicalInt = -(1<<53 - 1)
)

// checkLocalContent makes the checks Synapse makes on events its own users
// create, beyond the auth rules: malformed content is the client's mistake
// (400), not a lack of permission (403). r.mu must be held.
func (rs *Roomserver) checkLocalContent(ctx context.Context, r *room, ev LocalEvent) error {
	if ev.Type == spec.MRoomPowerLevels && ev.StateKey != nil && *ev.StateKey == "" {
		return checkPowerLevels(r, ev.Content)
	}
	return nil
}

// powerLevelInts and powerLevelMaps are the power level keys with integer
// and object-of-integer values.
var (
	powerLevelInts = []string{"ban", "events_default", "invite", "kick", "redact", "state_default", "users_default"}
	powerLevelMaps = []string{"events", "notifications", "users"}
)

// checkPowerLevels validates m.room.power_levels content: integers in the
// canonical JSON range, user IDs as users keys and, from v12, no creator
// among them (creators have unlimited power and must not be listed).
func checkPowerLevels(r *room, content json.RawMessage) error {
	var c map[string]json.RawMessage
	if err := json.Unmarshal(content, &c); err != nil {
		return badRequest("power levels must be an object")
	}
	for _, k := range powerLevelInts {
		if v, ok := c[k]; ok {
			if err := checkPowerLevel(v); err != nil {
				return badRequest("%q: %v", k, err)
			}
		}
	}
	for _, k := range powerLevelMaps {
		v, ok := c[k]
		if !ok {
			continue
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(v, &m); err != nil || m == nil {
			return badRequest("%q must be an object", k)
		}
		for key, level := range m {
			if err := checkPowerLevel(level); err != nil {
				return badRequest("%q.%q: %v", k, key, err)
			}
			if k == "users" {
				if err := ids.UserID(key); err != nil {
					return badRequest("users: %v", err)
				}
				if r.isCreator(key) {
					return badRequest("room creator %s must not appear in users: creators have unlimited power", key)
				}
			}
		}
	}
	return nil
}

// checkPowerLevel requires a JSON integer in the canonical range.
func checkPowerLevel(raw json.RawMessage) error {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return err
	}
	n, ok := v.(json.Number)
	if !ok {
		return errors.New("must be an integer")
	}
	i, err := n.Int64()
	if err != nil {
		return fmt.Errorf("%s is not an integer", n)
	}
	if i > maxCanonicalInt || i < minCanonicalInt {
		return fmt.Errorf("%d is out of range", i)
	}
	return nil
}

// tooLarge reports whether an event build failed on the spec's size limits
// (the whole event, its type or state key), which the API answers with 413.
func tooLarge(err error) bool {
	var ve gomatrixserverlib.EventValidationError
	return errors.As(err, &ve) && ve.Code == gomatrixserverlib.EventValidationTooLarge
}
