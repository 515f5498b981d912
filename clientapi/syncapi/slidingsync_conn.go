package syncapi

import (
	"sort"
	"strconv"
	"strings"
	"sync"

	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// Sliding-sync connection bookkeeping (see slidingsync.go).

// Connections are bounded per device, per user and in total. Past a bound
// the least recently used connection goes (its client gets M_UNKNOWN_POS and
// starts over): the device's or the user's own, so one user opening
// connections in a loop only ever drops their own; past the total, one of
// the user holding the most, so a newcomer takes a slot from the heaviest
// user, never from a lighter one.
const (
	maxSSConnsPerDevice = 10
	maxSSConnsPerUser   = 100
	maxSSConns          = 5000
)

type ssConnKey struct{ user, device, conn string }

type ssConns struct {
	mu    sync.Mutex
	users map[string]map[ssConnKey]*ssConn
	total int
	clock uint64
	// The bounds (the constants above; tests use smaller ones).
	perDevice, perUser, max int
}

func newSSConns() *ssConns {
	return &ssConns{users: map[string]map[ssConnKey]*ssConn{},
		perDevice: maxSSConnsPerDevice, perUser: maxSSConnsPerUser, max: maxSSConns}
}

// ssConn is one connection: its sticky parameters and the last responses'
// positions (the newest two: a client may retry a request whose response it
// never got).
type ssConn struct {
	mu       sync.Mutex
	used     uint64 // guarded by ssConns.mu
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
	conns := c.users[key.user]
	conn := conns[key]
	if pos == "" {
		// No position: the client starts the connection over.
		if conns == nil {
			conns = map[ssConnKey]*ssConn{}
			c.users[key.user] = conns
		}
		if conn == nil {
			c.total++
		}
		conn = &ssConn{sent: map[int64]*ssSent{}, used: c.clock}
		conns[key] = conn
		c.evictLocked(key)
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

// evictLocked enforces the bounds after key's connection was added.
func (c *ssConns) evictLocked(key ssConnKey) {
	conns := c.users[key.user]
	onDevice := 0
	for k := range conns {
		if k.device == key.device {
			onDevice++
		}
	}
	if onDevice > c.perDevice {
		c.dropLRULocked(key.user, func(k ssConnKey) bool { return k.device == key.device && k != key })
	}
	if len(conns) > c.perUser {
		c.dropLRULocked(key.user, func(k ssConnKey) bool { return k != key })
	}
	if c.total > c.max {
		// The user holding the most connections gives one up; on a tie,
		// the requesting user does.
		heaviest := key.user
		for u, cs := range c.users {
			if len(cs) > len(c.users[heaviest]) {
				heaviest = u
			}
		}
		c.dropLRULocked(heaviest, func(k ssConnKey) bool { return k != key })
	}
}

// dropLRULocked drops the least recently used of the user's connections
// that pass eligible.
func (c *ssConns) dropLRULocked(user string, eligible func(ssConnKey) bool) {
	conns := c.users[user]
	var oldest ssConnKey
	found := false
	for k, conn := range conns {
		if eligible(k) && (!found || conn.used < conns[oldest].used) {
			oldest, found = k, true
		}
	}
	if !found {
		return
	}
	delete(conns, oldest)
	c.total--
	if len(conns) == 0 {
		delete(c.users, user)
	}
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
		if *e.ToDevice.Limit < 0 {
			return nil, httputil.InvalidParam("to_device.limit must not be negative")
		}
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
