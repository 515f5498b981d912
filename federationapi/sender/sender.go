// Package sender delivers this server's events and EDUs to the other
// servers of its rooms, built like internal/pushgateway's sender: a reader
// consumes the committed stream by position and queues every new local
// event for the servers in its room; one worker per destination with work
// sends one transaction at a time, backs off when the destination fails,
// and exists only while the destination has something queued. The
// database is the queue: nothing queued is lost on restart.
//
// Rules:
//   - Which events: accepted timeline events (positive stream position)
//     whose sender is a user of this server.
//   - Destinations: the servers with a joined member in the state before
//     the event (so the last member of a server that is kicked or banned
//     still hears of it), plus, for a member event, the server of its
//     state_key (invites, kicks, bans and leaves of remote users); never
//     this server.
//   - Transactions: up to 50 PDUs and 100 EDUs, oldest first. A
//     transaction's rows are fixed when it starts (only catch-up may drop
//     its PDUs) and are sent again under the same ID until the destination
//     answers, so the receiver's per-origin idempotency drops a retry
//     whose first answer was lost (also across restarts).
//   - Answers: 200 removes the rows (per-PDU errors in the answer are
//     logged); 400, 403, 404 and 413 drop the transaction (sending the same
//     one again cannot succeed; the destination fetches missing events
//     later); anything else backs off: 1 s doubling with jitter, never
//     more than 60 s, so a server that comes back is retried within a
//     minute. ResetBackoff, which the inbound side calls on any
//     authenticated request from a server, retries at once.
//   - Catch-up: a destination retried after failures gets only the
//     newest Options.CatchUpPerRoom events of each room, those of its
//     transaction in flight included (as Synapse, the destination fills
//     the gap with /get_missing_events and /backfill; old events sent
//     after newer ones from other servers would be the newest there), and
//     queued typing and presence EDUs (stale by then) are dropped. The
//     transaction in flight keeps its ID and EDUs. Other EDUs are kept:
//     to-device messages are delivered exactly once (never collapsed,
//     never put in two transactions, retried under their transaction's ID;
//     only a refusal drops them with their transaction); keyed EDUs
//     (typing per room and user, receipts per room, type, user and thread,
//     presence per user) replace their queued predecessor when queued,
//     which bounds them.
package sender

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/matrix-org/gomatrix"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/sirupsen/logrus"

	"matrixhs/internal/backoff"
	"matrixhs/storage"
)

// Transport sends a transaction to t.Destination. The outbound federation
// client (gomatrixserverlib's fclient.FederationClient) is one.
type Transport interface {
	SendTransaction(ctx context.Context, t gomatrixserverlib.Transaction) (fclient.RespSend, error)
}

// Spec limits of one transaction.
const (
	MaxPDUsPerTxn = 50
	MaxEDUsPerTxn = 100
)

// MaxBackoffLimit is the longest a destination is left alone after a
// failure: a server that comes back is retried within it.
const MaxBackoffLimit = 60 * time.Second

// Options tune a Sender; zero values take the defaults.
type Options struct {
	// InitialBackoff is the wait after a first failure; it doubles with
	// each further one up to MaxBackoff (at most MaxBackoffLimit).
	InitialBackoff time.Duration // default 1s
	MaxBackoff     time.Duration // default and cap MaxBackoffLimit
	// RequestTimeout bounds one transaction request.
	RequestTimeout time.Duration // default 60s
	// MaxInFlight bounds transactions in flight across all destinations.
	MaxInFlight int // default 16
	// CatchUpThreshold is how many events (in flight included) may queue
	// for a destination in backoff before its queue collapses to the
	// newest CatchUpPerRoom events of each room when it is retried; 0:
	// always collapse (Synapse's catch-up); negative: never collapse.
	CatchUpThreshold int // default 0
	CatchUpPerRoom   int // default 5
}

