package clientapi

import (
	"sort"
	"strconv"
	"strings"
	"sync"

	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// Sliding-sync connection bookkeeping (see slidingsync.go).

// maxSSConns bounds the connections kept; past it the least recently used
// is dropped (its client gets M_UNKNOWN_POS and starts over).
const maxSSConns = 1000

type ssConnKey struct{ user, device, conn string }

type ssConns struct {
	mu    sync.Mutex
	conns map[ssConnKey]*ssConn
	clock uint64
}

func newSSConns() *ssConns { return &ssConns{conns: map[ssConnKey]*ssConn{}} }

// ssConn is one connection: its sticky parameters and the last responses'
// positions (the newest two: a client may retry a request whose response it
// never got).
type ssConn struct {
	mu       sync.Mutex
	used     uint64
	params   ssParams
	seq      int64
	sent     map[int64]*ssSent
	prevSeqs []int64
}

// ssParams are the sticky request parameters of a connection.
type ssParams struct {
	lists map[string]*ssListConfig
	subs  map[string]ssRoomConfig
	ext   ssExtensions
}

// ssSent is what the client holds after a response.
type ssSent struct {
	pos, eph int64
	rooms    map[string]ssRoomSent
	counts   map[string]int // list counts
	// What list ordering and filters read, per room NID, as of pos.
	bumps map[int64]int64
	flags map[int64]storage.RoomFlags
}

type ssRoomSent struct {
	pos        int64 // stream position the room is complete up to
	membership string
	config     ssRoomConfig
	lazy       map[string]bool // members sent under $LAZY
}

// begin finds the connection and the state the pos names; no pos starts
// the connection over.
func (c *ssConns) begin(key ssConnKey, pos string) (*ssConn, *ssSent, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clock++
	conn := c.conns[key]
	if pos == "" {
		// No position: the client starts the connection over.
		conn = &ssConn{sent: map[int64]*ssSent{}, used: c.clock}
		c.conns[key] = conn
		c.evictLocked()
		return conn, nil, nil
	}
	unknown := httputil.UnknownPos("Unknown position; start a new sliding sync connection")
	seq, err := strconv.ParseInt(pos, 10, 64)
	if conn == nil || err != nil {
		return nil, nil, unknown
	}
	conn.mu.Lock()
	defer conn.mu.Unlock()
	sent, ok := conn.sent[seq]
	if !ok {
		return nil, nil, unknown
	}
	conn.used = c.clock
	return conn, sent, nil
}

func (c *ssConns) evictLocked() {
	if len(c.conns) <= maxSSConns {
		return
	}
	var oldest ssConnKey
	first := true
	var oldestUsed uint64
	for k, conn := range c.conns {
		if first || conn.used < oldestUsed {
			oldest, oldestUsed, first = k, conn.used, false
		}
	}
	delete(c.conns, oldest)
}

// commit records what the client holds after a response and returns the
// response's pos. Only the response just given and the one before it stay
// valid.
func (conn *ssConn) commit(next *ssSent) string {
	conn.mu.Lock()
	defer conn.mu.Unlock()
	conn.seq++
	conn.sent[conn.seq] = next
	conn.prevSeqs = append(conn.prevSeqs, conn.seq)
	for len(conn.prevSeqs) > 2 {
		delete(conn.sent, conn.prevSeqs[0])
		conn.prevSeqs = conn.prevSeqs[1:]
	}
	return strconv.FormatInt(conn.seq, 10)
}

// merge applies the request's parameters over the sticky ones and returns
// a copy to build the response with.
func (conn *ssConn) merge(req *ssRequest) (*ssParams, error) {
	conn.mu.Lock()
	defer conn.mu.Unlock()
	if len(req.Lists) > maxSSLists || len(req.RoomSubscriptions) > maxSSSubscriptions {
		return nil, httputil.InvalidParam("at most %d lists and %d room subscriptions", maxSSLists, maxSSSubscriptions)
	}
	// Merged into a copy, kept only if the whole request is valid.
	p := conn.params.clone()
	for name, l := range req.Lists {
		old := p.lists[name]
		merged := &ssListConfig{}
		if old != nil {
			*merged = *old
		}
		if l.Ranges != nil {
			if len(l.Ranges) > maxSSRanges {
				return nil, httputil.InvalidParam("too many ranges in list %q", name)
			}
			merged.ranges = nil
			for _, rg := range l.Ranges {
				if len(rg) != 2 || rg[0] < 0 || rg[1] < rg[0] {
					return nil, httputil.InvalidParam("invalid range in list %q", name)
				}
				merged.ranges = append(merged.ranges, [2]int{rg[0], rg[1]})
			}
		}
		if l.RequiredState != nil {
			merged.config.RequiredState = l.RequiredState
		}
		if l.TimelineLimit != nil {
			merged.config.TimelineLimit = l.TimelineLimit
		}
		if l.Filters != nil {
			merged.Filters = l.Filters
		}
		if err := merged.config.validate(); err != nil {
			return nil, err
		}
		p.lists[name] = merged
	}
	for roomID, sub := range req.RoomSubscriptions {
		if !strings.HasPrefix(roomID, "!") || len(roomID) > 255 {
			return nil, httputil.InvalidParam("room_subscriptions keys are room IDs")
		}
		if err := sub.validate(); err != nil {
			return nil, err
		}
		p.subs[roomID] = sub
	}
	if len(p.lists) > maxSSLists || len(p.subs) > maxSSSubscriptions {
		// Sticky parameters accumulate across requests: bounded in total too.
		return nil, httputil.InvalidParam("at most %d lists and %d room subscriptions per connection", maxSSLists, maxSSSubscriptions)
	}
	e := req.Extensions
	if e.ToDevice.Enabled != nil {
		p.ext.ToDevice.Enabled = e.ToDevice.Enabled
	}
	if e.ToDevice.Limit != nil {
		p.ext.ToDevice.Limit = e.ToDevice.Limit
	}
	p.ext.ToDevice.Since = e.ToDevice.Since // not sticky: the client's own token
	for _, t := range []struct{ dst, src *ssExtToggle }{{&p.ext.E2EE, &e.E2EE}, {&p.ext.AccountData, &e.AccountData},
		{&p.ext.Receipts, &e.Receipts}, {&p.ext.Typing, &e.Typing}} {
		if t.src.Enabled != nil {
			t.dst.Enabled = t.src.Enabled
		}
	}
	conn.params = *p
	return p.clone(), nil
}

// clone copies the parameters deeply enough that merging into the copy
// leaves the original alone.
func (p *ssParams) clone() *ssParams {
	out := &ssParams{lists: map[string]*ssListConfig{}, subs: map[string]ssRoomConfig{}, ext: p.ext}
	for k, v := range p.lists {
		c := *v
		out.lists[k] = &c
	}
	for k, v := range p.subs {
		out.subs[k] = v
	}
	return out
}

func (c ssRoomConfig) validate() error {
	if c.TimelineLimit != nil && (*c.TimelineLimit < 0) {
		return httputil.InvalidParam("timeline_limit must not be negative")
	}
	if len(c.RequiredState) > maxSSRequiredState {
		return httputil.InvalidParam("at most %d required_state entries", maxSSRequiredState)
	}
	for _, rs := range c.RequiredState {
		if len(rs) != 2 {
			return httputil.InvalidParam("required_state entries are [type, state_key] pairs")
		}
	}
	return nil
}

func (c ssRoomConfig) limit() int {
	if c.TimelineLimit == nil {
		return 0
	}
	return min(*c.TimelineLimit, maxSSTimelineLimit)
}

// widen is the union of two configs: the larger timeline, all the state.
func (c ssRoomConfig) widen(o ssRoomConfig) ssRoomConfig {
	out := ssRoomConfig{RequiredState: append(append([][]string{}, c.RequiredState...), o.RequiredState...)}
	l := max(c.limit(), o.limit())
	out.TimelineLimit = &l
	sort.Slice(out.RequiredState, func(i, j int) bool {
		return strings.Join(out.RequiredState[i], "\x00") < strings.Join(out.RequiredState[j], "\x00")
	})
	dedup := out.RequiredState[:0]
	for i, rs := range out.RequiredState {
		if i == 0 || strings.Join(rs, "\x00") != strings.Join(out.RequiredState[i-1], "\x00") {
			dedup = append(dedup, rs)
		}
	}
	out.RequiredState = dedup
	return out
}

// wider reports whether c asks for more than o: a longer timeline or state
// o did not cover, so the room must be sent whole again.
func (c ssRoomConfig) wider(o ssRoomConfig) bool {
	if c.limit() > o.limit() {
		return true
	}
	have := map[string]bool{}
	for _, rs := range o.RequiredState {
		have[strings.Join(rs, "\x00")] = true
	}
	for _, rs := range c.RequiredState {
		if !have[strings.Join(rs, "\x00")] {
			return true
		}
	}
	return false
}
