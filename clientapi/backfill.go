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

// backfillGapScan is how many events below a backwards page's start, beyond
// the page itself, are looked at for gaps in the history.
const backfillGapScan = 20

// backfillGapsBelow fills, before a backwards page is read, the gaps in the
// middle of the history the page goes through (or is about to: the events
// just below it are looked at too), as Synapse backfills from the backward
// extremities near the page: after a room was left and joined again, or an
// outage, the events in between come from the room's other servers.
func (a *API) backfillGapsBelow(ctx context.Context, acc *roomview.Access, from storage.TopoPos, limit int) error {
	_, err := a.rooms.BackfillBelow(ctx, acc.Info.ID, from, limit+backfillGapScan, max(2*limit, backfillAsk))
	return err
}

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
