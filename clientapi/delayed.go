package clientapi

// Delayed events (MSC4140, unstable prefix org.matrix.msc4140): a client
// schedules an event with ?org.matrix.msc4140.delay=<ms> on /send or /state;
// the server sends it when the delay runs out unless the client restarts
// the delay, sends it early or cancels it. Element Call schedules the
// "I left the call" state this way and keeps restarting it, so a client that
// vanishes still leaves. Scheduled events are stored, so they survive a
// restart; a scheduled state event is dropped when someone else changes that
// state first (the roomserver does it as it stores the change).

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/internal/matrixerr"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

const (
	delayParam          = "org.matrix.msc4140.delay"
	parentDelayParam    = "org.matrix.msc4140.parent_delay_id"
	maxEventDelay       = 24 * time.Hour
	maxDelayedPerUser   = 100
	maxDelayedEventSize = 65536 // the spec's event size limit
	delayedSendBatch    = 50
	delayedRetryOnFail  = 5 * time.Second
)

// delayFrom reads the delay of a /send or /state request (ok false: none).
func delayFrom(r *http.Request) (time.Duration, bool, error) {
	q := r.URL.Query()
	if q.Has(parentDelayParam) {
		return 0, false, httputil.InvalidParam("%s is not supported", parentDelayParam)
	}
	if !q.Has(delayParam) {
		return 0, false, nil
	}
	ms, err := strconv.ParseInt(q.Get(delayParam), 10, 64)
	if err != nil || ms < 0 {
		return 0, false, httputil.InvalidParam("%s must be a non-negative integer (ms)", delayParam)
	}
	if d := time.Duration(ms) * time.Millisecond; d > maxEventDelay {
		return 0, false, (&httputil.Error{Status: http.StatusBadRequest, Code: "M_MAX_DELAY_EXCEEDED",
			Msg: "the delay is longer than this server allows"}).With("org.matrix.msc4140.max_delay", maxEventDelay.Milliseconds())
	}
	return time.Duration(ms) * time.Millisecond, true, nil
}

// scheduleDelayed stores a delayed event for a member of the room and
// answers with its delay_id.
func (a *API) scheduleDelayed(ctx context.Context, s *accounts.Session, roomID, typ string, stateKey *string, content json.RawMessage, delay time.Duration) (any, error) {
	// What is stored now must fit in the event it becomes.
	size := len(typ) + len(content)
	if stateKey != nil {
		size += len(*stateKey)
	}
	if size > maxDelayedEventSize {
		return nil, httputil.TooLarge("the event would be larger than %d bytes", maxDelayedEventSize)
	}
	acc, err := a.view.Access(ctx, s.UserID, roomID)
	if err != nil {
		return nil, err
	}
	if acc.Viewer.Membership() != spec.Join {
		return nil, httputil.Forbidden("You are not in this room")
	}
	b := make([]byte, 18)
	rand.Read(b)
	now := a.accounts.Now().UnixMilli()
	d := storage.DelayedEvent{DelayID: "syd" + base64.RawURLEncoding.EncodeToString(b), UserID: s.UserID, DeviceID: s.DeviceID,
		RoomID: roomID, Type: typ, StateKey: stateKey, Content: content, DelayMS: delay.Milliseconds(), RunningSince: now,
		SendTS: now + delay.Milliseconds()}
	err = a.db.Write(ctx, func(tx *storage.Tx) error { return tx.InsertDelayedEvent(ctx, d, maxDelayedPerUser) })
	if errors.Is(err, storage.ErrLimit) {
		return nil, &httputil.Error{Status: http.StatusTooManyRequests, Code: "M_LIMIT_EXCEEDED", Msg: "too many delayed events scheduled"}
	}
	if err != nil {
		return nil, err
	}
	a.wakeDelayed()
	return map[string]string{"delay_id": d.DelayID}, nil
}

func (a *API) wakeDelayed() {
	select {
	case a.delayedWake <- struct{}{}:
	default:
	}
}

