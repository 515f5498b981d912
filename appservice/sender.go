package appservice

// The sender, built like the federation sender (federationapi/sender):
// one goroutine per appservice with a URL reads the committed event stream
// from the appservice's saved position, picks the events the appservice
// is interested in, adds its queued ephemeral data, and records the
// transaction (ID and exact body) in the database before sending it. The
// recorded transaction is sent, under the same ID, until the appservice
// takes it; only then is the next one built. So transactions arrive in
// order, one at a time, a retry is byte-identical, an ID is never reused,
// and nothing is lost or doubled across restarts (the appservice drops a
// retry it already took by its ID).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"

	"matrixhs/internal/backoff"
	"matrixhs/storage"
)

// Limits of one transaction (Synapse's).
const (
	maxEventsPerTxn    = 100
	maxEphemeralPerTxn = 100
)

// scanBatch bounds the events read from the stream at a time.
const scanBatch = 256

// saveEvery is how far a sender may read past its saved position without
// finding anything before it saves it (a restart rereads at most that).
const saveEvery = 1000

// interestCacheSize bounds the cached per-snapshot interest answers.
const interestCacheSize = 4096

// sender delivers one appservice's transactions.
type sender struct {
	reg  *Registration
	log  logrus.FieldLogger
	wake chan struct{}
	// ctx ends the sender (shutdown, or a reload that replaces it); done
	// is closed when it has ended.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	// scanned is how far the stream was read with nothing found (beyond
	// the saved position); owned by the sender's goroutine.
	scanned int64
	// members caches, per state snapshot, whether a user of the
	// appservice is joined there.
	members map[int64]bool
	rooms   map[int64]roomInfo
}

type roomInfo struct {
	id         string
	interested bool // by room ID or alias
}

// Start starts delivering to every appservice with a URL (once).
func (s *Service) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.ctx.Err() != nil {
		return
	}
	s.started = true
	if s.changes != nil {
		s.wg.Add(1)
		go s.runChanges()
	}
	s.startSenders()
}

// startSenders starts a sender for every appservice with a URL; s.mu is
// held.
func (s *Service) startSenders() {
	for _, r := range s.All() {
		if r.PushURL() == "" {
			s.log.WithField("appservice", r.ID).Info("appservice has no url: nothing is pushed to it")
			continue
		}
		ctx, cancel := context.WithCancel(s.ctx)
		sd := &sender{reg: r, log: s.log.WithField("appservice", r.ID), wake: make(chan struct{}, 1),
			ctx: ctx, cancel: cancel, done: make(chan struct{}),
			members: map[int64]bool{}, rooms: map[int64]roomInfo{}}
		s.senders[r.ID] = sd
		s.wg.Add(1)
		go s.run(sd)
	}
}

// stopSenders ends every sender and waits for them; s.mu is held (senders
// never take it).
func (s *Service) stopSenders() {
	for id, sd := range s.senders {
		sd.cancel()
		<-sd.done
		delete(s.senders, id)
	}
}

// Stop cancels requests in flight and waits for the senders to end.
// Transactions not yet taken are sent after the next start.
func (s *Service) Stop() {
	s.mu.Lock()
	s.cancel()
	s.mu.Unlock()
	s.wg.Wait()
}

// poke wakes the sender of an appservice (queued ephemeral data).
func (s *Service) poke(asID string) {
	s.mu.Lock()
	sd := s.senders[asID]
	s.mu.Unlock()
	if sd == nil {
		return
	}
	select {
	case sd.wake <- struct{}{}:
	default:
	}
}

// outcome is what became of one step of a sender.
type outcome int

const (
	idle     outcome = iota // nothing (more) to send
	progress                // a transaction was taken, or the position moved
	failed                  // back off
)

func (s *Service) run(sd *sender) {
	defer s.wg.Done()
	defer close(sd.done)
	defer s.savePos(sd)
	failures := 0
	if st, err := s.db.AppServiceState(sd.ctx, sd.reg.ID); err == nil {
		failures = st.Failures
	}
	for sd.ctx.Err() == nil {
		changed, upTo := s.db.Changes()
		if failures > 0 {
			// A transaction failed before (maybe before a restart): wait
			// before trying the appservice again.
			if !s.sleep(sd.ctx, s.backoff(failures)) {
				return
			}
		}
		switch s.step(sd, upTo) {
		case progress:
			if failures > 0 {
				sd.log.WithField("failures", failures).Info("appservice is taking transactions again")
			}
			failures = 0
		case failed:
			failures++
		case idle:
			failures = 0
			select {
			case <-sd.ctx.Done():
				return
			case <-changed:
			case <-sd.wake:
			}
		}
	}
}

// sleep waits d, or until ctx ends (then false).
func (s *Service) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	}
	return true
}

// backoff is the wait after the given number of consecutive failures.
func (s *Service) backoff(failures int) time.Duration {
	return backoff.After(failures, s.opts.InitialBackoff, s.opts.MaxBackoff)
}

