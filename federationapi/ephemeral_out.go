package federationapi

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/sirupsen/logrus"

	"matrixhs/internal/ephemeral"
	"matrixhs/storage"
)

// maxPendingReceipts bounds the receipts waiting to be queued (one per
// room, user and thread: a newer one replaces its predecessor).
const maxPendingReceipts = 10_000

// ephemeralOut sends local typing, receipts and presence to other
// servers. The service tells it what changed (it never blocks the caller);
// one goroutine reads the current state back and queues the EDUs, so a
// burst of changes costs one EDU and a stop is never overtaken by the
// start before it.
type ephemeralOut struct {
	db         *storage.DB
	serverName string
	eph        *ephemeral.Service
	queue      EDUQueue
	opts       EDUOptions
	log        logrus.FieldLogger
	now        func() time.Time

	mu       sync.Mutex
	typing   map[typingKey]bool
	presence map[string]bool
	receipts map[receiptKey]ephemeral.Receipt
	wake     chan struct{}

	// Owned by the goroutine: what was last sent, for pings and decay.
	sentTyping   map[typingKey]time.Time // local users typing, when last sent
	sentPresence map[string]sentPresence
	// checkedPos is the stream position when the servers sharing rooms
	// with online users were last looked at (newcomers get their presence).
	checkedPos int64

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

type typingKey struct{ roomID, userID string }

type receiptKey struct{ roomID, userID, threadID string }

type sentPresence struct {
	p     ephemeral.Presence
	at    time.Time
	dests []string // the servers told, sorted
	// newcomers are servers that came to share a room with the user
	// since: told of the unchanged presence on newcomerSchedule.
	newcomers map[string]newcomer
}

type newcomer struct {
	seen time.Time
	told int
}

// newcomerSchedule is when a server that came to share a room with an
// online user is told of the user's presence, after it was first seen in
// the room: the room's join completes on that server a moment after this
// server took it, and presence for a room the server is not in yet is
// refused there, so it is told again a few times.
var newcomerSchedule = []time.Duration{0, 2 * time.Second, 10 * time.Second, 30 * time.Second}

func newEphemeralOut(db *storage.DB, serverName string, eph *ephemeral.Service, queue EDUQueue, opts EDUOptions,
	log logrus.FieldLogger, now func() time.Time) *ephemeralOut {
	ctx, cancel := context.WithCancel(context.Background())
	o := &ephemeralOut{
		db: db, serverName: serverName, eph: eph, queue: queue, opts: opts, log: log, now: now,
		typing: map[typingKey]bool{}, presence: map[string]bool{}, receipts: map[receiptKey]ephemeral.Receipt{},
		wake:       make(chan struct{}, 1),
		sentTyping: map[typingKey]time.Time{}, sentPresence: map[string]sentPresence{},
		ctx: ctx, cancel: cancel, done: make(chan struct{}),
	}
	go o.run()
	return o
}

func (o *ephemeralOut) local(userID string) bool {
	_, server, ok := strings.Cut(userID, ":")
	return ok && server == o.serverName
}

func (o *ephemeralOut) poke() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// TypingChanged implements ephemeral.Federation.
func (o *ephemeralOut) TypingChanged(roomID, userID string) {
	if !o.local(userID) {
		return
	}
	o.mu.Lock()
	o.typing[typingKey{roomID, userID}] = true
	o.mu.Unlock()
	o.poke()
}

// ReceiptStored implements ephemeral.Federation.
func (o *ephemeralOut) ReceiptStored(r ephemeral.Receipt) {
	if !o.local(r.UserID) || r.Type != ephemeral.ReceiptTypes[0] {
		return
	}
	o.mu.Lock()
	k := receiptKey{r.RoomID, r.UserID, r.ThreadID}
	if _, ok := o.receipts[k]; ok || len(o.receipts) < maxPendingReceipts {
		o.receipts[k] = r
	} else {
		o.log.WithField("room_id", r.RoomID).Warn("too many receipts waiting for other servers: one dropped")
	}
	o.mu.Unlock()
	o.poke()
}

// PresenceChanged implements ephemeral.Federation.
func (o *ephemeralOut) PresenceChanged(userID string) {
	if !o.local(userID) {
		return
	}
	o.mu.Lock()
	o.presence[userID] = true
	o.mu.Unlock()
	o.poke()
}

func (o *ephemeralOut) stop() {
	o.cancel()
	<-o.done
}

// run queues what changed as it is told, and looks at typing pings,
// presence decay and remote presence expiry every Tick.
func (o *ephemeralOut) run() {
	defer close(o.done)
	tick := time.NewTicker(o.opts.Tick)
	defer tick.Stop()
	for {
		select {
		case <-o.ctx.Done():
			o.flushReceipts()
			return
		case <-o.wake:
			o.drain(o.ctx)
		case <-tick.C:
			o.periodic(o.ctx)
			o.drain(o.ctx)
		}
	}
}

// take empties the pending sets.
func (o *ephemeralOut) take() (typing []typingKey, presence []string, receipts []ephemeral.Receipt) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for k := range o.typing {
		typing = append(typing, k)
	}
	for u := range o.presence {
		presence = append(presence, u)
	}
	for _, r := range o.receipts {
		receipts = append(receipts, r)
	}
	clear(o.typing)
	clear(o.presence)
	clear(o.receipts)
	return typing, presence, receipts
}

