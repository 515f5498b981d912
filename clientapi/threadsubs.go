package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"matrixhs/clientapi/internal/roomview"
	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// Thread subscriptions (MSC4306, unstable prefix io.element.msc4306): a
// user subscribes to a thread manually or, when mentioned in it, through an
// automatic subscription naming the event that caused it. The subscriptions
// drive the postcontent push rules (roomserver/pushrules).

const (
	errNotInThread               = "IO.ELEMENT.MSC4306.M_NOT_IN_THREAD"
	errConflictingUnsubscription = "IO.ELEMENT.MSC4306.M_CONFLICTING_UNSUBSCRIPTION"
)

// threadRoot resolves the path's room and thread root for the user: the
// root must be an event of the room the user may see, and not itself a
// reply in a thread. Anything else is 404, as the MSC asks.
func (a *API) threadRoot(ctx context.Context, userID, roomID, rootID string) (*roomview.Access, *storage.Event, error) {
	acc, err := a.view.Access(ctx, userID, roomID)
	if err != nil {
		var he *httputil.Error
		if errors.As(err, &he) {
			return nil, nil, httputil.NotFound("Thread not found")
		}
		return nil, nil, err
	}
	root, err := a.view.VisibleEvent(ctx, acc, rootID)
	if err != nil {
		return nil, nil, err
	}
	if root.RelType == "m.thread" {
		return nil, nil, httputil.NotFound("%s is a reply in a thread, not a thread root", rootID)
	}
	return acc, root, nil
}

// putThreadSubscription serves PUT .../rooms/{roomId}/thread/{threadRootId}/subscription.
func (a *API) putThreadSubscription(r *http.Request, s *accounts.Session) (any, error) {
	var req struct {
		Automatic json.RawMessage `json:"automatic"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	var causeID string
	if !httputil.IsNull(req.Automatic) {
		if err := json.Unmarshal(req.Automatic, &causeID); err != nil || causeID == "" {
			return nil, httputil.BadJSON("automatic must be the ID of the event that caused the subscription")
		}
	}
	ctx := r.Context()
	roomID := pathVar(r, "roomId")
	acc, root, err := a.threadRoot(ctx, s.UserID, roomID, pathVar(r, "threadRootId"))
	if err != nil {
		return nil, err
	}
	var causePos int64
	if causeID != "" {
		cause, err := a.view.VisibleEvent(ctx, acc, causeID)
		if err != nil || cause.RelType != "m.thread" || cause.RelatesTo != root.EventID {
			return nil, &httputil.Error{Status: http.StatusBadRequest, Code: errNotInThread,
				Msg: "the automatic subscription's cause event is not in the thread"}
		}
		causePos = cause.StreamPos
	}
	err = a.db.Write(ctx, func(tx *storage.Tx) error {
		old, err := tx.ThreadSubscription(ctx, s.UserID, roomID, root.EventID)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		exists := err == nil
		if causeID != "" {
			switch {
			case exists && old.Subscribed:
				return nil // an automatic subscription never downgrades a manual one
			case exists && old.StreamPos > causePos:
				// The user unsubscribed after the cause event arrived: a
				// device that saw it late must not subscribe them again.
				return &httputil.Error{Status: http.StatusConflict, Code: errConflictingUnsubscription,
					Msg: "the thread was unsubscribed from after the cause event"}
			}
			return tx.SetThreadSubscription(ctx, s.UserID, roomID, root.EventID, true, true)
		}
		if exists && old.Subscribed && !old.Automatic {
			return nil
		}
		return tx.SetThreadSubscription(ctx, s.UserID, roomID, root.EventID, true, false)
	})
	if err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}

// getThreadSubscription serves GET .../rooms/{roomId}/thread/{threadRootId}/subscription.
func (a *API) getThreadSubscription(r *http.Request, s *accounts.Session) (any, error) {
	ctx := r.Context()
	roomID := pathVar(r, "roomId")
	_, root, err := a.threadRoot(ctx, s.UserID, roomID, pathVar(r, "threadRootId"))
	if err != nil {
		return nil, err
	}
	sub, err := a.db.ThreadSubscription(ctx, s.UserID, roomID, root.EventID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && !sub.Subscribed) {
		return nil, httputil.NotFound("Not subscribed to the thread")
	}
	if err != nil {
		return nil, err
	}
	return map[string]bool{"automatic": sub.Automatic}, nil
}

// deleteThreadSubscription serves DELETE .../rooms/{roomId}/thread/{threadRootId}/subscription;
// unsubscribing from a thread one is not subscribed to succeeds.
func (a *API) deleteThreadSubscription(r *http.Request, s *accounts.Session) (any, error) {
	ctx := r.Context()
	roomID := pathVar(r, "roomId")
	_, root, err := a.threadRoot(ctx, s.UserID, roomID, pathVar(r, "threadRootId"))
	if err != nil {
		return nil, err
	}
	err = a.db.Write(ctx, func(tx *storage.Tx) error {
		old, err := tx.ThreadSubscription(ctx, s.UserID, roomID, root.EventID)
		if errors.Is(err, storage.ErrNotFound) || (err == nil && !old.Subscribed) {
			return nil
		}
		if err != nil {
			return err
		}
		return tx.SetThreadSubscription(ctx, s.UserID, roomID, root.EventID, false, false)
	})
	if err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}
