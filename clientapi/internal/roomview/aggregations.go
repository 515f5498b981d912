package roomview

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"

	"matrixhs/internal/auth"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

// BundleAggregations computes the bundled aggregations (unsigned.m.relations)
// of a list of events as the requesting user sees them, keyed by event ID:
// m.thread (latest_event, count, current_user_participated), m.replace (the
// most recent valid edit, in full) and m.reference (the referencing event
// IDs). Annotations are not bundled (spec v1.7). It costs one query for the
// whole list, plus, only when some event has children, the user's ignore
// list, the history visibility of the rooms concerned and one query loading
// the bundled events. Failures leave the events without aggregations.
func (rv *Reader) BundleAggregations(ctx context.Context, events []storage.Event) map[string]json.RawMessage {
	return rv.bundle(ctx, events, true)
}

// parentAgg collects one parent's aggregation rows.
type parentAgg struct {
	parent  *storage.Event
	threads []storage.AggregationRow // one row per replying sender
	count   int
	mine    bool
	edits   []storage.AggregationRow
	refs    []storage.AggregationRow
	// Chosen events to load and serialize in full.
	latestNID, editNID int64
}

// bundle computes aggregations; withThreads is false for the latest thread
// events inside an m.thread bundle, which cannot be thread roots themselves
// and so stop the recursion.
func (rv *Reader) bundle(ctx context.Context, events []storage.Event, withThreads bool) map[string]json.RawMessage {
	aggs := map[string]*parentAgg{}
	var ids []string
	for i := range events {
		e := &events[i]
		// State events get no aggregations (spec), nor do edits and
		// annotations, whose children make no sense.
		if e.StateKey != nil || e.StreamPos == 0 || e.RelType == storage.RelReplace || e.RelType == "m.annotation" {
			continue
		}
		if _, dup := aggs[e.EventID]; !dup {
			aggs[e.EventID] = &parentAgg{parent: e}
			ids = append(ids, e.EventID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	rows, err := rv.db.Aggregations(ctx, ids)
	if err != nil {
		rv.warnUnlessGone(ctx, err, "Computing bundled aggregations")
		return nil
	}
	if len(rows) == 0 {
		return nil
	}
	var userID, deviceID string
	if s := auth.Session(ctx); s != nil {
		userID, deviceID = s.UserID, s.DeviceID
	}
	ignored := rv.IgnoredUsers(ctx, userID)
	viewers := map[int64]*roomserver.Viewer{}
	canSee := func(roomNID int64, e *storage.Event) bool {
		v, ok := viewers[roomNID]
		if !ok {
			var err error
			if v, err = rv.rooms.Viewer(ctx, roomNID, userID); err != nil {
				rv.warnUnlessGone(ctx, err, "Loading history visibility for aggregations")
				v = nil
			}
			viewers[roomNID] = v
		}
		return v != nil && v.CanSee(e)
	}
	rowVisible := func(r *storage.AggregationRow) bool {
		e := storage.Event{Type: r.Type, Sender: r.Sender, StreamPos: r.StreamPos}
		if r.IsState {
			e.StateKey = new(string)
		}
		return canSee(r.RoomNID, &e)
	}

	for _, r := range rows {
		ag := aggs[r.Parent]
		if ag == nil || r.RoomNID != ag.parent.RoomNID || ignored[r.Sender] {
			continue
		}
		p := ag.parent
		switch r.RelType {
		case storage.RelThread:
			if withThreads {
				ag.threads = append(ag.threads, r)
				ag.count += r.Count
				ag.mine = ag.mine || r.Sender == userID
			}
		case storage.RelReplace:
			// Spec "Validity of replacement events"; a redacted original
			// gets no m.replace bundle.
			if p.RedactedBy == "" && r.Sender == p.Sender && r.Type == p.Type && !r.IsState &&
				(r.HasNewContent || r.Type == "m.room.encrypted") {
				ag.edits = append(ag.edits, r)
			}
		case storage.RelReference:
			ag.refs = append(ag.refs, r)
		}
	}

	// Choose the latest visible thread reply and the most recent visible edit.
	var load []int64
	for _, id := range ids {
		ag := aggs[id]
		if len(ag.threads) > 0 {
			slices.SortFunc(ag.threads, func(x, y storage.AggregationRow) int { return cmp.Compare(y.StreamPos, x.StreamPos) })
			for i := range ag.threads {
				if rowVisible(&ag.threads[i]) {
					ag.latestNID = ag.threads[i].NID
					break
				}
			}
			if ag.latestNID == 0 {
				ag.latestNID = rv.latestVisibleReply(ctx, ag.parent, ignored, canSee)
			}
			if ag.latestNID != 0 {
				load = append(load, ag.latestNID)
			}
		}
		if len(ag.edits) > 0 {
			slices.SortFunc(ag.edits, func(x, y storage.AggregationRow) int {
				return cmp.Or(cmp.Compare(y.OriginTS, x.OriginTS), cmp.Compare(y.EventID, x.EventID))
			})
			for i := range ag.edits {
				if rowVisible(&ag.edits[i]) {
					ag.editNID = ag.edits[i].NID
					load = append(load, ag.editNID)
					break
				}
			}
		}
	}
	full := map[int64]*storage.Event{}
	var latest []storage.Event
	if len(load) > 0 {
		loaded, err := rv.db.EventsByNID(ctx, load)
		if err != nil {
			rv.warnUnlessGone(ctx, err, "Loading bundled events")
			return nil
		}
		for i := range loaded {
			full[loaded[i].NID] = &loaded[i]
			if loaded[i].RelType == storage.RelThread {
				latest = append(latest, loaded[i])
			}
		}
	}
	var nested map[string]json.RawMessage
	if withThreads && len(latest) > 0 {
		// The latest thread events carry their own aggregations (spec).
		nested = rv.bundle(ctx, latest, false)
	}

	out := map[string]json.RawMessage{}
	for _, id := range ids {
		ag := aggs[id]
		rel := map[string]any{}
		if e := full[ag.latestNID]; e != nil {
			rel[storage.RelThread] = map[string]any{
				"latest_event":              rv.FormatEvent(ctx, e, deviceID, nested[e.EventID]),
				"count":                     ag.count,
				"current_user_participated": ag.mine || (userID != "" && ag.parent.Sender == userID),
			}
		}
		if e := full[ag.editNID]; e != nil {
			rel[storage.RelReplace] = rv.FormatEvent(ctx, e, deviceID, nil)
		}
		var refs []map[string]string
		slices.SortFunc(ag.refs, func(x, y storage.AggregationRow) int { return cmp.Compare(x.StreamPos, y.StreamPos) })
		for i := range ag.refs {
			if rowVisible(&ag.refs[i]) {
				refs = append(refs, map[string]string{"event_id": ag.refs[i].EventID})
			}
		}
		if len(refs) > 0 {
			rel[storage.RelReference] = map[string]any{"chunk": refs}
		}
		if len(rel) > 0 {
			out[id], _ = json.Marshal(rel)
		}
	}
	return out
}

// replyScanBatch is how many thread replies one query reads while looking
// for the newest one the user may see.
const replyScanBatch = 100

// latestVisibleReply finds the newest thread reply the user may see, when
// the newest replies of every sender are hidden from them.
func (rv *Reader) latestVisibleReply(ctx context.Context, root *storage.Event, ignored map[string]bool,
	canSee func(int64, *storage.Event) bool) int64 {
	f := storage.RelationFilter{RoomNID: root.RoomNID, EventID: root.EventID, RelType: storage.RelThread, Depth: 1}
	pos := storage.TopoEnd
	for {
		batch, err := rv.db.Relations(ctx, f, pos, storage.TopoPos{}, true, replyScanBatch)
		if err != nil {
			rv.warnUnlessGone(ctx, err, "Finding the latest thread reply")
			return 0
		}
		for i := range batch {
			if !ignored[batch[i].Sender] && canSee(root.RoomNID, &batch[i]) {
				return batch[i].NID
			}
			pos = storage.TopoBefore(&batch[i])
		}
		if len(batch) < replyScanBatch {
			return 0
		}
	}
}

// warnUnlessGone logs a failure that leaves a response incomplete, unless
// the client went away: then the failure is the cancelled context itself.
func (rv *Reader) warnUnlessGone(ctx context.Context, err error, msg string) {
	if ctx.Err() != nil {
		return
	}
	rv.log.WithError(err).Warn(msg)
}
