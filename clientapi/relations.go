package clientapi

import (
	"net/http"
	"strconv"

	"github.com/matrix-org/gomatrixserverlib"

	"matrixhs/clientapi/internal/roomview"
	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
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
	acc, err := a.view.Access(ctx, s.UserID, pathVar(r, "roomId"))
	if err != nil {
		return nil, err
	}
	parent, err := a.view.VisibleEvent(ctx, acc, pathVar(r, "eventId"))
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
	from, to, err := a.view.PageRange(ctx, acc, q.Get("from"), q.Get("to"), backwards)
	if err != nil {
		return nil, err
	}
	if tok := q.Get("from"); tok != "" {
		resp["prev_batch"] = tok
	}
	f := storage.RelationFilter{RoomNID: acc.Info.NID, EventID: parent.EventID, RelType: pathVar(r, "relType"),
		EventType: pathVar(r, "eventType"), Depth: depth}
	ignored := a.view.IgnoredUsers(ctx, s.UserID)
	var chunk []storage.Event
	next, more := from, false
	for !more {
		batch, err := a.db.Relations(ctx, f, next, to, backwards, relationsBatch)
		if err != nil {
			return nil, err
		}
		for i := range batch {
			e := &batch[i]
			if acc.Viewer.CanSee(e) && !ignored[e.Sender] {
				if len(chunk) == limit {
					more = true
					break
				}
				e.ViewerMembership = acc.Viewer.MembershipAt(e)
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
	resp["chunk"] = a.view.ClientEvents(ctx, chunk, s.DeviceID)
	if more {
		resp["next_batch"] = roomview.TopoToken(next)
	}
	return resp, nil
}

// getThreads serves GET /_matrix/client/v1/rooms/{roomId}/threads: the
// room's thread roots, most recently active first, each with its bundled
// m.thread aggregation.
func (a *API) getThreads(r *http.Request, s *accounts.Session) (any, error) {
	ctx := r.Context()
	acc, err := a.view.Access(ctx, s.UserID, pathVar(r, "roomId"))
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
	pos, err := a.view.TopoLimit(ctx, acc)
	if err != nil {
		return nil, err
	}
	if tok := q.Get("from"); tok != "" {
		from, err := a.view.TopoFromToken(ctx, acc.Info.NID, tok)
		if err != nil {
			return nil, err
		}
		if from.Less(pos) {
			pos = from
		}
	}
	ignored := a.view.IgnoredUsers(ctx, s.UserID)
	var chunk []storage.Event
	more := false
	for !more {
		roots, err := a.db.ThreadRoots(ctx, acc.Info.NID, pos, participant, relationsBatch)
		if err != nil {
			return nil, err
		}
		for _, root := range roots {
			if acc.Viewer.CanSee(&root.Event) && (acc.UpTo == 0 || root.StreamPos <= acc.UpTo) {
				if len(chunk) == limit {
					more = true
					break
				}
				if ignored[root.Sender] {
					// Spec: a root sent by an ignored user is returned redacted.
					root.Event = redactedCopy(root.Event)
				}
				root.Event.ViewerMembership = acc.Viewer.MembershipAt(&root.Event)
				chunk = append(chunk, root.Event)
			}
			pos = storage.TopoPos{Depth: root.Latest.Depth, NID: root.Latest.NID - 1}
		}
		if len(roots) < relationsBatch {
			break
		}
	}
	resp := map[string]any{"chunk": a.view.ClientEvents(ctx, chunk, s.DeviceID)}
	if more {
		resp["next_batch"] = roomview.TopoToken(pos)
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
