package pushgateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"matrixhs/internal/safenet"
	"matrixhs/storage"
)

// Options tune a Sender; zero values take the defaults.
type Options struct {
	// InitialBackoff is the wait before the first retry after a gateway
	// failure (network error, 429 or 5xx); it doubles up to MaxBackoff.
	InitialBackoff time.Duration // default 1s
	MaxBackoff     time.Duration // default 10m
	// RequestTimeout bounds one request to a gateway.
	RequestTimeout time.Duration // default 30s
	// MaxInFlight bounds concurrent gateway requests across all pushers.
	MaxInFlight int // default 8
	// Filter decides which gateway addresses may be reached (nil: none on
	// loopback, private or other internal ranges; see package safenet).
	Filter *safenet.Filter
}

func (o Options) withDefaults() Options {
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 10 * time.Minute
	}
	o.MaxBackoff = max(o.MaxBackoff, o.InitialBackoff)
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 30 * time.Second
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 8
	}
	return o
}

// batchSize bounds the push actions one worker reads at a time.
const batchSize = 20

// maxResponseBytes bounds how much of a gateway response is read.
const maxResponseBytes = 64 << 10

// Sender delivers notifications to push gateways in the background.
type Sender struct {
	db     *storage.DB
	log    logrus.FieldLogger
	opts   Options
	client *http.Client
	slots  chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	started bool
	workers map[storage.PusherKey]*worker
}

// worker is the goroutine delivering one pusher's backlog; it exists only
// while the pusher has something to send.
type worker struct {
	key storage.PusherKey
	// again: new push actions may have arrived since the worker last looked.
	again bool
}

// New builds a Sender; Start starts it.
func New(db *storage.DB, log logrus.FieldLogger, opts Options) *Sender {
	opts = opts.withDefaults()
	// Pusher URLs are chosen by users: the gateway's address is vetted at
	// connect time and redirects are not followed (a 3xx is a refusal).
	client := safenet.NewClient(opts.Filter, safenet.ClientOptions{Timeout: opts.RequestTimeout, MaxIdleConnsPerHost: 4})
	ctx, cancel := context.WithCancel(context.Background())
	return &Sender{
		db: db, log: log.WithField("component", "pushgateway"), opts: opts, client: client,
		slots: make(chan struct{}, opts.MaxInFlight), ctx: ctx, cancel: cancel,
		workers: map[storage.PusherKey]*worker{},
	}
}

// Start starts delivering in the background (once).
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

// Stop cancels in-flight requests and waits for every goroutine to end. Call
// it before closing the database. Undelivered notifications stay pending
// and are sent after the next start.
func (s *Sender) Stop() {
	s.cancel()
	s.wg.Wait()
}

