package roomview

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strconv"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/clientapi/filter"
	"matrixhs/internal/httputil"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

// Access is what a user may read of a room.
type Access struct {
	Info   *storage.Room
	Viewer *roomserver.Viewer
	// UpTo bounds reads for users who left: the position of their leave.
	// 0 means the user may read up to now.
	UpTo int64
	// Ignored are the senders whose non-state events the reader ignores
	// (m.ignored_user_list, see ignore.go); pages leave them out.
	Ignored map[string]bool
	// StreamBound, when not 0, leaves out of pages the events that reached
	// the stream after it: a backwards page from a sync token shows what
	// came before that sync, not a fork's events it already delivered
	// (as Synapse bounds such a page by the token's stream position).
	StreamBound int64
}

// Access decides whether the user may read the room: members may, former
// members may up to their departure, anyone may read world_readable rooms.
func (rv *Reader) Access(ctx context.Context, userID, roomID string) (*Access, error) {
	info, err := rv.db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.Forbidden("You are not a member of this room")
	}
	if err != nil {
		return nil, err
	}
	v, err := rv.rooms.Viewer(ctx, info.NID, userID)
	if err != nil {
		return nil, err
	}
	acc := &Access{Info: info, Viewer: v}
	switch v.Membership() {
	case spec.Join:
		return acc, nil
	case spec.Leave, spec.Ban:
		forgotten, err := rv.db.Forgotten(ctx, userID, info.NID)
		if err != nil {
			return nil, err
		}
		if !forgotten {
			if !v.WorldReadable() {
				acc.UpTo = v.LastMembershipPos()
			}
			return acc, nil
		}
	}
	if v.WorldReadable() {
		return acc, nil
	}
	return nil, httputil.Forbidden("You are not a member of this room")
}

// StateEvents returns the room state the user may see: current, or as of
// their departure.
func (rv *Reader) StateEvents(ctx context.Context, acc *Access, typ string) ([]storage.Event, error) {
	if acc.UpTo == 0 {
		return rv.db.CurrentStateEvents(ctx, acc.Info.NID, typ)
	}
	return rv.StateAtPos(ctx, acc.Info.NID, acc.UpTo, typ)
}

// StateAtPos returns a room's state at stream position pos (of type typ
// only, unless typ is ""), sorted by type and state key.
func (rv *Reader) StateAtPos(ctx context.Context, roomNID, pos int64, typ string) ([]storage.Event, error) {
	state, err := rv.db.StateAt(ctx, roomNID, pos)
	if err != nil {
		return nil, err
	}
	nids := make([]int64, 0, len(state))
	for k, nid := range state {
		if typ == "" || k.Type == typ {
			nids = append(nids, nid)
		}
	}
	events, err := rv.db.EventsByNID(ctx, nids)
	if err != nil {
		return nil, err
	}
	sort.Slice(events, func(i, j int) bool {
		if events[i].Type != events[j].Type {
			return events[i].Type < events[j].Type
		}
		return *events[i].StateKey < *events[j].StateKey
	})
	return events, nil
}

// ContentString is a string field of an event's content ("" if absent or
// not a string).
func ContentString(eventJSON []byte, field string) string {
	var e struct {
		Content map[string]json.RawMessage `json:"content"`
	}
	if json.Unmarshal(eventJSON, &e) != nil {
		return ""
	}
	var s string
	json.Unmarshal(e.Content[field], &s)
	return s
}

// Content is an event's content, undecoded.
func Content(eventJSON []byte) json.RawMessage {
	var e struct {
		Content json.RawMessage `json:"content"`
	}
	json.Unmarshal(eventJSON, &e)
	return e.Content
}

// Pagination tokens are stream positions with a letter prefix ("t123");
// bare numbers and sync tokens ("s123") are accepted too.
func MakeToken(pos int64) string { return "t" + strconv.FormatInt(pos, 10) }

// ParseToken reads a stream position from a pagination or sync token.
func ParseToken(tok string) (int64, error) {
	s := strings.TrimLeft(tok, "ts")
	if i := strings.IndexAny(s, "_~."); i >= 0 {
		s = s[:i]
	}
	pos, err := strconv.ParseInt(s, 10, 64)
	if err != nil || pos < 0 {
		return 0, httputil.InvalidParam("invalid pagination token %q", tok)
	}
	return pos, nil
}

// pageScanBudget bounds the stored events one page reads for limit results:
// where most events are hidden from the user or fail the filter, the page
// comes back short (with a token to go on from) instead of reading the
// room's whole history in one request.
func pageScanBudget(limit int) int { return max(4*limit, 400) }

// Page collects up to limit visible events matching f from the room,
// starting after position from in the given direction. next is where a
// following page starts, -1 when the room has nothing more in that
// direction; a page shorter than limit with next >= 0 ran out of scan
// budget, not of events.
func (rv *Reader) Page(ctx context.Context, acc *Access, f *filter.RoomEventFilter, from, to int64, backwards bool, limit int) (events []storage.Event, next int64, err error) {
	next = from
	// Read a little more than asked (some events may be hidden), not a
	// hundred full events for a one-event sliding-sync timeline.
	batchSize := min(max(2*limit, 8), 100)
	for scanned := 0; len(events) < limit && scanned < pageScanBudget(limit); scanned += batchSize {
		var batch []storage.Event
		batch, err = rv.db.Timeline(ctx, acc.Info.NID, next, to, backwards, batchSize)
		if err != nil {
			return nil, 0, err
		}
		for i := range batch {
			e := &batch[i]
			if backwards {
				next = e.StreamPos - 1
			} else {
				next = e.StreamPos
			}
			if acc.Viewer.CanSee(e) && !acc.Ignores(e) && f.Matches(e.RoomID, e.Type, e.Sender, Content(e.JSON)) {
				e.ViewerMembership = acc.Viewer.MembershipAt(e)
				events = append(events, *e)
				if len(events) == limit {
					return events, next, nil
				}
			}
		}
		if len(batch) < batchSize {
			return events, -1, nil // exhausted
		}
	}
	return events, next, nil
}

// VisibleEvent loads an event of the room the user may see, else 404.
func (rv *Reader) VisibleEvent(ctx context.Context, acc *Access, eventID string) (*storage.Event, error) {
	e, err := rv.db.EventByID(ctx, eventID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && (e.RoomNID != acc.Info.NID || e.StreamPos == 0 ||
		(acc.UpTo != 0 && e.StreamPos > acc.UpTo) || !acc.Viewer.CanSee(e))) {
		return nil, httputil.NotFound("Event not found")
	}
	if err == nil {
		e.ViewerMembership = acc.Viewer.MembershipAt(e)
	}
	return e, err
}
