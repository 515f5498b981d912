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

// pageBackfilled continues a backwards page of /messages that reached the
// start of the history this server holds: the other servers of the room
// are asked for older events (the roomserver bounds how long that takes
// and how often a room is asked), and the page goes on through what they
// sent. When nothing comes, the page stays as it was: at the start.
func (a *API) pageBackfilled(ctx context.Context, acc *roomview.Access, f *filter.RoomEventFilter, events []storage.Event, next storage.TopoPos, limit int) ([]storage.Event, storage.TopoPos, bool, error) {
	n, err := a.rooms.Backfill(ctx, acc.Info.ID, max(2*limit, backfillAsk))
	if err != nil || n == 0 {
		return events, next, true, err
	}
	more, next, done, err := a.view.TopoPage(ctx, acc, f, next, storage.TopoPos{}, true, limit-len(events))
	if err != nil {
		return nil, next, false, err
	}
	return append(events, more...), next, done, nil
}