// run wakes on every stream advance and starts a worker for each pusher with
// pending push actions.
func (s *Sender) run() {
	defer s.wg.Done()
	var retry <-chan time.Time
	for {
		changed, pos := s.db.Changes()
		retry = nil
		if err := s.dispatch(pos); err != nil {
			if s.ctx.Err() != nil {
				return
			}
			s.log.WithError(err).Warn("checking pushers for pending notifications")
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

func (s *Sender) dispatch(upTo int64) error {
	due, orphans, err := s.db.PushersDue(s.ctx, upTo)
	if err != nil {
		return err
	}
	if orphans {
		// Pushers go with their device (as in Synapse, where deleting a
		// device deletes its pushers).
		var n int
		err := s.db.Write(s.ctx, func(tx *storage.Tx) (err error) {
			n, err = tx.DeleteOrphanedPushers(s.ctx)
			return err
		})
		if err != nil {
			return err
		}
		s.log.WithField("count", n).Info("removed the pushers of deleted devices")
	}
	for _, k := range due {
		s.poke(k)
	}
	return nil
}

// poke makes sure a worker looks at k's pending push actions.
func (s *Sender) poke(k storage.PusherKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.workers[k]; w != nil {
		w.again = true
		return
	}
	w := &worker{key: k}
	s.workers[k] = w
	// run is itself counted in wg, so Add never races with Stop's Wait.
	s.wg.Add(1)
	go s.work(w)
}

// finish retires w unless it was poked since it last looked for work.
func (s *Sender) finish(w *worker) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.again && s.ctx.Err() == nil {
		w.again = false
		return false
	}
	delete(s.workers, w.key)
	return true
}

// outcome is what became of one step of a worker.
type outcome int

const (
	idle     outcome = iota // nothing (more) to send
	progress                // sent or skipped some
	retry                   // the gateway or the database failed: back off
	gone                    // the pusher no longer exists
)

func (s *Sender) work(w *worker) {
	defer s.wg.Done()
	backoff := s.opts.InitialBackoff
	for {
		if s.ctx.Err() != nil {
			s.finish(w)
			return
		}
		_, upTo := s.db.Changes()
		out, wait := s.step(w.key, upTo)
		switch out {
		case idle:
			if s.finish(w) {
				return
			}
		case progress:
			backoff = s.opts.InitialBackoff
		case gone:
			s.finish(w)
			return
		case retry:
			delay := min(max(backoff, wait), s.opts.MaxBackoff)
			backoff = min(backoff*2, s.opts.MaxBackoff)
			t := time.NewTimer(delay)
			select {
			case <-s.ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
	}
}

// step sends (in order) a batch of the pusher's pending push actions up to
// upTo. On a retry it also returns how long the gateway asked to wait.
func (s *Sender) step(k storage.PusherKey, upTo int64) (outcome, time.Duration) {
	ctx := s.ctx
	// Writes recording what was delivered must land even when the sender
	// is stopping meanwhile, or the push would go out again after a restart.
	wctx := context.WithoutCancel(ctx)
	log := s.log.WithFields(logrus.Fields{"user_id": k.UserID, "app_id": k.AppID})
	p, err := s.db.Pusher(ctx, k)
	if errors.Is(err, storage.ErrNotFound) {
		return gone, 0
	}
	if err != nil {
		log.WithError(err).Warn("reading pusher")
		return retry, 0
	}
	if p.Orphaned {
		if err := s.write(func(tx *storage.Tx) error { _, err := tx.DeletePusher(wctx, k); return err }); err != nil {
			return retry, 0
		}
		log.Info("removed the pusher of a deleted device")
		return gone, 0
	}
	data, devData, err := parseData(p.Data)
	if err == nil {
		err = ValidateURL(data.URL)
	}
	if err != nil {
		// Cannot happen for pushers set through the API; never loop on one.
		log.WithError(err).Error("pusher has invalid data: removing it")
		if err := s.write(func(tx *storage.Tx) error { _, err := tx.DeletePusher(wctx, k); return err }); err != nil {
			return retry, 0
		}
		return gone, 0
	}
	log = log.WithField("gateway", gatewayHost(data.URL))
	pending, err := s.db.PendingPushes(ctx, k.UserID, p.LastPos, upTo, batchSize)
	if err != nil {
		log.WithError(err).Warn("reading pending push actions")
		return retry, 0
	}
	if len(pending) == 0 {
		return idle, 0
	}
	// skipped is the position of push actions passed over without a request
	// (already read), recorded with the next write.
	var skipped int64
	for i := range pending {
		pp := &pending[i]
		if pp.Read {
			skipped = pp.StreamPos
			continue
		}
		res, wait := s.deliver(ctx, log, p, data, devData, pp)
		switch res {
		case delivered, dropped:
			if err := s.write(func(tx *storage.Tx) error { return tx.AdvancePusher(wctx, k, pp.StreamPos) }); err != nil {
				log.WithError(err).Warn("saving pusher position")
				return retry, 0
			}
			skipped = 0
		case rejected:
			// The position is moot: the pusher goes in the same write.
			if err := s.write(func(tx *storage.Tx) error { _, err := tx.DeletePusher(wctx, k); return err }); err != nil {
				return retry, 0
			}
			log.Info("push gateway rejected the pushkey: pusher removed")
			return gone, 0
		case failed:
			if skipped > 0 {
				s.write(func(tx *storage.Tx) error { return tx.AdvancePusher(wctx, k, skipped) })
			}
			return retry, wait
		}
	}
	if skipped > 0 {
		if err := s.write(func(tx *storage.Tx) error { return tx.AdvancePusher(wctx, k, skipped) }); err != nil {
			return retry, 0
		}
	}
	return progress, 0
}

// write runs a write that must land even when shutdown began after the
// gateway took the notification (so it is not sent twice after a restart).
func (s *Sender) write(fn func(*storage.Tx) error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 10*time.Second)
	defer cancel()
	return s.db.Write(ctx, fn)
}

// result is the fate of one notification.
type result int

const (
	delivered result = iota // the gateway took it
	dropped                 // the gateway refused it for good (4xx): move on
	rejected                // the gateway rejected the pushkey: remove the pusher
	failed                  // try again later
)

func (s *Sender) deliver(ctx context.Context, log logrus.FieldLogger, p *storage.Pusher, data pusherData,
	devData map[string]json.RawMessage, pp *storage.PendingPush) (result, time.Duration) {
	log = log.WithField("event_id", pp.Event.EventID)
	var info roomInfo
	unread, err := s.db.UnreadNotificationTotal(ctx, p.UserID, pp.StreamPos)
	if err == nil && data.Format != FormatEventIDOnly {
		var st storage.PushRoomState
		if st, err = s.db.PushRoomState(ctx, pp.Event.RoomNID, pp.Event.Sender); err == nil {
			info = parseRoomState(st)
		}
	}
	if err != nil {
		log.WithError(err).Warn("preparing push notification")
		return failed, 0
	}
	body, err := json.Marshal(buildRequest(p, data, devData, pp, unread, info))
	if err != nil {
		log.WithError(err).Error("encoding push notification: dropping it")
		return dropped, 0
	}
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return failed, 0
	}
	status, respBody, header, err := s.post(ctx, data.URL, body)
	<-s.slots
	if blocked, ok := safenet.IsBlocked(err); ok {
		// As Synapse: such pushers can be set, but nothing is sent to an
		// address outside ip_range_whitelist. Retrying would not help.
		log.WithField("address", blocked.IP.String()).Warn("push gateway address is not allowed (ip_range_whitelist): dropping the notification")
		return dropped, 0
	}
	if err != nil {
		if ctx.Err() == nil {
			log.WithError(err).Warn("push gateway unreachable: will retry")
		}
		return failed, 0
	}
	switch {
	case status >= 200 && status < 300:
		var r struct {
			Rejected []string `json:"rejected"`
		}
		if json.Unmarshal(respBody, &r) == nil && slices.Contains(r.Rejected, p.PushKey) {
			return rejected, 0
		}
		return delivered, 0
	case status == http.StatusTooManyRequests || status == http.StatusRequestTimeout || status >= 500:
		log.WithField("status", status).Warn("push gateway failed: will retry")
		return failed, retryAfter(header)
	default:
		log.WithField("status", status).Warn("push gateway refused the notification: dropping it")
		return dropped, 0
	}
}

func (s *Sender) post(ctx context.Context, target string, body []byte) (int, []byte, http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil && resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// The gateway answered; a truncated body only costs the rejected list.
		raw = nil
	}
	return resp.StatusCode, raw, resp.Header, nil
}

// retryAfter reads a Retry-After header given in seconds (0 when absent).
func retryAfter(h http.Header) time.Duration {
	if secs, err := strconv.Atoi(h.Get("Retry-After")); err == nil && secs > 0 {
		return time.Duration(secs) * time.Second
	}
	return 0
}

// gatewayHost names a gateway in logs without its path or query.
func gatewayHost(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Scheme + "://" + u.Host
	}
	return fmt.Sprintf("%.40q", raw)
}
