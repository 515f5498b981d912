package clientapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/clientapi/filter"
	"matrixhs/clientapi/internal/roomview"
	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// searchKeys maps the searchable keys to the event type holding them.
var searchKeys = map[string]string{
	"content.body":  "m.room.message",
	"content.name":  "m.room.name",
	"content.topic": "m.room.topic",
}

const (
	searchDefaultLimit   = 10
	searchMaxLimit       = 100
	searchContextDefault = 5
	searchContextMax     = 100
)

type searchRequest struct {
	SearchCategories *struct {
		RoomEvents *roomEventsCriteria `json:"room_events"`
	} `json:"search_categories"`
}

type roomEventsCriteria struct {
	SearchTerm   *string                 `json:"search_term"`
	Keys         []string                `json:"keys"`
	Filter       *filter.RoomEventFilter `json:"filter"`
	OrderBy      string                  `json:"order_by"`
	EventContext *struct {
		BeforeLimit    *int `json:"before_limit"`
		AfterLimit     *int `json:"after_limit"`
		IncludeProfile bool `json:"include_profile"`
	} `json:"event_context"`
	IncludeState bool `json:"include_state"`
	Groupings    *struct {
		GroupBy []struct {
			Key string `json:"key"`
		} `json:"group_by"`
	} `json:"groupings"`
}

// searchToken is the state a next_batch token carries: where the previous
// page ended, the stream position the first page searched up to (later
// events stay out, so pages do not shift), and the group it is scoped to.
type searchToken struct {
	Order  string `json:"o"`
	Offset int    `json:"n,omitempty"`
	Pos    int64  `json:"p,omitempty"`
	UpTo   int64  `json:"u"`
	Room   string `json:"r,omitempty"`
	Sender string `json:"f,omitempty"`
}

func (t searchToken) at(c storage.SearchCursor) searchToken {
	t.Offset, t.Pos = c.Offset, c.Pos
	return t
}

func (t searchToken) encode() string {
	raw, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(raw)
}

func parseSearchToken(s string) (*searchToken, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	var t searchToken
	if err != nil || json.Unmarshal(raw, &t) != nil || t.UpTo <= 0 || t.Offset < 0 || t.Pos < 0 || (t.Order != "rank" && t.Order != "recent") {
		return nil, httputil.InvalidParam("invalid next_batch token")
	}
	return &t, nil
}

// search serves POST /_matrix/client/v3/search: full-text search of the
// events the user may see in the rooms they are or were joined to
// (room_events, the only category). Rooms with encryption enabled are left
// out, as the spec says (their messages are ciphertext anyway).
func (a *API) search(r *http.Request, s *accounts.Session) (any, error) {
	var req searchRequest
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.SearchCategories == nil {
		return nil, httputil.MissingParam("search_categories is required")
	}
	crit := req.SearchCategories.RoomEvents
	if crit == nil {
		return map[string]any{"search_categories": map[string]any{}}, nil
	}
	res, err := a.searchRoomEvents(r.Context(), s, crit, r.URL.Query().Get("next_batch"))
	if err != nil {
		return nil, err
	}
	return map[string]any{"search_categories": map[string]any{"room_events": res}}, nil
}