// step sends the transaction in flight, or builds and sends the next one.
func (s *Service) step(sd *sender, upTo int64) outcome {
	ctx := sd.ctx
	st, err := s.db.AppServiceState(ctx, sd.reg.ID)
	if err != nil {
		sd.log.WithError(err).Warn("reading appservice state")
		return failed
	}
	txnID, body := st.LastTxn, st.TxnBody
	if body == nil {
		var t storage.AppServiceTxn
		t, err = s.build(ctx, sd, max(st.Pos, sd.scanned), upTo)
		if err != nil {
			sd.log.WithError(err).Warn("building a transaction")
			return failed
		}
		if t.Body == nil {
			sd.scanned = t.Pos
			if sd.scanned-st.Pos >= saveEvery {
				s.savePos(sd)
			}
			return idle
		}
		err = s.write(func(ctx context.Context, tx *storage.Tx) (err error) {
			txnID, err = tx.StartAppServiceTxn(ctx, t)
			return err
		})
		if err != nil {
			sd.log.WithError(err).Warn("recording a transaction")
			return failed
		}
		sd.scanned, body = t.Pos, t.Body
	}
	log := sd.log.WithField("txn_id", txnID)
	start := time.Now()
	if err := s.putTransaction(ctx, sd.reg, txnID, body); err != nil {
		if ctx.Err() != nil {
			return failed
		}
		log.WithError(err).Warn("appservice did not take the transaction: will retry")
		if werr := s.write(func(ctx context.Context, tx *storage.Tx) error {
			return tx.FailAppServiceTxn(ctx, sd.reg.ID, time.Now().UnixMilli(), err.Error())
		}); werr != nil {
			log.WithError(werr).Warn("recording a failed transaction")
		}
		return failed
	}
	if err := s.write(func(ctx context.Context, tx *storage.Tx) error {
		return tx.FinishAppServiceTxn(ctx, sd.reg.ID, txnID, time.Now().UnixMilli())
	}); err != nil {
		// Sent again after a restart at worst: the appservice drops it by its ID.
		log.WithError(err).Warn("recording a delivered transaction")
		return failed
	}
	log.WithField("duration_ms", time.Since(start).Milliseconds()).Debug("appservice took the transaction")
	return progress
}

// savePos records how far the sender read without finding anything.
func (s *Service) savePos(sd *sender) {
	pos := sd.scanned
	if pos == 0 {
		return
	}
	if err := s.write(func(ctx context.Context, tx *storage.Tx) error { return tx.SetAppServicePos(ctx, sd.reg.ID, pos) }); err != nil {
		sd.log.WithError(err).Warn("saving the appservice position")
	}
}

// write runs a write that must land even when shutdown began meanwhile.
func (s *Service) write(fn func(context.Context, *storage.Tx) error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 10*time.Second)
	defer cancel()
	return s.db.Write(ctx, func(tx *storage.Tx) error { return fn(ctx, tx) })
}

// txnBody is a transaction as the appservice receives it: the spec's keys
// and MSC2409's and MSC3202's unstable ones, which bridges still read.
type txnBody struct {
	Events            []json.RawMessage `json:"events"`
	Ephemeral         []json.RawMessage `json:"ephemeral,omitempty"`
	MSC2409Ephemeral  []json.RawMessage `json:"de.sorunome.msc2409.ephemeral,omitempty"`
	ToDevice          []json.RawMessage `json:"to_device,omitempty"`
	MSC2409ToDevice   []json.RawMessage `json:"de.sorunome.msc2409.to_device,omitempty"`
	DeviceLists       *deviceLists      `json:"device_lists,omitempty"`
	MSC3202DeviceList *deviceLists      `json:"org.matrix.msc3202.device_lists,omitempty"`
	OTKCounts         keyCounts         `json:"device_one_time_keys_count,omitempty"`
	MSC3202OTKCounts  keyCounts         `json:"org.matrix.msc3202.device_one_time_keys_count,omitempty"`
	Fallback          fallbackKeys      `json:"device_unused_fallback_key_types,omitempty"`
	MSC3202Fallback   fallbackKeys      `json:"org.matrix.msc3202.device_unused_fallback_key_types,omitempty"`
}

type deviceLists struct {
	Changed []string `json:"changed"`
	Left    []string `json:"left"`
}

type keyCounts = map[string]map[string]map[string]int
type fallbackKeys = map[string]map[string][]string