// drain queues EDUs for everything pending.
func (o *ephemeralOut) drain(ctx context.Context) {
	typing, presence, receipts := o.take()
	for _, k := range typing {
		o.report(k.roomID, o.sendTyping(ctx, k, false))
	}
	for _, r := range receipts {
		o.report(r.RoomID, o.sendReceipt(ctx, r))
	}
	for _, u := range presence {
		o.report("", o.sendPresence(ctx, u))
	}
}

// flushReceipts queues the receipts still waiting when stopping (the
// database is still open: Stop comes first).
func (o *ephemeralOut) flushReceipts() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, receipts := o.take()
	for _, r := range receipts {
		o.report(r.RoomID, o.sendReceipt(ctx, r))
	}
}

func (o *ephemeralOut) report(roomID string, err error) {
	if err != nil && o.ctx.Err() == nil {
		o.log.WithError(err).WithField("room_id", roomID).Warn("queueing an EDU for other servers")
	}
}

// periodic repeats ongoing typing, sends presence that decayed or is due a
// repeat (or to servers that came to share a room with the user since),
// and expires other servers' stale presence.
func (o *ephemeralOut) periodic(ctx context.Context) {
	now := o.now()
	for k, at := range o.sentTyping {
		if now.Sub(at) >= o.opts.TypingPing {
			o.report(k.roomID, o.sendTyping(ctx, k, true))
		}
	}
	// Rooms changed (joins among them): look for newcomers.
	pos := o.db.StreamPosition()
	checkNewcomers := pos != o.checkedPos
	o.checkedPos = pos
	for u, last := range o.sentPresence {
		cur, _ := o.eph.Presence(u)
		if cur.Presence != last.p.Presence || cur.CurrentlyActive != last.p.CurrentlyActive || cur.StatusMsg != last.p.StatusMsg ||
			now.Sub(last.at) >= o.opts.PresencePing {
			o.report("", o.sendPresence(ctx, u))
		} else {
			o.report("", o.presenceToNewcomers(ctx, u, last, cur, checkNewcomers))
		}
	}
	o.eph.ExpireRemotePresence()
}

// presenceToNewcomers sends a user's unchanged presence to the servers
// that came to share a room with the user since it was last sent (Synapse
// sends it when a server joins); look: the rooms changed, so there may be
// new ones.
func (o *ephemeralOut) presenceToNewcomers(ctx context.Context, userID string, last sentPresence, cur ephemeral.Presence, look bool) error {
	now := o.now()
	if look {
		servers, err := o.db.ServersSharingRooms(ctx, userID)
		if err != nil {
			return fmt.Errorf("presence of %s: %w", userID, err)
		}
		for _, s := range o.others(servers) {
			if _, known := slices.BinarySearch(last.dests, s); !known {
				if last.newcomers == nil {
					last.newcomers = map[string]newcomer{}
				}
				last.newcomers[s] = newcomer{seen: now}
			}
		}
		last.dests = o.others(servers)
	}
	var due []string
	for s, nc := range last.newcomers {
		if now.Sub(nc.seen) >= newcomerSchedule[nc.told] {
			due = append(due, s)
			if nc.told++; nc.told == len(newcomerSchedule) {
				delete(last.newcomers, s)
			} else {
				last.newcomers[s] = nc
			}
		}
	}
	o.sentPresence[userID] = last
	if len(due) == 0 {
		return nil
	}
	slices.Sort(due)
	return o.queueEDU(ctx, due, "m.presence", presenceContent(userID, cur))
}