func (a *API) searchRoomEvents(ctx context.Context, s *accounts.Session, crit *roomEventsCriteria, nextBatch string) (map[string]any, error) {
	if crit.SearchTerm == nil {
		return nil, httputil.MissingParam("room_events.search_term is required")
	}
	order := crit.OrderBy
	if order == "" {
		order = "rank"
	}
	if order != "rank" && order != "recent" {
		return nil, httputil.InvalidParam("order_by must be rank or recent")
	}
	// The event types searched: those of the keys, narrowed by the filter's types.
	keys := crit.Keys
	if len(keys) == 0 {
		keys = []string{"content.body", "content.name", "content.topic"}
	}
	f := crit.Filter
	types := []string{}
	for _, k := range keys {
		typ, ok := searchKeys[k]
		if !ok {
			return nil, httputil.InvalidParam("keys may only hold content.body, content.name and content.topic, not %q", k)
		}
		if f == nil || (&filter.EventFilter{Types: f.Types, NotTypes: f.NotTypes}).Matches(typ, "") {
			types = append(types, typ)
		}
	}
	groupBy := []string{}
	if crit.Groupings != nil {
		for _, g := range crit.Groupings.GroupBy {
			if g.Key != "room_id" && g.Key != "sender" {
				return nil, httputil.InvalidParam("groupings may only group by room_id or sender, not %q", g.Key)
			}
			groupBy = append(groupBy, g.Key)
		}
	}
	beforeN, afterN := -1, -1
	if ec := crit.EventContext; ec != nil {
		beforeN, afterN = searchContextDefault, searchContextDefault
		if ec.BeforeLimit != nil {
			beforeN = *ec.BeforeLimit
		}
		if ec.AfterLimit != nil {
			afterN = *ec.AfterLimit
		}
		if beforeN < 0 || afterN < 0 {
			return nil, httputil.InvalidParam("event_context limits must not be negative")
		}
		beforeN, afterN = min(beforeN, searchContextMax), min(afterN, searchContextMax)
	}
	if f != nil && f.Limit != nil && *f.Limit < 0 {
		return nil, httputil.InvalidParam("filter.limit must not be negative")
	}
	limit := f.LimitOr(searchDefaultLimit)
	if limit <= 0 {
		limit = searchDefaultLimit
	}
	limit = min(limit, searchMaxLimit)

	tok := &searchToken{Order: order, UpTo: a.db.StreamPosition()}
	var after *storage.SearchCursor
	if nextBatch != "" {
		var err error
		if tok, err = parseSearchToken(nextBatch); err != nil {
			return nil, err
		}
		if tok.Order != order {
			return nil, httputil.InvalidParam("next_batch belongs to a search with another order_by")
		}
		after = &storage.SearchCursor{Offset: tok.Offset, Pos: tok.Pos}
	}

	// Where the user may find results: the visible stretches of the rooms
	// they were ever joined to, as the rooms' history visibility and the
	// user's membership decide (the same Viewer /messages uses).
	rooms, err := a.db.SearchRooms(ctx, s.UserID)
	if err != nil {
		return nil, err
	}
	access := map[int64]*roomview.Access{}
	var windows []storage.SearchWindow
	for _, room := range rooms {
		if room.Encrypted || (tok.Room != "" && room.ID != tok.Room) || !searchRoomAllowed(f, room.ID) {
			continue
		}
		acc, err := a.view.Access(ctx, s.UserID, room.ID)
		var he *httputil.Error
		if errors.As(err, &he) && he.Status == http.StatusForbidden {
			continue
		}
		if err != nil {
			return nil, err
		}
		access[room.NID] = acc
		upTo := tok.UpTo
		if acc.UpTo != 0 {
			upTo = min(upTo, acc.UpTo)
		}
		windows = append(windows, visibleWindows(room.NID, room.Marks, upTo, acc)...)
	}

	q := storage.SearchQuery{Term: *crit.SearchTerm, Types: types, Windows: windows, UpTo: tok.UpTo,
		Recent: order == "recent", After: after, Limit: limit, Groups: len(groupBy) > 0}
	if f != nil {
		if f.Senders != nil {
			q.Senders = *f.Senders
		}
		q.NotSenders = f.NotSenders
		q.ContainsURL = f.ContainsURL
	}
	if tok.Sender != "" {
		if q.Senders != nil && !slices.Contains(q.Senders, tok.Sender) {
			q.Senders = []string{}
		} else {
			q.Senders = []string{tok.Sender}
		}
	}
	page, err := a.db.SearchEvents(ctx, q)
	if errors.Is(err, storage.ErrEmptySearch) {
		return map[string]any{"count": 0, "highlights": []string{}, "results": []any{}}, nil
	}
	if err != nil {
		return nil, err
	}

	// Load the page's events, in result order.
	nids := make([]int64, len(page.Hits))
	for i, h := range page.Hits {
		nids[i] = h.EventNID
	}
	loaded, err := a.db.EventsByNID(ctx, nids)
	if err != nil {
		return nil, err
	}
	byNID := make(map[int64]*storage.Event, len(loaded))
	for i := range loaded {
		byNID[loaded[i].NID] = &loaded[i]
	}
	var events []storage.Event
	var ranks []float64
	for _, h := range page.Hits {
		e := byNID[h.EventNID]
		acc := access[h.RoomNID]
		// The windows decided visibility; the filter and the viewer
		// check each result once more, as /messages does.
		if e == nil || acc == nil || e.RedactedBy != "" || !acc.Viewer.CanSee(e) || !f.Matches(e.RoomID, e.Type, e.Sender, roomview.Content(e.JSON)) {
			continue
		}
		e.ViewerMembership = acc.Viewer.MembershipAt(e)
		events = append(events, *e)
		ranks = append(ranks, h.Rank)
	}
	rendered := a.view.ClientEvents(ctx, events, s.DeviceID)
	results := make([]map[string]any, 0, len(events))
	for i := range events {
		res := map[string]any{"rank": ranks[i], "result": rendered[i]}
		if beforeN >= 0 {
			c, err := a.searchContext(ctx, s, access[events[i].RoomNID], &events[i], beforeN, afterN, crit.EventContext.IncludeProfile)
			if err != nil {
				return nil, err
			}
			res["context"] = c
		}
		results = append(results, res)
	}

	highlights := page.Highlights
	if highlights == nil {
		highlights = []string{}
	}
	out := map[string]any{"count": page.Count, "highlights": highlights, "results": results}
	// As Synapse, a full page has a next_batch even when nothing follows
	// (the next request then comes back empty, without one).
	if page.More || (len(page.Hits) > 0 && len(page.Hits) >= limit) {
		out["next_batch"] = tok.at(page.Next).encode()
	}
	if len(groupBy) > 0 {
		out["groups"] = searchGroups(groupBy, page, events, *tok)
	}
	if crit.IncludeState {
		state := map[string]any{}
		for _, e := range events {
			if _, done := state[e.RoomID]; done {
				continue
			}
			st, err := a.view.StateEvents(ctx, access[e.RoomNID], "")
			if err != nil {
				return nil, err
			}
			state[e.RoomID] = a.view.ClientEvents(ctx, st, s.DeviceID)
		}
		out["state"] = state
	}
	return out, nil
}

