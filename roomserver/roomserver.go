// Package roomserver is the only writer of room state. Every event, whatever
// its origin, goes through one pipeline: build (local events) or parse,
// authorise against the state before it, update the room's state and DAG
// head, persist atomically with a stream position, then wake waiters.
// Events of one room are processed serially; rooms proceed in parallel and
// their writes share group commits.
package roomserver

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

// maxEventSize is the spec's limit on an event's JSON.
const maxEventSize = 65536

// maxChainLen bounds a snapshot's delta chain before a full copy is stored.
const maxChainLen = 32

// maxPrevEvents bounds prev_events of local events.
const maxPrevEvents = 10

// Roomserver processes and stores room events.
type Roomserver struct {
	db     *storage.DB
	origin spec.ServerName
	keyID  gomatrixserverlib.KeyID
	key    ed25519.PrivateKey
	now    func() time.Time

	mu    sync.Mutex
	rooms map[string]*room

	pushRules rulesCache
	// txns are the sends with a transaction ID under way.
	txns txnCalls
	// noticesUser is the server notices user ("" when notices are off).
	noticesUser string
	noticesCfg  NoticesConfig
	// noticesMu serialises server notices (notices.go).
	noticesMu sync.Mutex
}

// Options configures a Roomserver.
type Options struct {
	ServerName string
	KeyID      string
	PrivateKey ed25519.PrivateKey
	// ServerNoticesUser is the user server notices come from, if any: the
	// rooms it shares with users are their server notices rooms.
	ServerNoticesUser string
	ServerNotices     NoticesConfig
}

// New returns a Roomserver on db.
func New(db *storage.DB, opts Options) *Roomserver {
	return &Roomserver{
		db:     db,
		origin: spec.ServerName(opts.ServerName),
		keyID:  gomatrixserverlib.KeyID(opts.KeyID),
		key:    opts.PrivateKey,
		now:    time.Now,
		rooms:  make(map[string]*room),

		noticesUser: opts.ServerNoticesUser,
		noticesCfg:  opts.ServerNotices,
	}
}

// ServerName is this server's name.
func (rs *Roomserver) ServerName() string { return string(rs.origin) }

// room is the in-memory head of a room. Fields under "head" describe the
// room including events queued but not yet committed and are guarded by mu;
// the persisted fields are touched only by write closures on the storage
// writer goroutine, which runs them in queue order.
type room struct {
	mu      sync.Mutex
	id      string
	version gomatrixserverlib.IRoomVersion

	// head
	state       map[gomatrixserverlib.StateKeyTuple]gomatrixserverlib.PDU
	extremities []string
	maxDepth    int64

	// persisted
	nid      int64
	snapshot int64
	chainLen int
	nids     map[storage.StateKey]int64

	// pending waits for the room's last queued write (under mu).
	pending func() error

	// broken is set when a queued write failed: the in-memory head no longer
	// matches the database and the room must be reloaded.
	broken atomic.Bool
}

// userIDForSender maps sender IDs to user IDs (they are equal outside
// pseudonymous-ID rooms, which this server does not offer).
func userIDForSender(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) {
	return spec.NewUserID(string(s), true)
}

// room returns the loaded room, loading it on first use.
func (rs *Roomserver) room(ctx context.Context, roomID string) (*room, error) {
	rs.mu.Lock()
	r, ok := rs.rooms[roomID]
	rs.mu.Unlock()
	if ok && !r.broken.Load() {
		return r, nil
	}
	info, err := rs.db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, ErrRoomNotFound
	}
	if err != nil {
		return nil, err
	}
	r, err = rs.loadRoom(ctx, info)
	if err != nil {
		return nil, err
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if cur, ok := rs.rooms[roomID]; ok && !cur.broken.Load() {
		return cur, nil // loaded concurrently
	}
	rs.rooms[roomID] = r
	return r, nil
}

