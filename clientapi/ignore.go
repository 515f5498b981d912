package clientapi

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

// ignores reports whether the reader ignores e: a non-state event sent by
// an ignored user.
func (acc *roomAccess) ignores(e *storage.Event) bool {
	return acc.ignored != nil && e.StateKey == nil && acc.ignored[e.Sender]
}

// withIgnored loads the reader's ignore list into acc (for /messages and
// /context, whose pages then leave those events out).
func (a *API) withIgnored(ctx context.Context, acc *roomAccess, userID string) {
	acc.ignored = a.ignoredUsers(ctx, userID)
}

// loadSyncIgnored reads the ignore list for one sync pass into p.
func (a *API) loadSyncIgnored(ctx context.Context, p *syncParams, userID string) {
	p.ignored = a.ignoredUsers(ctx, userID)
}

// inviteFromIgnored reports whether an invite membership was sent by a user
// the reader ignores (such invites are not sent to the client).
func (a *API) inviteFromIgnored(ctx context.Context, ignored map[string]bool, m storage.RoomMembership) (bool, error) {
	if len(ignored) == 0 {
		return false, nil
	}
	events, err := a.db.EventsByNID(ctx, []int64{m.EventNID})
	if err != nil || len(events) != 1 {
		return false, err
	}
	return ignored[events[0].Sender], nil
}
