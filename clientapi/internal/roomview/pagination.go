package roomview

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"matrixhs/clientapi/filter"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// Room history pages in topological order (depth, then arrival): the order
// of the DAG, which backfilled and late events join where they belong. Its
// tokens are "t<depth>_<nid>", a place just after an event. Older tokens
// ("t<pos>", bare numbers) and sync tokens ("s<pos>_...") name stream
// positions; they keep working, placed after the room's last timeline event
// at or before the position.

// TopoToken is the token of a topological position.
func TopoToken(p storage.TopoPos) string {
	return "t" + strconv.FormatInt(p.Depth, 10) + "_" + strconv.FormatInt(p.NID, 10)
}

// TopoFromToken reads a pagination token of any kind as a place in the
// room's topological order.
func (rv *Reader) TopoFromToken(ctx context.Context, roomNID int64, tok string) (storage.TopoPos, error) {
	if rest, ok := strings.CutPrefix(tok, "t"); ok {
		if d, n, ok := strings.Cut(rest, "_"); ok {
			depth, err1 := strconv.ParseInt(d, 10, 64)
			nid, err2 := strconv.ParseInt(n, 10, 64)
			if err1 != nil || err2 != nil || depth < 0 || nid < 0 {
				return storage.TopoPos{}, httputil.InvalidParam("invalid pagination token %q", tok)
			}
			return storage.TopoPos{Depth: depth, NID: nid}, nil
		}
	}
	pos, err := ParseToken(tok)
	if err != nil {
		return storage.TopoPos{}, err
	}
	return rv.db.TopoAtStream(ctx, roomNID, pos)
}

// StreamFromToken reads a token of any kind as a stream position, for the
// endpoints that take a point in time (/members?at=): a topological
// position stands for the room's last timeline event at or before it.
func (rv *Reader) StreamFromToken(ctx context.Context, roomNID int64, tok string) (int64, error) {
	if strings.HasPrefix(tok, "t") && strings.Contains(tok, "_") {
		p, err := rv.TopoFromToken(ctx, roomNID, tok)
		if err != nil {
			return 0, err
		}
		evs, err := rv.db.TopoTimeline(ctx, roomNID, p, storage.TopoPos{}, true, 1)
		if err != nil || len(evs) == 0 {
			return 0, err
		}
		if evs[0].StreamPos < 0 {
			// Backfilled history: the state it sits in is older than any
			// stream position; the earliest stream state stands in.
			return 0, nil
		}
		return evs[0].StreamPos, nil
	}
	return ParseToken(tok)
}

// TopoLimit is the farthest place a user may read up to: their departure
// for users who left, else the end. Pages never go past it.
func (rv *Reader) TopoLimit(ctx context.Context, acc *Access) (storage.TopoPos, error) {
	if acc.UpTo == 0 {
		return storage.TopoEnd, nil
	}
	return rv.db.TopoAtStream(ctx, acc.Info.NID, acc.UpTo)
}

// PageRange reads a page request's from and to tokens (either may be
// empty) as the topological range to page through in the given direction,
// clipped to what the user may read (TopoLimit).
func (rv *Reader) PageRange(ctx context.Context, acc *Access, fromTok, toTok string, backwards bool) (from, to storage.TopoPos, err error) {
	bound, err := rv.TopoLimit(ctx, acc)
	if err != nil {
		return from, to, err
	}
	if fromTok != "" {
		if from, err = rv.TopoFromToken(ctx, acc.Info.NID, fromTok); err != nil {
			return from, to, err
		}
	} else if backwards {
		from = storage.TopoEnd
	}
	if toTok != "" {
		if to, err = rv.TopoFromToken(ctx, acc.Info.NID, toTok); err != nil {
			return from, to, err
		}
	} else if !backwards {
		to = storage.TopoEnd
	}
	// A user who left reads up to their departure.
	if backwards && bound.Less(from) {
		from = bound
	}
	if !backwards && bound.Less(to) {
		to = bound
	}
	return from, to, nil
}

// TopoPage collects up to limit visible events matching f between from
// and to, in the given direction (to is the lower end going backwards).
// next is where a following page starts; done reports that nothing more
// lies that way. A page shorter than limit and not done ran out of scan
// budget.
func (rv *Reader) TopoPage(ctx context.Context, acc *Access, f *filter.RoomEventFilter, from, to storage.TopoPos, backwards bool, limit int) (events []storage.Event, next storage.TopoPos, done bool, err error) {
	next = from
	batchSize := min(max(2*limit, 8), 100)
	for scanned := 0; len(events) < limit && scanned < pageScanBudget(limit); scanned += batchSize {
		batch, err := rv.db.TopoTimeline(ctx, acc.Info.NID, next, to, backwards, batchSize)
		if err != nil {
			return nil, next, false, err
		}
		for i := range batch {
			e := &batch[i]
			if backwards {
				next = storage.TopoBefore(e)
			} else {
				next = storage.TopoOf(e)
			}
			if acc.Viewer.CanSee(e) && !acc.Ignores(e) && f.Matches(e.RoomID, e.Type, e.Sender, Content(e.JSON)) {
				e.ViewerMembership = acc.Viewer.MembershipAt(e)
				events = append(events, *e)
				if len(events) == limit {
					return events, next, false, nil
				}
			}
		}
		if len(batch) < batchSize {
			return events, next, true, nil
		}
	}
	return events, next, false, nil
}

// EventContext is the visible events around e (as /context and search
// results give them), with tokens to page on from either end.
type EventContext struct {
	Before, After []storage.Event
	Start, End    storage.TopoPos
}

func (rv *Reader) ContextAround(ctx context.Context, acc *Access, f *filter.RoomEventFilter, e *storage.Event, beforeN, afterN int) (*EventContext, error) {
	bound, err := rv.TopoLimit(ctx, acc)
	if err != nil {
		return nil, err
	}
	c := &EventContext{}
	if c.Before, c.Start, _, err = rv.TopoPage(ctx, acc, f, storage.TopoBefore(e), storage.TopoPos{}, true, beforeN); err != nil {
		return nil, err
	}
	if c.After, c.End, _, err = rv.TopoPage(ctx, acc, f, storage.TopoOf(e), bound, false, afterN); err != nil {
		return nil, err
	}
	return c, nil
}

// StateAfterEvent is the room state after e, as its own snapshot says
// (of type typ only, unless typ is ""), sorted by type and state key.
func (rv *Reader) StateAfterEvent(ctx context.Context, e *storage.Event, typ string) ([]storage.Event, error) {
	state, err := rv.db.Snapshot(ctx, e.StateBefore)
	if err != nil {
		return nil, err
	}
	if e.StateKey != nil {
		state[storage.StateKey{Type: e.Type, StateKey: *e.StateKey}] = e.NID
	}
	nids := make([]int64, 0, len(state))
	for k, nid := range state {
		if typ == "" || k.Type == typ {
			nids = append(nids, nid)
		}
	}
	events, err := rv.db.EventsByNID(ctx, nids)
	if err != nil {
		return nil, fmt.Errorf("loading state after %s: %w", e.EventID, err)
	}
	sort.Slice(events, func(i, j int) bool {
		if events[i].Type != events[j].Type {
			return events[i].Type < events[j].Type
		}
		return *events[i].StateKey < *events[j].StateKey
	})
	return events, nil
}
