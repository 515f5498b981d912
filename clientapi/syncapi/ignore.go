package syncapi

import (
	"context"

	"matrixhs/storage"
)

// loadSyncIgnored reads the ignore list for one sync pass into p.
func (a *API) loadSyncIgnored(ctx context.Context, p *syncParams, userID string) {
	p.ignored = a.view.IgnoredUsers(ctx, userID)
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