// listDelayed serves GET /_matrix/client/unstable/org.matrix.msc4140/delayed_events.
func (a *API) listDelayed(r *http.Request, s *accounts.Session) (any, error) {
	all, err := a.db.DelayedEventsOf(r.Context(), s.UserID)
	if err != nil {
		return nil, err
	}
	out := []map[string]any{}
	for _, d := range all {
		e := map[string]any{"delay_id": d.DelayID, "room_id": d.RoomID, "type": d.Type, "content": json.RawMessage(d.Content),
			"delay": d.DelayMS, "running_since": d.RunningSince}
		if d.StateKey != nil {
			e["state_key"] = *d.StateKey
		}
		out = append(out, e)
	}
	return map[string]any{"delayed_events": out}, nil
}

// updateDelayed serves POST /_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delayId}:
// action restart, send or cancel.
func (a *API) updateDelayed(r *http.Request, s *accounts.Session) (any, error) {
	var req struct {
		Action string `json:"action"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	ctx, id := r.Context(), pathVar(r, "delayId")
	var d *storage.DelayedEvent
	err := a.db.Write(ctx, func(tx *storage.Tx) error {
		var err error
		switch req.Action {
		case "restart":
			return tx.RestartDelayedEvent(ctx, s.UserID, id, a.accounts.Now().UnixMilli())
		case "cancel":
			if d, err = tx.DelayedEvent(ctx, s.UserID, id); err != nil {
				return err
			}
			return tx.DeleteDelayedEvent(ctx, id)
		case "send":
			d, err = tx.DelayedEvent(ctx, s.UserID, id)
			return err
		default:
			return httputil.InvalidParam("action must be restart, send or cancel")
		}
	})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("No such delayed event")
	}
	if err != nil {
		return nil, err
	}
	if req.Action == "send" {
		if err := a.sendDelayed(ctx, d); err != nil {
			return nil, err
		}
	}
	a.wakeDelayed()
	return httputil.Empty, nil
}

// sendDelayed sends a scheduled event as its user and removes it. A second
// attempt after a crash between the two is absorbed by the transaction ID.
func (a *API) sendDelayed(ctx context.Context, d *storage.DelayedEvent) error {
	_, sendErr := a.rooms.Send(ctx, roomserver.LocalEvent{
		RoomID: d.RoomID, Sender: d.UserID, Type: d.Type, StateKey: d.StateKey, Content: d.Content,
		TxnID: d.DelayID, TxnScope: "delayed",
	})
	if sendErr != nil {
		sendErr = matrixerr.From(sendErr)
		var refused *httputil.Error
		if !errors.As(sendErr, &refused) {
			return sendErr // not the room's verdict: kept, tried again later
		}
	}
	// Sending it voided other users' delayed events for the same state
	// (roomserver); this one is forgotten here.
	err := a.db.Write(ctx, func(tx *storage.Tx) error { return tx.DeleteDelayedEvent(ctx, d.DelayID) })
	if sendErr != nil {
		return sendErr
	}
	return err
}

// runDelayed sends scheduled events when they fall due, until the API stops.
func (a *API) runDelayed() {
	defer close(a.delayedDone)
	ctx := context.Background()
	for {
		wait := time.Duration(-1)
		next, ok, err := a.db.NextDelayedSendTS(ctx)
		switch {
		case err != nil:
			a.log.WithError(err).Warn("Reading delayed events")
			wait = delayedRetryOnFail
		case ok:
			wait = max(0, time.Until(time.UnixMilli(next)))
		}
		if wait == 0 {
			if err := a.sendDueDelayed(ctx); err != nil {
				a.log.WithError(err).Warn("Sending delayed events")
				wait = delayedRetryOnFail
			} else {
				continue
			}
		}
		var timer *time.Timer
		var fire <-chan time.Time
		if wait > 0 {
			timer = time.NewTimer(wait)
			fire = timer.C
		}
		select {
		case <-a.stopping:
			return
		case <-a.delayedWake:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

func (a *API) sendDueDelayed(ctx context.Context) error {
	due, err := a.db.DueDelayedEvents(ctx, a.accounts.Now().UnixMilli(), delayedSendBatch)
	if err != nil {
		return err
	}
	for i := range due {
		if err := a.sendDelayed(ctx, &due[i]); err != nil {
			// Refused by the room now (the user left, lost the power):
			// dropped, as the client would have been told at send time.
			var he *httputil.Error
			if !errors.As(err, &he) {
				return err
			}
			a.log.WithError(err).WithField("delay_id", due[i].DelayID).Info("Delayed event refused by the room")
		}
	}
	return nil
}
