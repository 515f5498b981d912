package users

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"matrixhs/roomserver/pushrules"
)

// Localpart is the localpart of a user ID.
func Localpart(userID string) string {
	local, _, _ := strings.Cut(strings.TrimPrefix(userID, "@"), ":")
	return local
}

// DecodeRules decodes a user's stored push-rule changes (none: nil raw).
func DecodeRules(raw []byte) (pushrules.UserRules, error) {
	var u pushrules.UserRules
	if raw == nil {
		return u, nil
	}
	if err := json.Unmarshal(raw, &u); err != nil {
		return u, fmt.Errorf("decoding stored push rules: %w", err)
	}
	return u, nil
}

// PushRules is the user's full ruleset: defaults merged with changes.
func (us *Service) PushRules(ctx context.Context, userID string) (pushrules.Ruleset, error) {
	raw, err := us.db.PushRules(ctx, userID)
	if err != nil {
		return pushrules.Ruleset{}, err
	}
	u, err := DecodeRules(raw)
	if err != nil {
		return pushrules.Ruleset{}, err
	}
	return pushrules.Effective(u, userID, Localpart(userID)), nil
}

// LowerASCII lowercases A-Z only: Unicode folding could turn look-alikes
// (e.g. the Kelvin sign) into ASCII letters.
func LowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}
