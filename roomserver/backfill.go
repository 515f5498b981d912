package roomserver

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

// Backfill fetches history this server lacks of a room (before a late
// join, or a gap left by downtime) from the other servers in the room,
// when a client pages back through where the known history breaks off. It
// is bounded: a
// call asks at most backfillServers servers, each under a deadline, and a
// room whose servers had nothing is left alone for a while, so a client's
// /messages never waits long on servers that do not answer.

// Backfiller is a Fetcher that can also page a room's history backwards
// (/backfill): federation's client in production.
type Backfiller interface {
	Fetcher
	// Backfill fetches up to limit events preceding (and including) the
	// events named in from.
	Backfill(ctx context.Context, origin spec.ServerName, roomID string, from []string, limit int) ([]json.RawMessage, error)
}

const (
	// backfillServers is how many servers one call tries.
	backfillServers = 2
	// backfillRequestTimeout bounds one /backfill request, and
	// backfillTimeout a whole call (fetching state included).
	backfillRequestTimeout = 5 * time.Second
	backfillTimeout        = 20 * time.Second
	// backfillQuiet is how long a room whose servers had nothing to give
	// is not asked again.
	backfillQuiet = 30 * time.Second
	// historyGapScan bounds the events of a range checked for prev events
	// not held; maxBackfillFrom bounds the events a request starts from.
	historyGapScan  = 1000
	maxBackfillFrom = 5
	// MaxBackfillLimit bounds the events one request asks for.
	MaxBackfillLimit = 100
)

// backfillGuard runs one backfill per room at a time and remembers the
// rooms to leave alone for now.
type backfillGuard struct {
	mu       sync.Mutex
	inflight map[string]*backfillCall
	quiet    map[string]time.Time
}

type backfillCall struct {
	done chan struct{}
	n    int
}

// SetBackfiller sets what fetches history from other servers (nil: no
// backfill). Set it before serving.
func (rs *Roomserver) SetBackfiller(b Backfiller) { rs.backfiller = b }

// Backfill asks other servers of the room for up to limit events of the
// history missing behind its timeline events in (lo, hi] (topological
// positions: the events a page of /messages covered), nearest hi first,
// and stores them as backfilled history (KindBackfill: /messages pages
// through them, /sync never sees them). It returns how many events were
// stored. Servers that fail or do not answer are not errors; a call made
// while another is under way for the room waits for that one.
func (rs *Roomserver) Backfill(ctx context.Context, roomID string, lo, hi storage.TopoPos, limit int) (int, error) {
	if rs.backfiller == nil {
		return 0, nil
	}
	limit = min(max(limit, 1), MaxBackfillLimit)
	g := &rs.backfills
	g.mu.Lock()
	if g.inflight == nil {
		g.inflight, g.quiet = map[string]*backfillCall{}, map[string]time.Time{}
	}
	if c, ok := g.inflight[roomID]; ok {
		g.mu.Unlock()
		select {
		case <-c.done:
			return c.n, nil
		case <-ctx.Done():
			return 0, nil
		}
	}
	now := rs.now()
	if until, ok := g.quiet[roomID]; ok && now.Before(until) {
		g.mu.Unlock()
		return 0, nil
	}
	c := &backfillCall{done: make(chan struct{})}
	g.inflight[roomID] = c
	g.mu.Unlock()

	n, asked, err := rs.backfill(ctx, roomID, lo, hi, limit)

	g.mu.Lock()
	delete(g.inflight, roomID)
	if asked && n == 0 && err == nil {
		for id, until := range g.quiet {
			if now.After(until) {
				delete(g.quiet, id)
			}
		}
		g.quiet[roomID] = now.Add(backfillQuiet)
	}
	c.n = n
	close(c.done)
	g.mu.Unlock()
	return n, err
}

// backfill fills the gaps behind the events in (lo, hi]; asked reports
// whether there were any and servers to ask.
func (rs *Roomserver) backfill(ctx context.Context, roomID string, lo, hi storage.TopoPos, limit int) (n int, asked bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, backfillTimeout)
	defer cancel()
	fr, err := rs.FederationRoom(ctx, roomID)
	if errors.Is(err, ErrRoomNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	gaps, err := rs.db.HistoryGaps(ctx, fr.NID, lo, hi, historyGapScan)
	if err != nil || len(gaps) == 0 {
		return 0, false, err
	}
	gaps = gaps[:min(len(gaps), maxBackfillFrom)]
	servers, err := rs.db.JoinedServers(ctx, fr.NID)
	if err != nil {
		return 0, false, err
	}
	tried := 0
	for _, s := range servers {
		server := spec.ServerName(s)
		if server == rs.origin {
			continue
		}
		if tried == backfillServers || ctx.Err() != nil {
			break
		}
		tried++
		n, err := rs.backfillFrom(ctx, fr, server, gaps, limit)
		if err != nil || n > 0 {
			return n, true, err
		}
	}
	return 0, tried > 0, nil
}

// backfillFrom asks one server; its failures (which the Backfiller logs)
// count as nothing received.
func (rs *Roomserver) backfillFrom(ctx context.Context, fr *FederationRoom, server spec.ServerName, from []string, limit int) (int, error) {
	rctx, cancel := context.WithTimeout(ctx, backfillRequestTimeout)
	raw, err := rs.backfiller.Backfill(rctx, server, fr.ID, from, limit)
	cancel()
	if err != nil {
		return 0, nil
	}
	if len(raw) > limit {
		raw = raw[:limit]
	}
	pdus, err := rs.newRemoteEvents(ctx, fr, raw)
	if err != nil || len(pdus) == 0 {
		return 0, err
	}
	in := make([]InputEvent, len(pdus))
	for i, p := range pdus {
		in[i] = InputEvent{Kind: KindBackfill, Event: p, Origin: server}
	}
	res, err := rs.InputFetching(ctx, rs.backfiller, in)
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil // the deadline: what was stored stays
		}
		return 0, err
	}
	n := 0
	for _, r := range res {
		if r.Err == nil && r.Status == StatusAccepted {
			n++
		}
	}
	return n, nil
}

// newRemoteEvents parses events of the room from another server, leaves
// out those already held, and orders the rest oldest first.
func (rs *Roomserver) newRemoteEvents(ctx context.Context, fr *FederationRoom, raw []json.RawMessage) ([]gomatrixserverlib.PDU, error) {
	parsed, err := rs.parseRemote(fr.Version, raw)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(parsed))
	for _, p := range parsed {
		ids = append(ids, p.EventID())
	}
	held, err := rs.db.EventsByID(ctx, ids)
	if err != nil {
		return nil, err
	}
	skip := map[string]bool{}
	for _, e := range held {
		if e.Status != storage.EventOutlier {
			skip[e.EventID] = true
		}
	}
	var out []gomatrixserverlib.PDU
	for _, p := range parsed {
		if p.RoomID().String() == fr.ID && !skip[p.EventID()] {
			skip[p.EventID()] = true
			out = append(out, p)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Depth() != out[j].Depth() {
			return out[i].Depth() < out[j].Depth()
		}
		return out[i].EventID() < out[j].EventID()
	})
	return out, nil
}
