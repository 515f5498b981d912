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
// page of /messages covered, (next, from]: before a late join, or a gap
// left while this server was down. The other servers of the room are asked
// (the roomserver bounds how long that takes and how often a room is
// asked), and the page is read again through what they sent. When nothing
// comes, the page stays as it was.
func (a *API) pageBackfilled(ctx context.Context, acc *roomview.Access, f *filter.RoomEventFilter, from storage.TopoPos, events []storage.Event, next storage.TopoPos, done bool, limit int) ([]storage.Event, storage.TopoPos, bool, error) {
	n, err := a.rooms.Backfill(ctx, acc.Info.ID, next, from, max(2*limit, backfillAsk))
	if err != nil || n == 0 {
		return events, next, done, err
	}
	return a.view.TopoPage(ctx, acc, f, from, storage.TopoPos{}, true, limit)
}
