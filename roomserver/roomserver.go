// Package roomserver is the only writer of room state. Every event, whatever
// its origin, goes through one pipeline: build (local events) or check
// (events from elsewhere: input*.go, one file per step of the spec's checks
// on receipt of a PDU), update the room's state and DAG head, persist
// atomically with a stream position, then wake waiters. Events of one room
// are processed serially; rooms proceed in parallel and their writes share
// group commits.
package roomserver

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/lru"
	"matrixhs/storage"
)

// maxEventSize is the spec's limit on an event's JSON.
const maxEventSize = 65536

// maxPrevEvents bounds prev_events of local events.
const maxPrevEvents = 10

// Default cache sizes: room heads kept in memory and parsed events shared
// by all rooms.
const (
	defaultRoomCacheSize  = 1000
	defaultEventCacheSize = 4096
)

// Roomserver processes and stores room events.
type Roomserver struct {
	db     *storage.DB
	origin spec.ServerName
	keyID  gomatrixserverlib.KeyID
	key    ed25519.PrivateKey
	now    func() time.Time

	// rooms are the heads of recently used rooms; a head with writes in
	// flight is never dropped.
	rooms *lru.Cache[string, *room]
	// events are parsed events of any room, by event ID.
	events *lru.Cache[string, cachedEvent]
	// chains caches auth chains for state resolution.
	chains *authChainCache
	// views caches what state snapshots say for history visibility.
	views *lru.Cache[snapViewKey, snapView]
	// verifier checks the signatures of events from other servers (nil:
	// the caller vouches for them, as tests do).
	verifier gomatrixserverlib.JSONVerifier
	// remote reaches other servers for rooms this server is not in (nil:
	// every room is local); see remote.go.
	remote Remote
	// backfiller fetches history from other servers (backfill.go; nil:
	// none), backfills runs one backfill per room at a time.
	backfiller Backfiller
	backfills  backfillGuard

	pushRules rulesCache
	// txns are the sends with a transaction ID under way.
	txns txnCalls
	// noticesUser is the server notices user ("" when notices are off).
	noticesUser string
	noticesCfg  NoticesConfig
	// noticesMu serialises server notices (notices.go).
	noticesMu sync.Mutex
	// purging holds the IDs of rooms being purged (forget.go).
	purging sync.Map
}

// Options configures a Roomserver.
type Options struct {
	ServerName string
	KeyID      string
	PrivateKey ed25519.PrivateKey
	// RoomCacheSize and EventCacheSize bound the room heads and parsed
	// events kept in memory (0: defaults).
	RoomCacheSize  int
	EventCacheSize int
	// Verifier checks remote events' signatures (federation's key ring).
	Verifier gomatrixserverlib.JSONVerifier
	// ServerNoticesUser is the user server notices come from, if any: the
	// rooms it shares with users are their server notices rooms.
	ServerNoticesUser string
	ServerNotices     NoticesConfig
}

// New returns a Roomserver on db.
func New(db *storage.DB, opts Options) *Roomserver {
	if opts.RoomCacheSize <= 0 {
		opts.RoomCacheSize = defaultRoomCacheSize
	}
	if opts.EventCacheSize <= 0 {
		opts.EventCacheSize = defaultEventCacheSize
	}
	rs := &Roomserver{
		db:       db,
		origin:   spec.ServerName(opts.ServerName),
		keyID:    gomatrixserverlib.KeyID(opts.KeyID),
		key:      opts.PrivateKey,
		now:      time.Now,
		rooms:    lru.New[string, *room](opts.RoomCacheSize),
		events:   lru.New[string, cachedEvent](opts.EventCacheSize),
		chains:   newAuthChainCache(opts.EventCacheSize),
		views:    lru.New[snapViewKey, snapView](opts.EventCacheSize),
		verifier: opts.Verifier,

		noticesUser: opts.ServerNoticesUser,
		noticesCfg:  opts.ServerNotices,
	}
	rs.rooms.KeepIf(func(_ string, r *room) bool { return !r.retire() })
	return rs
}

// ServerName is this server's name.
func (rs *Roomserver) ServerName() string { return string(rs.origin) }

// userIDForSender maps sender IDs to user IDs (they are equal outside
// pseudonymous-ID rooms, which this server does not offer).
func userIDForSender(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) {
	return spec.NewUserID(string(s), true)
}