func (o Options) withDefaults() Options {
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = time.Second
	}
	if o.MaxBackoff <= 0 || o.MaxBackoff > MaxBackoffLimit {
		o.MaxBackoff = MaxBackoffLimit
	}
	o.InitialBackoff = min(o.InitialBackoff, o.MaxBackoff)
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 60 * time.Second
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 16
	}
	if o.CatchUpPerRoom <= 0 {
		o.CatchUpPerRoom = 5
	}
	return o
}

// readBatch bounds the events the stream reader reads at a time.
const readBatch = 256

// cursorEvery is how far the stream reader may move past its saved cursor
// without queueing anything before it saves it again (a restart rereads at
// most that much).
const cursorEvery = 1000

// serverCacheSize bounds the cached "servers in a snapshot" answers.
const serverCacheSize = 4096

// Sender delivers PDUs and EDUs to other servers in the background.
type Sender struct {
	db         *storage.DB
	transport  Transport
	serverName string
	log        logrus.FieldLogger
	opts       Options
	slots      chan struct{}
	now        func() time.Time

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	started bool
	workers map[string]*worker

	// Owned by the stream reader (run).
	cursor, savedCursor int64
	servers             map[int64][]string // snapshot NID -> joined servers
}

// New builds a Sender for serverName sending through t; Start starts it.
func New(db *storage.DB, serverName string, t Transport, log logrus.FieldLogger, opts Options) *Sender {
	opts = opts.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Sender{
		db: db, transport: t, serverName: serverName, log: log.WithField("component", "federation-sender"), opts: opts,
		slots: make(chan struct{}, opts.MaxInFlight), now: time.Now, ctx: ctx, cancel: cancel,
		workers: map[string]*worker{}, servers: map[int64][]string{},
	}
}

// Start starts delivering in the background (once): destinations with
// queued work from before resume, and new local events are queued as they
// are committed.
func (s *Sender) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.ctx.Err() != nil {
		return
	}
	s.started = true
	s.wg.Add(1)
	go s.run()
}

// Stop cancels transactions in flight and waits for every goroutine to
// end. Call it before closing the database. Queued work is sent after the
// next start.
func (s *Sender) Stop() {
	// Under mu, so no poke starts a worker once Wait may have begun.
	s.mu.Lock()
	s.cancel()
	s.mu.Unlock()
	s.wg.Wait()
}