// roomServers lists the servers joined to a room.
func (o *ephemeralOut) roomServers(ctx context.Context, roomID string) ([]string, error) {
	info, err := o.db.Room(ctx, roomID)
	if err != nil {
		return nil, err
	}
	return o.db.JoinedServers(ctx, info.NID)
}

// others is servers without this one.
func (o *ephemeralOut) others(servers []string) []string {
	out := servers[:0:0]
	for _, s := range servers {
		if s != o.serverName {
			out = append(out, s)
		}
	}
	return out
}

func (o *ephemeralOut) queueEDU(ctx context.Context, dests []string, typ string, content any) error {
	if len(dests) == 0 {
		return nil
	}
	raw, err := json.Marshal(content)
	if err != nil {
		return err
	}
	return o.queue.QueueEDU(ctx, dests, gomatrixserverlib.EDU{Type: typ, Content: spec.RawJSON(raw)})
}

// sendTyping queues a user's typing state in a room for its other
// servers, when it differs from what they were last told or a ping is due.
func (o *ephemeralOut) sendTyping(ctx context.Context, k typingKey, ping bool) error {
	typing := o.eph.IsTyping(k.roomID, k.userID)
	last, sent := o.sentTyping[k]
	switch {
	case !typing && !sent:
		return nil // they were never told it started
	case typing && sent && !ping && o.now().Sub(last) < o.opts.TypingPing:
		return nil // still typing: the next ping keeps it up
	}
	if typing {
		o.sentTyping[k] = o.now()
	} else {
		delete(o.sentTyping, k)
	}
	servers, err := o.roomServers(ctx, k.roomID)
	if err != nil {
		return fmt.Errorf("typing of %s: %w", k.userID, err)
	}
	return o.queueEDU(ctx, o.others(servers), "m.typing", map[string]any{
		"room_id": k.roomID, "user_id": k.userID, "typing": typing,
	})
}

// sendReceipt queues a public read receipt for the room's other servers.
func (o *ephemeralOut) sendReceipt(ctx context.Context, r ephemeral.Receipt) error {
	servers, err := o.roomServers(ctx, r.RoomID)
	if err != nil {
		return fmt.Errorf("receipt of %s: %w", r.UserID, err)
	}
	data := map[string]any{"ts": r.TS}
	if r.ThreadID != "" {
		data["thread_id"] = r.ThreadID
	}
	return o.queueEDU(ctx, o.others(servers), "m.receipt", map[string]any{
		r.RoomID: map[string]any{r.Type: map[string]any{r.UserID: map[string]any{"event_ids": []string{r.EventID}, "data": data}}},
	})
}

// sendPresence queues a user's current presence for the servers sharing a
// room with the user (nothing when presence is off).
func (o *ephemeralOut) sendPresence(ctx context.Context, userID string) error {
	if !o.eph.PresenceEnabled() {
		return nil
	}
	p, _ := o.eph.Presence(userID)
	servers, err := o.db.ServersSharingRooms(ctx, userID)
	if err != nil {
		return fmt.Errorf("presence of %s: %w", userID, err)
	}
	dests := o.others(servers)
	if p.Presence == "offline" {
		delete(o.sentPresence, userID)
	} else {
		// Newcomers not told often enough yet stay on their schedule.
		o.sentPresence[userID] = sentPresence{p: p, at: o.now(), dests: dests, newcomers: o.sentPresence[userID].newcomers}
	}
	return o.queueEDU(ctx, dests, "m.presence", presenceContent(userID, p))
}

// presenceContent is an m.presence EDU of one user.
func presenceContent(userID string, p ephemeral.Presence) map[string]any {
	push := map[string]any{"user_id": userID, "presence": p.Presence, "last_active_ago": p.LastActiveAgo}
	if p.StatusMsg != "" {
		push["status_msg"] = p.StatusMsg
	}
	if p.Presence == "online" {
		push["currently_active"] = p.CurrentlyActive
	}
	return map[string]any{"push": []any{push}}
}
