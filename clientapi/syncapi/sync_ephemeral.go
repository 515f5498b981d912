package syncapi

import (
	"context"
	"slices"

	"matrixhs/clientapi/filter"
	"matrixhs/storage"
)

// roomEphemeral is a joined room's typing and receipts for the sync window,
// without the users the reader ignores.
func (a *API) roomEphemeral(ctx context.Context, userID string, info *storage.Room, fresh bool, since, sinceEph, upTo int64,
	ignored map[string]bool) ([]EphemeralEvent, error) {
	var out []EphemeralEvent
	if fresh {
		sinceEph = 0
	}
	if users, changed := a.eph.Typing(info.ID, sinceEph); changed || (fresh && len(users) > 0) {
		out = append(out, typingEvent(withoutUsers(users, ignored)))
	}
	from := since
	if fresh {
		from = 0
	}
	receipts, err := a.eph.RoomReceipts(ctx, info.NID, from, upTo, userID)
	if err != nil {
		return nil, err
	}
	if receipts = receipts.Without(ignored); receipts != nil {
		out = append(out, receiptEvent(receipts))
	}
	return out, nil
}

// withoutUsers is users without the ignored ones (never nil).
func withoutUsers(users []string, ignored map[string]bool) []string {
	out := make([]string, 0, len(users))
	for _, u := range users {
		if !ignored[u] {
			out = append(out, u)
		}
	}
	return out
}

// syncPresence lists the presence of the user and their room mates that
// changed after sinceEph, and that of newcomers (room mates who joined, or
// whose room the user joined, since the last sync) whatever its age.
func (a *API) syncPresence(ctx context.Context, userID string, p *syncParams, sinceEph int64, newcomers []string) ([]PresenceEvent, bool, error) {
	changed := a.eph.PresenceChangedSince(sinceEph)
	if !changed && len(newcomers) == 0 {
		return []PresenceEvent{}, false, nil // nobody's presence changed: skip the room-mates query
	}
	var mates []string
	if changed {
		var err error
		if mates, err = a.db.RoomMates(ctx, userID); err != nil {
			return nil, false, err
		}
		if !slices.Contains(mates, userID) {
			mates = append(mates, userID)
		}
	}
	var pf *filter.EventFilter
	if p.filter != nil {
		pf = p.filter.Presence
	}
	out := []PresenceEvent{}
	sent := map[string]bool{}
	add := func(u string, newcomer bool) {
		pres, version := a.eph.Presence(u)
		if sent[u] || version == 0 || (!newcomer && version <= sinceEph) || !pf.Matches("m.presence", u) {
			return
		}
		sent[u] = true
		out = append(out, PresenceEvent{Type: "m.presence", Sender: u, Content: pres})
	}
	for _, u := range newcomers {
		if u != userID {
			add(u, true)
		}
	}
	for _, u := range mates {
		add(u, false)
	}
	return out, len(out) > 0, nil
}
