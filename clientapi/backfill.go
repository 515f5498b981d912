package clientapi

import (
	"context"

	"matrixhs/clientapi/filter"
	"matrixhs/clientapi/internal/roomview"
	"matrixhs/storage"
)

const (
	// backfillAsk is how many events a page that ran into a gap asks other
	// servers for (at least).
	backfillAsk = 20
	// maxGapsAsked bounds the gaps one backfill starts from, and
	// backfillRounds the backfills one page makes.
	maxGapsAsked   = 5
	backfillRounds = 3
)

// pageBackfilled fills the gaps in a backwards page of /messages (from
// from down to next, or to to when it ran out of history): where it ran
// into events this server does not hold (prev events of its events), in
// the middle of the history (a server that missed events while it was
// down got only the newest) or where the history this server holds
// starts, the other servers of the room are asked for what lies behind
// (the roomserver bounds how long that takes and how often a room is
// asked), and the page is read again with what they sent, which takes its
// place in the topological order. When nothing comes, the page stays as it
// was.
func (a *API) pageBackfilled(ctx context.Context, acc *roomview.Access, f *filter.RoomEventFilter, from, to storage.TopoPos,
	events []storage.Event, next storage.TopoPos, done bool, limit int) ([]storage.Event, storage.TopoPos, bool, error) {
	for range backfillRounds {
		lower := next
		if done {
			lower = to
		}
		gaps, err := a.db.GapsBetween(ctx, acc.Info.NID, lower, from, maxGapsAsked)
		if err != nil || len(gaps) == 0 {
			return events, next, done, err
		}
		n, err := a.rooms.BackfillGaps(ctx, acc.Info.ID, gaps, max(2*limit, backfillAsk))
		if err != nil || n == 0 {
			return events, next, done, err
		}
		if events, next, done, err = a.view.TopoPage(ctx, acc, f, from, to, true, limit); err != nil {
			return nil, next, false, err
		}
	}
	return events, next, done, nil
}
