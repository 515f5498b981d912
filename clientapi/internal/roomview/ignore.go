package roomview

// Ignoring users (spec "Ignoring Users"): the user's global account data
// m.ignored_user_list names users whose events and invites the server
// keeps from them. State events of ignored users are still sent, so the
// room looks the same to everyone. The list is cached by the roomserver
// (which also needs it for push rules) and checked per event with a map
// lookup.

import (
	"context"

	"matrixhs/storage"
)

// Ignores reports whether the reader ignores e: a non-state event sent by
// an ignored user.
func (acc *Access) Ignores(e *storage.Event) bool {
	return acc.Ignored != nil && e.StateKey == nil && acc.Ignored[e.Sender]
}

// WithIgnored loads the reader's ignore list into acc (for /messages and
// /context, whose pages then leave those events out).
func (rv *Reader) WithIgnored(ctx context.Context, acc *Access, userID string) {
	acc.Ignored = rv.IgnoredUsers(ctx, userID)
}

// IgnoredUsers is the user's m.ignored_user_list (without the user): events
// of those users stay out of aggregations and relation lists (spec
// "Ignoring users"). Cached by the roomserver with the push rules; the map
// is shared, read only. A failed read ignores nobody (and is logged).
func (rv *Reader) IgnoredUsers(ctx context.Context, userID string) map[string]bool {
	if userID == "" {
		return nil
	}
	ignored, err := rv.rooms.IgnoredUsers(ctx, userID)
	if err != nil {
		rv.warnUnlessGone(ctx, err, "Reading the ignore list")
		return nil
	}
	if len(ignored) == 0 {
		return nil
	}
	return ignored
}