// searchRoomAllowed applies a filter's rooms and not_rooms.
func searchRoomAllowed(f *filter.RoomEventFilter, roomID string) bool {
	if f == nil {
		return true
	}
	if slices.Contains(f.NotRooms, roomID) {
		return false
	}
	return f.Rooms == nil || slices.Contains(*f.Rooms, roomID)
}

// visibleWindows turns what the viewer lets the user see of a room into
// ranges of stream positions up to upTo. Visibility of events other than
// membership and history_visibility changes (which are never searched) is
// constant between two marks, so one probe per stretch decides it; the
// marks themselves may join two visible stretches.
func visibleWindows(roomNID int64, marks []int64, upTo int64, acc *roomview.Access) []storage.SearchWindow {
	var out []storage.SearchWindow
	lo := int64(1)
	for i := 0; i <= len(marks) && lo <= upTo; i++ {
		hi := upTo
		if i < len(marks) {
			hi = min(marks[i]-1, upTo)
		}
		if lo <= hi && acc.Viewer.CanSee(&storage.Event{Type: "m.room.message", StreamPos: lo - 1}) {
			if n := len(out); n > 0 && out[n-1].To+2 >= lo {
				out[n-1].To = hi
			} else {
				out = append(out, storage.SearchWindow{RoomNID: roomNID, From: lo, To: hi})
			}
		}
		if i < len(marks) {
			lo = max(lo, marks[i]+1)
		}
	}
	return out
}

// searchGroups partitions the page's results by room or sender. A group
// gets a next_batch when it has results after this page: the same search,
// restricted to the group, from where the group stands.
func searchGroups(groupBy []string, page *storage.SearchPage, events []storage.Event, tok searchToken) map[string]any {
	groups := map[string]any{}
	for _, key := range groupBy {
		g := map[string]map[string]any{}
		for _, e := range events {
			value, state, scoped := e.RoomID, page.Rooms[e.RoomNID], tok
			scoped.Room = e.RoomID
			if key == "sender" {
				value, state, scoped = e.Sender, page.Senders[e.Sender], tok
				scoped.Sender = e.Sender
			}
			entry, ok := g[value]
			if !ok {
				entry = map[string]any{"order": len(g) + 1, "results": []string{}}
				if state.More {
					entry["next_batch"] = scoped.at(state.Next).encode()
				}
				g[value] = entry
			}
			entry["results"] = append(entry["results"].([]string), e.EventID)
		}
		groups[key] = g
	}
	return groups
}

// searchContext is a result's context: the visible events around it,
// pagination tokens and, when asked, the senders' profiles as of the last
// of those events.
func (a *API) searchContext(ctx context.Context, s *accounts.Session, acc *roomview.Access, e *storage.Event, beforeN, afterN int, withProfile bool) (map[string]any, error) {
	sc, err := a.view.ContextAround(ctx, acc, nil, e, beforeN, afterN)
	if err != nil {
		return nil, err
	}
	before, after := sc.Before, sc.After
	last := e
	if len(after) > 0 {
		last = &after[len(after)-1]
	}
	c := map[string]any{
		"start":         roomview.TopoToken(sc.Start),
		"end":           roomview.TopoToken(sc.End),
		"events_before": a.view.ClientEvents(ctx, before, s.DeviceID),
		"events_after":  a.view.ClientEvents(ctx, after, s.DeviceID),
	}
	if withProfile {
		senders := map[string]bool{e.Sender: true}
		for _, x := range append(append([]storage.Event{}, before...), after...) {
			senders[x.Sender] = true
		}
		state, err := a.view.StateAfterEvent(ctx, last, spec.MRoomMember)
		if err != nil {
			return nil, err
		}
		var members []storage.Event
		for _, m := range state {
			if senders[*m.StateKey] {
				members = append(members, m)
			}
		}
		profiles := map[string]map[string]string{}
		for _, m := range members {
			p := map[string]string{}
			if d := roomview.ContentString(m.JSON, "displayname"); d != "" {
				p["displayname"] = d
			}
			if av := roomview.ContentString(m.JSON, "avatar_url"); av != "" {
				p["avatar_url"] = av
			}
			profiles[*m.StateKey] = p
		}
		c["profile_info"] = profiles
	}
	return c, nil
}
