package clientapi

import (
	"context"

	"matrixhs/clientapi/filter"
	"matrixhs/clientapi/internal/roomview"
	"matrixhs/storage"
)

// backfillAsk is how many events a page that ran out of history asks other
// servers for (at least).
const backfillAsk = 20

// pageBackfilled fills the history missing behind the events a backwards
// page of /messages covered, (next, from], and the event just after from:
// before a late join, or a gap
// left while this server was down. The other servers of the room are asked
// (the roomserver bounds how long that takes and how often a room is
// asked), and the page is read again through what they sent. When nothing
// comes, the page stays as it was.
func (a *API) pageBackfilled(ctx context.Context, acc *roomview.Access, f *filter.RoomEventFilter, from storage.TopoPos, events []storage.Event, next storage.TopoPos, done bool, limit int) ([]storage.Event, storage.TopoPos, bool, error) {
	// The event just after from counts too: a page starting right before
	// an event that follows a gap (from /context of a backfilled event)
	// covers none of it, yet the history missing is behind it.
	hi := from
	if after, err := a.db.TopoTimeline(ctx, acc.Info.NID, from, storage.TopoEnd, false, 1); err != nil {
		return nil, next, false, err
	} else if len(after) == 1 {
		hi = storage.TopoOf(&after[0])
	}
	n, err := a.rooms.Backfill(ctx, acc.Info.ID, next, hi, max(2*limit, backfillAsk))
	if err != nil || n == 0 {
		return events, next, done, err
	}
	return a.view.TopoPage(ctx, acc, f, from, storage.TopoPos{}, true, limit)
}