func (rs *Roomserver) loadRoom(ctx context.Context, info *storage.Room) (*room, error) {
	ver, err := gomatrixserverlib.GetRoomVersion(gomatrixserverlib.RoomVersion(info.Version))
	if err != nil {
		return nil, fmt.Errorf("room %s has unknown version %q", info.ID, info.Version)
	}
	r := &room{
		id: info.ID, version: ver, nid: info.NID, snapshot: info.Snapshot, chainLen: info.ChainLen,
		extremities: info.Extremities, maxDepth: info.MaxDepth,
		state: map[gomatrixserverlib.StateKeyTuple]gomatrixserverlib.PDU{},
	}
	r.nids, err = rs.db.Snapshot(ctx, info.Snapshot)
	if err != nil {
		return nil, err
	}
	ids := make([]int64, 0, len(r.nids))
	for _, nid := range r.nids {
		ids = append(ids, nid)
	}
	events, err := rs.db.EventsByNID(ctx, ids)
	if err != nil {
		return nil, err
	}
	for _, e := range events {
		pdu, err := parseStored(ver, &e)
		if err != nil {
			return nil, err
		}
		r.state[gomatrixserverlib.StateKeyTuple{EventType: pdu.Type(), StateKey: *pdu.StateKey()}] = pdu
	}
	return r, nil
}

// parseStored rebuilds a PDU from our own database.
func parseStored(ver gomatrixserverlib.IRoomVersion, e *storage.Event) (gomatrixserverlib.PDU, error) {
	pdu, err := ver.NewEventFromTrustedJSONWithEventID(e.EventID, e.JSON, e.RedactedBy != "")
	if err != nil {
		return nil, fmt.Errorf("parsing stored event %s: %w", e.EventID, err)
	}
	return pdu, nil
}

// ParseEvent parses a stored event for the APIs.
func ParseEvent(e *storage.Event) (gomatrixserverlib.PDU, error) {
	ver, err := gomatrixserverlib.GetRoomVersion(gomatrixserverlib.RoomVersion(e.RoomVersion))
	if err != nil {
		return nil, err
	}
	return parseStored(ver, e)
}

// authProvider gives the auth rules the room's current state.
func (r *room) authProvider(needed gomatrixserverlib.StateNeeded) (*gomatrixserverlib.AuthEvents, error) {
	var events []gomatrixserverlib.PDU
	for _, t := range needed.Tuples() {
		if ev, ok := r.state[t]; ok {
			events = append(events, ev)
		}
	}
	return gomatrixserverlib.NewAuthEvents(events)
}

// stateEvent returns the current state event for (type, key), or nil.
func (r *room) stateEvent(typ, key string) gomatrixserverlib.PDU {
	return r.state[gomatrixserverlib.StateKeyTuple{EventType: typ, StateKey: key}]
}

// membership returns a user's current membership ("" when none).
func (r *room) membership(userID string) string {
	ev := r.stateEvent(spec.MRoomMember, userID)
	if ev == nil {
		return ""
	}
	m, _ := ev.Membership()
	return m
}

func (rs *Roomserver) evict(r *room) {
	r.broken.Store(true)
	rs.mu.Lock()
	if rs.rooms[r.id] == r {
		delete(rs.rooms, r.id)
	}
	rs.mu.Unlock()
}

// eventMeta is what the pipeline stores beside a local event.
type eventMeta struct {
	senderDevice string
	txnID        string
	txnScope     string
}

// relation extracts m.relates_to for the relations index.
func relation(content []byte) (target, relType string) {
	var c struct {
		RelatesTo *struct {
			EventID string `json:"event_id"`
			RelType string `json:"rel_type"`
		} `json:"m.relates_to"`
	}
	if json.Unmarshal(content, &c) != nil || c.RelatesTo == nil {
		return "", ""
	}
	return c.RelatesTo.EventID, c.RelatesTo.RelType
}

// isNoticesRoom reports whether r is a server notices room: one the
// notices user is joined to (as in Synapse).
func (rs *Roomserver) isNoticesRoom(r *room) bool {
	if rs.noticesUser == "" {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.membership(rs.noticesUser) == spec.Join
}