// build gathers the next transaction from the events after from (up to
// upTo) and the queued ephemeral data. A nil Body means there is nothing
// to send; Pos is then how far the stream was read.
func (s *Service) build(ctx context.Context, sd *sender, from, upTo int64) (storage.AppServiceTxn, error) {
	t := storage.AppServiceTxn{ASID: sd.reg.ID, Pos: from, NowMS: time.Now().UnixMilli()}
	clear(sd.rooms)
	var nids []int64
	for t.Pos < upTo && len(nids) < maxEventsPerTxn {
		evs, err := s.db.AppServiceStreamEvents(ctx, t.Pos, upTo, scanBatch)
		if err != nil {
			return t, err
		}
		if len(evs) == 0 {
			t.Pos = upTo
			break
		}
		for _, ev := range evs {
			ok, err := s.interested(ctx, sd, ev)
			if err != nil {
				return t, err
			}
			if ok {
				nids = append(nids, ev.NID)
			}
			t.Pos = ev.StreamPos
			if len(nids) == maxEventsPerTxn {
				break
			}
		}
		if len(evs) < scanBatch && len(nids) < maxEventsPerTxn {
			t.Pos = upTo
		}
	}
	var body txnBody
	if err := s.addEvents(ctx, &body, nids); err != nil {
		return t, err
	}
	if err := s.addStreamEphemeral(ctx, sd, &body, &t, from, t.Pos); err != nil {
		return t, err
	}
	queued, err := s.db.AppServiceQueue(ctx, sd.reg.ID, maxEphemeralPerTxn)
	if err != nil {
		return t, err
	}
	for _, q := range queued {
		addQueued(&body, q)
		t.QueuedUpTo = q.NID
	}
	if len(body.Events) == 0 && len(queued) == 0 && len(body.Ephemeral) == 0 && len(body.ToDevice) == 0 &&
		body.DeviceLists == nil && body.OTKCounts == nil {
		return t, nil
	}
	body.MSC2409Ephemeral, body.MSC2409ToDevice = body.Ephemeral, body.ToDevice
	body.MSC3202DeviceList, body.MSC3202OTKCounts, body.MSC3202Fallback = body.DeviceLists, body.OTKCounts, body.Fallback
	if body.Events == nil {
		body.Events = []json.RawMessage{}
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return t, fmt.Errorf("encoding a transaction: %w", err)
	}
	t.Body, t.Events = raw, len(body.Events)
	return t, nil
}

// addEvents renders the events in stream order (the order of nids).
func (s *Service) addEvents(ctx context.Context, body *txnBody, nids []int64) error {
	if len(nids) == 0 {
		return nil
	}
	evs, err := s.db.EventsByNID(ctx, nids)
	if err != nil {
		return err
	}
	byNID := make(map[int64]*storage.Event, len(evs))
	for i := range evs {
		byNID[evs[i].NID] = &evs[i]
	}
	for _, n := range nids {
		if e := byNID[n]; e != nil {
			body.Events = append(body.Events, clientEvent(e))
		}
	}
	return nil
}

// addQueued adds one queued entry to a transaction.
func addQueued(body *txnBody, q storage.AppServiceQueued) {
	switch q.Kind {
	case kindEphemeral:
		body.Ephemeral = append(body.Ephemeral, q.Content)
	case kindToDevice:
		body.ToDevice = append(body.ToDevice, q.Content)
	case kindDeviceLists:
		var dl deviceLists
		if json.Unmarshal(q.Content, &dl) != nil {
			return
		}
		if body.DeviceLists == nil {
			body.DeviceLists = &deviceLists{Changed: []string{}, Left: []string{}}
		}
		body.DeviceLists.Changed = appendNew(body.DeviceLists.Changed, dl.Changed...)
		body.DeviceLists.Left = appendNew(body.DeviceLists.Left, dl.Left...)
	case kindKeyCounts:
		var kc struct {
			UserID    string         `json:"user_id"`
			DeviceID  string         `json:"device_id"`
			OTKCounts map[string]int `json:"one_time_keys_count"`
			Fallback  []string       `json:"unused_fallback_key_types"`
		}
		if json.Unmarshal(q.Content, &kc) != nil {
			return
		}
		if body.OTKCounts == nil {
			body.OTKCounts, body.Fallback = keyCounts{}, fallbackKeys{}
		}
		if body.OTKCounts[kc.UserID] == nil {
			body.OTKCounts[kc.UserID], body.Fallback[kc.UserID] = map[string]map[string]int{}, map[string][]string{}
		}
		if kc.OTKCounts == nil {
			kc.OTKCounts = map[string]int{}
		}
		if kc.Fallback == nil {
			kc.Fallback = []string{}
		}
		body.OTKCounts[kc.UserID][kc.DeviceID] = kc.OTKCounts
		body.Fallback[kc.UserID][kc.DeviceID] = kc.Fallback
	}
}

func appendNew(list []string, add ...string) []string {
	for _, a := range add {
		found := false
		for _, l := range list {
			if l == a {
				found = true
				break
			}
		}
		if !found {
			list = append(list, a)
		}
	}
	return list
}

// maxResponseBytes bounds how much of an appservice's answer is read.
const maxResponseBytes = 64 << 10

// putTransaction sends one transaction; nil when the appservice took it.
func (s *Service) putTransaction(ctx context.Context, r *Registration, txnID int64, body []byte) error {
	target := r.PushURL() + "/_matrix/app/v1/transactions/" + url.PathEscape(strconv.FormatInt(txnID, 10))
	status, _, err := s.do(ctx, r, http.MethodPut, target, body)
	if err != nil {
		return err
	}
	if status < 200 || status >= 300 {
		return fmt.Errorf("appservice answered %d", status)
	}
	return nil
}

// do sends one request to an appservice with its hs_token and reads a
// bounded answer.
func (s *Service) do(ctx context.Context, r *Registration, method, target string, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+r.HSToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.opts.HTTPClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return 0, nil, fmt.Errorf("reading the answer: %w", err)
	}
	return resp.StatusCode, raw, nil
}