// room returns the room's head, loading it on first use.
func (rs *Roomserver) room(ctx context.Context, roomID string) (*room, error) {
	if _, ok := rs.purging.Load(roomID); ok {
		return nil, errPurging
	}
	if r, ok := rs.rooms.Get(roomID); ok && !r.broken.Load() {
		return r, nil
	}
	info, err := rs.db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, ErrRoomNotFound
	}
	if err != nil {
		return nil, err
	}
	r, err := rs.loadRoom(ctx, info)
	if err != nil {
		return nil, err
	}
	if cur, ok := rs.rooms.Get(roomID); ok && !cur.broken.Load() {
		return cur, nil // loaded concurrently
	}
	rs.rooms.Add(roomID, r)
	return r, nil
}

// loadRoom builds a room head from storage: the current state as event
// references, with the events themselves loaded when needed.
func (rs *Roomserver) loadRoom(ctx context.Context, info *storage.Room) (*room, error) {
	ver, err := gomatrixserverlib.GetRoomVersion(gomatrixserverlib.RoomVersion(info.Version))
	if err != nil {
		return nil, errors.New("room " + info.ID + " has unknown version " + info.Version)
	}
	r := newRoom(info.ID, ver)
	r.nid.Store(info.NID)
	r.extremities, r.maxDepth = info.Extremities, info.MaxDepth
	refs, err := rs.db.SnapshotRefs(ctx, info.Snapshot)
	if err != nil {
		return nil, err
	}
	var localJoined []string
	for k, ref := range refs {
		t := gomatrixserverlib.StateKeyTuple{EventType: k.Type, StateKey: k.StateKey}
		r.setRef(t, stateRef{id: ref.EventID, value: ref.Value})
		if k.Type == spec.MRoomMember && ref.Value == spec.Join && rs.isLocal(k.StateKey) {
			localJoined = append(localJoined, ref.EventID)
		}
	}
	// Display names of local members, for push rules (contains_display_name).
	for _, id := range localJoined {
		pdu, err := rs.loadEvent(ctx, r, id)
		if err != nil {
			return nil, err
		}
		r.local[*pdu.StateKey()] = memberDisplayName(pdu)
	}
	if create, err := rs.stateEvent(ctx, r, spec.MRoomCreate, ""); err != nil {
		return nil, err
	} else if create != nil {
		r.creators = creatorsOf(ver, create)
	}
	return r, nil
}

// parseStored rebuilds a PDU from our own database.
func parseStored(ver gomatrixserverlib.IRoomVersion, e *storage.Event) (gomatrixserverlib.PDU, error) {
	pdu, err := ver.NewEventFromTrustedJSONWithEventID(e.EventID, e.JSON, e.RedactedBy != "")
	if err != nil {
		return nil, errors.New("parsing stored event " + e.EventID + ": " + err.Error())
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

// loadEvent returns an event of the room: one queued but not yet committed,
// a cached one, or one read from storage.
func (rs *Roomserver) loadEvent(ctx context.Context, r *room, id string) (gomatrixserverlib.PDU, error) {
	if pdu := r.pinnedEvent(id); pdu != nil {
		return pdu, nil
	}
	if c, ok := rs.events.Get(id); ok {
		return c.pdu, nil
	}
	e, err := rs.db.EventByID(ctx, id)
	if err != nil {
		return nil, err
	}
	pdu, err := parseStored(r.version, e)
	if err != nil {
		return nil, err
	}
	rs.events.Add(id, cachedEvent{pdu: pdu, status: EventStatus(e.Status)})
	return pdu, nil
}

// cachedEvent is a stored event, parsed, with its status when it was
// cached (an outlier may have been promoted since; a rejected event stays
// rejected, and an event not rejected is never rejected later).
type cachedEvent struct {
	pdu    gomatrixserverlib.PDU
	status EventStatus
}

// stateEvent returns the room's current state event for (type, key), nil
// when unset.
func (rs *Roomserver) stateEvent(ctx context.Context, r *room, typ, key string) (gomatrixserverlib.PDU, error) {
	ref, ok := r.ref(typ, key)
	if !ok {
		return nil, nil
	}
	return rs.loadEvent(ctx, r, ref.id)
}

// evict drops a room's head (after a failed write, or to reload it).
func (rs *Roomserver) evict(r *room) {
	r.broken.Store(true)
	rs.rooms.Remove(r.id, func(cur *room) bool { return cur == r })
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