// ResetBackoff retries a destination in backoff at once: the inbound side
// calls it on any authenticated request from server, which is up then.
// It costs a map lookup when the server has nothing queued.
func (s *Sender) ResetBackoff(server string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.workers[server]; w != nil {
		w.reset = true
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// run queues local events as the stream advances (the cursor is saved in
// the same write as the rows it queued).
func (s *Sender) run() {
	defer s.wg.Done()
	defer s.saveCursor()
	resumed := false
	for {
		changed, upTo := s.db.Changes()
		var err error
		if !resumed {
			err = s.resume()
			resumed = err == nil
		}
		if err == nil {
			err = s.consume(upTo)
		}
		var retry <-chan time.Time
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			s.log.WithError(err).Warn("queueing events for other servers")
			retry = time.After(s.opts.InitialBackoff)
		}
		select {
		case <-s.ctx.Done():
			return
		case <-changed:
		case <-retry:
		}
	}
}

// resume loads the cursor and starts a worker for every destination with
// queued work.
func (s *Sender) resume() error {
	pos, err := s.db.FederationCursor(s.ctx)
	if err != nil {
		return err
	}
	s.cursor, s.savedCursor = pos, pos
	dests, err := s.db.FederationDestinationsPending(s.ctx)
	if err != nil {
		return err
	}
	for _, d := range dests {
		s.poke(d)
	}
	return nil
}

// consume queues the local events in (cursor, upTo] for their destinations.
func (s *Sender) consume(upTo int64) error {
	for s.cursor < upTo {
		evs, err := s.db.StreamEventsAfter(s.ctx, s.cursor, upTo, readBatch)
		if err != nil {
			return err
		}
		next := upTo
		if len(evs) == readBatch {
			next = evs[len(evs)-1].StreamPos
		}
		var rows []storage.QueuedPDU
		for _, ev := range evs {
			if serverOf(ev.Sender) != s.serverName {
				continue
			}
			dests, err := s.destinations(ev)
			if err != nil {
				return err
			}
			for _, d := range dests {
				rows = append(rows, storage.QueuedPDU{Destination: d, EventNID: ev.NID, RoomNID: ev.RoomNID})
			}
		}
		if len(rows) > 0 || next-s.savedCursor >= cursorEvery {
			err := s.db.Write(s.ctx, func(tx *storage.Tx) error {
				if err := tx.QueueFederationPDUs(s.ctx, rows); err != nil {
					return err
				}
				return tx.SetFederationCursor(s.ctx, next)
			})
			if err != nil {
				return err
			}
			s.savedCursor = next
			s.pokeAll(rows)
		}
		s.cursor = next
	}
	return nil
}

// saveCursor records how far the reader got when it stops (what it read
// since it last saved queued nothing).
func (s *Sender) saveCursor() {
	if s.cursor <= s.savedCursor {
		return
	}
	pos := s.cursor
	if err := s.write(func(ctx context.Context, tx *storage.Tx) error { return tx.SetFederationCursor(ctx, pos) }); err != nil {
		s.log.WithError(err).Warn("saving the federation cursor")
		return
	}
	s.savedCursor = pos
}

func (s *Sender) pokeAll(rows []storage.QueuedPDU) {
	var last string
	for _, r := range rows {
		// Rows come grouped by event, so destinations repeat; poke is cheap.
		if r.Destination != last {
			s.poke(r.Destination)
			last = r.Destination
		}
	}
}

// destinations lists where a local event goes (see routeTo).
func (s *Sender) destinations(ev storage.StreamEventMeta) ([]string, error) {
	joined, err := s.joinedServers(ev.StateBefore)
	if err != nil {
		return nil, err
	}
	return routeTo(joined, ev.Type, ev.StateKey, s.serverName, ""), nil
}

// routeTo lists the destinations of an event: the servers joined in the
// state before it, and the target's server of a member event; never self
// nor except.
func routeTo(joined []string, typ string, stateKey *string, self, except string) []string {
	out := make([]string, 0, len(joined)+1)
	add := func(d string) {
		if d != "" && d != self && d != except && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	for _, d := range joined {
		add(d)
	}
	if typ == spec.MRoomMember && stateKey != nil {
		add(serverOf(*stateKey))
	}
	return out
}

// joinedServers is JoinedServersInSnapshot, cached: consecutive messages of
// a room share the state before them.
func (s *Sender) joinedServers(snapshot int64) ([]string, error) {
	if servers, ok := s.servers[snapshot]; ok {
		return servers, nil
	}
	servers, err := s.db.JoinedServersInSnapshot(s.ctx, snapshot)
	if err != nil {
		return nil, err
	}
	if len(s.servers) >= serverCacheSize {
		clear(s.servers)
	}
	s.servers[snapshot] = servers
	return servers, nil
}

// QueueEDU queues an EDU for each destination (this server and duplicates
// are skipped); it is sent with the destination's next transaction. The
// EDU's origin and destination are set when it is sent.
func (s *Sender) QueueEDU(ctx context.Context, destinations []string, edu gomatrixserverlib.EDU) error {
	err := s.db.Write(ctx, func(tx *storage.Tx) error { return s.QueueEDUTx(ctx, tx, destinations, edu) })
	if err != nil {
		return fmt.Errorf("queueing a %s EDU: %w", edu.Type, err)
	}
	return nil
}

// QueueEDUTx is QueueEDU as part of the write tx: the EDU is queued (and
// its destinations woken) only if the write commits, so it goes out
// exactly when what it reports happened.
func (s *Sender) QueueEDUTx(ctx context.Context, tx *storage.Tx, destinations []string, edu gomatrixserverlib.EDU) error {
	if edu.Type == "" {
		return errors.New("queueing an EDU: no type")
	}
	content := []byte(edu.Content)
	if len(content) == 0 {
		content = []byte("{}")
	}
	if !json.Valid(content) {
		return fmt.Errorf("queueing a %s EDU: content is not JSON", edu.Type)
	}
	key := eduKey(edu.Type, content)
	var dests []string
	for _, d := range destinations {
		if d != "" && d != s.serverName && !slices.Contains(dests, d) {
			dests = append(dests, d)
		}
	}
	for _, d := range dests {
		if err := tx.QueueFederationEDU(ctx, storage.QueuedEDU{Destination: d, Type: edu.Type, Key: key, Content: content}); err != nil {
			return err
		}
	}
	if len(dests) > 0 {
		tx.OnCommit(func() {
			for _, d := range dests {
				s.poke(d)
			}
		})
	}
	return nil
}

// Forward queues a stored event of another server for the servers of its
// room except origin (which sent it) and this one: the resident server's
// duty for the joins, leaves and knocks it receives through send_join,
// send_leave and send_knock.
func (s *Sender) Forward(ctx context.Context, eventID, origin string) error {
	ev, err := s.db.EventByID(ctx, eventID)
	if err != nil {
		return fmt.Errorf("forwarding %s: %w", eventID, err)
	}
	if ev.Status != storage.EventAccepted || ev.StreamPos <= 0 {
		return fmt.Errorf("forwarding %s: not in the timeline", eventID)
	}
	// The reader owns the snapshot cache: ask storage directly.
	joined, err := s.db.JoinedServersInSnapshot(ctx, ev.StateBefore)
	if err != nil {
		return err
	}
	dests := routeTo(joined, ev.Type, ev.StateKey, s.serverName, origin)
	if len(dests) == 0 {
		return nil
	}
	rows := make([]storage.QueuedPDU, len(dests))
	for i, d := range dests {
		rows[i] = storage.QueuedPDU{Destination: d, EventNID: ev.NID, RoomNID: ev.RoomNID}
	}
	if err := s.db.Write(ctx, func(tx *storage.Tx) error { return tx.QueueFederationPDUs(ctx, rows) }); err != nil {
		return fmt.Errorf("forwarding %s: %w", eventID, err)
	}
	s.pokeAll(rows)
	return nil
}

// poke makes sure a worker looks at the destination's queue (once
// started: Start resumes every destination with queued work).
func (s *Sender) poke(dest string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started || s.ctx.Err() != nil {
		return
	}
	if w := s.workers[dest]; w != nil {
		w.again = true
		return
	}
	w := &worker{dest: dest, wake: make(chan struct{}, 1)}
	s.workers[dest] = w
	s.wg.Add(1)
	go s.work(w)
}

// write runs a write that must land even when shutdown began meanwhile
// (so a transaction the destination took is not sent again for nothing);
// fn's statements run with the ctx it is given, which outlives s.ctx.
func (s *Sender) write(fn func(context.Context, *storage.Tx) error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 10*time.Second)
	defer cancel()
	return s.db.Write(ctx, func(tx *storage.Tx) error { return fn(ctx, tx) })
}

// serverOf is the server part of a user ID ("" if it has none).
func serverOf(userID string) string {
	_, server, ok := strings.Cut(userID, ":")
	if !ok {
		return ""
	}
	return server
}

// backoff is the wait after the given number of consecutive failures.
func (s *Sender) backoff(failures int) time.Duration {
	return backoff.After(failures, s.opts.InitialBackoff, s.opts.MaxBackoff)
}

// refused reports whether err is an answer that sending the same
// transaction again cannot change.
func refused(err error) (int, bool) {
	var he gomatrix.HTTPError
	var hp *gomatrix.HTTPError
	code := 0
	switch {
	case errors.As(err, &he):
		code = he.Code
	case errors.As(err, &hp) && hp != nil:
		code = hp.Code
	default:
		var sc interface{ StatusCode() int }
		if errors.As(err, &sc) {
			code = sc.StatusCode()
		}
	}
	switch code {
	case 400, 403, 404, 413:
		return code, true
	}
	return code, false
}
