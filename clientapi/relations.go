package clientapi

import (
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"

	"github.com/matrix-org/gomatrixserverlib"

	"matrixhs/internal/accounts"
	"matrixhs/internal/auth"
	"matrixhs/internal/httputil"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

// Relations, threads and bundled aggregations (spec "Forming relationships
// between events", "Threading", "Event replacements", "Reference relations").

const (
	// recurseDepth is how many levels of relations /relations follows with
	// recurse=true (the spec recommends at least 3).
	recurseDepth = 3
	// relationsBatch is how many candidates one query fetches while filling
	// a page with events the user may see.
	relationsBatch = 100
)

// getRelations serves GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]].
func (a *API) getRelations(r *http.Request, s *accounts.Session) (any, error) {
	ctx := r.Context()
	acc, err := a.access(ctx, s.UserID, pathVar(r, "roomId"))
	if err != nil {
		return nil, err
	}
	parent, err := a.visibleEvent(ctx, acc, pathVar(r, "eventId"))
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	dir := q.Get("dir")
	if dir != "" && dir != "b" && dir != "f" {
		return nil, httputil.InvalidParam("dir must be b or f")
	}
	backwards := dir != "f"
	limit, err := limitParam(q.Get("limit"), 20, 1000)
	if err != nil {
		return nil, err
	}
	depth := 1
	resp := map[string]any{}
	if raw, ok := q["recurse"]; ok {
		recurse, err := strconv.ParseBool(raw[0])
		if err != nil {
			return nil, httputil.InvalidParam("recurse must be true or false")
		}
		if recurse {
			depth = recurseDepth
		}
		resp["recursion_depth"] = depth
	}
	bound, err := a.topoLimit(ctx, acc)
	if err != nil {
		return nil, err
	}
	var from, to storage.TopoPos
	if tok := q.Get("from"); tok != "" {
		if from, err = a.topoFromToken(ctx, acc.info.NID, tok); err != nil {
			return nil, err
		}
		resp["prev_batch"] = tok
	} else if backwards {
		from = storage.TopoEnd
	}
	if tok := q.Get("to"); tok != "" {
		if to, err = a.topoFromToken(ctx, acc.info.NID, tok); err != nil {
			return nil, err
		}
	} else if !backwards {
		to = storage.TopoEnd
	}
	if backwards && bound.Less(from) {
		from = bound
	}
	if !backwards && bound.Less(to) {
		to = bound
	}
	f := storage.RelationFilter{RoomNID: acc.info.NID, EventID: parent.EventID, RelType: pathVar(r, "relType"),
		EventType: pathVar(r, "eventType"), Depth: depth}
	ignored := a.ignoredUsers(ctx, s.UserID)
	var chunk []storage.Event
	next, more := from, false
	for !more {
		batch, err := a.db.Relations(ctx, f, next, to, backwards, relationsBatch)
		if err != nil {
			return nil, err
		}
		for i := range batch {
			e := &batch[i]
			if acc.viewer.CanSee(e) && !ignored[e.Sender] {
				if len(chunk) == limit {
					more = true
					break
				}
				e.ViewerMembership = acc.viewer.MembershipAt(e)
				chunk = append(chunk, *e)
			}
			if next = storage.TopoOf(e); backwards {
				next = storage.TopoBefore(e)
			}
		}
		if len(batch) < relationsBatch {
			break
		}
	}
	resp["chunk"] = a.clientEvents(ctx, chunk, s.DeviceID)
	if more {
		resp["next_batch"] = topoToken(next)
	}
	return resp, nil
}

// getThreads serves GET /_matrix/client/v1/rooms/{roomId}/threads: the
// room's thread roots, most recently active first, each with its bundled
// m.thread aggregation.
func (a *API) getThreads(r *http.Request, s *accounts.Session) (any, error) {
	ctx := r.Context()
	acc, err := a.access(ctx, s.UserID, pathVar(r, "roomId"))
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	participant := ""
	switch q.Get("include") {
	case "", "all":
	case "participated":
		participant = s.UserID
	default:
		return nil, httputil.InvalidParam("include must be all or participated")
	}
	limit, err := limitParam(q.Get("limit"), 20, 100)
	if err != nil {
		return nil, err
	}
	if limit < 1 {
		return nil, httputil.InvalidParam("limit must be greater than zero")
	}
	pos := a.db.StreamPosition()
	if tok := q.Get("from"); tok != "" {
		if pos, err = parseToken(tok); err != nil {
			return nil, err
		}
	}
	ignored := a.ignoredUsers(ctx, s.UserID)
	var chunk []storage.Event
	more := false
	for !more {
		roots, err := a.db.ThreadRoots(ctx, acc.info.NID, pos, participant, relationsBatch)
		if err != nil {
			return nil, err
		}
		for _, root := range roots {
			if acc.viewer.CanSee(&root.Event) && (acc.upTo == 0 || root.StreamPos <= acc.upTo) {
				if len(chunk) == limit {
					more = true
					break
				}
				if ignored[root.Sender] {
					// Spec: a root sent by an ignored user is returned redacted.
					root.Event = redactedCopy(root.Event)
				}
				root.Event.ViewerMembership = acc.viewer.MembershipAt(&root.Event)
				chunk = append(chunk, root.Event)
			}
			pos = root.LatestPos - 1
		}
		if len(roots) < relationsBatch {
			break
		}
	}
	resp := map[string]any{"chunk": a.clientEvents(ctx, chunk, s.DeviceID)}
	if more {
		resp["next_batch"] = makeToken(pos)
	}
	return resp, nil
}

// limitParam parses a limit query parameter, clamped to max.
func limitParam(raw string, def, max int) (int, error) {
	if raw == "" {
		return def, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 0 {
		return 0, httputil.InvalidParam("limit must be a non-negative integer")
	}
	return min(n, max), nil
}

// redactedCopy returns e with its JSON redacted under the room version's rules.
func redactedCopy(e storage.Event) storage.Event {
	ver, err := gomatrixserverlib.GetRoomVersion(gomatrixserverlib.RoomVersion(e.RoomVersion))
	if err != nil {
		return e
	}
	if red, err := ver.RedactEventJSON(e.JSON); err == nil {
		e.JSON = red
	}
	return e
}

// ignoredUsers is the user's m.ignored_user_list (without the user): events
// of those users stay out of aggregations and relation lists (spec
// "Ignoring users"). Cached by the roomserver with the push rules; the map
// is shared, read only. A failed read ignores nobody (and is logged).
func (a *API) ignoredUsers(ctx context.Context, userID string) map[string]bool {
	if userID == "" {
		return nil
	}
	ignored, err := a.rooms.IgnoredUsers(ctx, userID)
	if err != nil {
		a.warnUnlessGone(ctx, err, "Reading the ignore list")
		return nil
	}
	if len(ignored) == 0 {
		return nil
	}
	return ignored
}

// bundleAggregations computes the bundled aggregations (unsigned.m.relations)
// of a list of events as the requesting user sees them, keyed by event ID:
// m.thread (latest_event, count, current_user_participated), m.replace (the
// most recent valid edit, in full) and m.reference (the referencing event
// IDs). Annotations are not bundled (spec v1.7). It costs one query for the
// whole list, plus, only when some event has children, the user's ignore
// list, the history visibility of the rooms concerned and one query loading
// the bundled events. Failures leave the events without aggregations.
func (a *API) bundleAggregations(ctx context.Context, events []storage.Event) map[string]json.RawMessage {
	return a.bundle(ctx, events, true)
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
func (a *API) bundle(ctx context.Context, events []storage.Event, withThreads bool) map[string]json.RawMessage {
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
	rows, err := a.db.Aggregations(ctx, ids)
	if err != nil {
		a.warnUnlessGone(ctx, err, "Computing bundled aggregations")
		return nil
	}
	if len(rows) == 0 {
		return nil
	}
	var userID, deviceID string
	if s := auth.Session(ctx); s != nil {
		userID, deviceID = s.UserID, s.DeviceID
	}
	ignored := a.ignoredUsers(ctx, userID)
	viewers := map[int64]*roomserver.Viewer{}
	canSee := func(roomNID int64, e *storage.Event) bool {
		v, ok := viewers[roomNID]
		if !ok {
			var err error
			if v, err = a.rooms.Viewer(ctx, roomNID, userID); err != nil {
				a.warnUnlessGone(ctx, err, "Loading history visibility for aggregations")
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
				ag.latestNID = a.latestVisibleReply(ctx, ag.parent, ignored, canSee)
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
		loaded, err := a.db.EventsByNID(ctx, load)
		if err != nil {
			a.warnUnlessGone(ctx, err, "Loading bundled events")
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
		nested = a.bundle(ctx, latest, false)
	}

	out := map[string]json.RawMessage{}
	for _, id := range ids {
		ag := aggs[id]
		rel := map[string]any{}
		if e := full[ag.latestNID]; e != nil {
			rel[storage.RelThread] = map[string]any{
				"latest_event":              a.formatEvent(ctx, e, deviceID, nested[e.EventID]),
				"count":                     ag.count,
				"current_user_participated": ag.mine || (userID != "" && ag.parent.Sender == userID),
			}
		}
		if e := full[ag.editNID]; e != nil {
			rel[storage.RelReplace] = a.formatEvent(ctx, e, deviceID, nil)
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

// latestVisibleReply finds the newest thread reply the user may see, when
// the newest replies of every sender are hidden from them.
func (a *API) latestVisibleReply(ctx context.Context, root *storage.Event, ignored map[string]bool,
	canSee func(int64, *storage.Event) bool) int64 {
	f := storage.RelationFilter{RoomNID: root.RoomNID, EventID: root.EventID, RelType: storage.RelThread, Depth: 1}
	pos := storage.TopoEnd
	for {
		batch, err := a.db.Relations(ctx, f, pos, storage.TopoPos{}, true, relationsBatch)
		if err != nil {
			a.warnUnlessGone(ctx, err, "Finding the latest thread reply")
			return 0
		}
		for i := range batch {
			if !ignored[batch[i].Sender] && canSee(root.RoomNID, &batch[i]) {
				return batch[i].NID
			}
			pos = storage.TopoBefore(&batch[i])
		}
		if len(batch) < relationsBatch {
			return 0
		}
	}
}

// warnUnlessGone logs a failure that leaves a response incomplete, unless
// the client went away: then the failure is the cancelled context itself.
func (a *API) warnUnlessGone(ctx context.Context, err error, msg string) {
	if ctx.Err() != nil {
		return
	}
	a.log.WithError(err).Warn(msg)
}
