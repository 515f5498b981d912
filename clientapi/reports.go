package clientapi

// Reporting content (spec "Reporting content"): reports of events, rooms
// and users are stored for the server admins.

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// reportBody is the body of the report endpoints; score only for events.
type reportBody struct {
	Reason *json.RawMessage `json:"reason"`
	Score  *json.RawMessage `json:"score"`
}

// parse checks the types: reason a string, score an integer.
func (b *reportBody) parse() (reason string, score *int64, err error) {
	if b.Reason != nil && string(*b.Reason) != "null" {
		if json.Unmarshal(*b.Reason, &reason) != nil {
			return "", nil, httputil.BadJSON("reason must be a string")
		}
	}
	if b.Score != nil && string(*b.Score) != "null" {
		var n int64
		if json.Unmarshal(*b.Score, &n) != nil {
			return "", nil, httputil.BadJSON("score must be an integer")
		}
		score = &n
	}
	return reason, score, nil
}

func (a *API) saveReport(r *http.Request, rep storage.Report) (any, error) {
	rep.TS = a.accounts.Now().UnixMilli()
	err := a.db.Write(r.Context(), func(tx *storage.Tx) error {
		_, err := tx.InsertReport(r.Context(), rep)
		return err
	})
	if err != nil {
		return nil, err
	}
	a.log.WithField("kind", rep.Kind).WithField("reporter", rep.Reporter).WithField("room_id", rep.RoomID).
		WithField("event_id", rep.EventID).WithField("user_id", rep.UserID).Info("content reported")
	return httputil.Empty, nil
}

// reportEvent serves POST /_matrix/client/v3/rooms/{roomId}/report/{eventId}:
// the reporter must be joined to the room and able to see the event, else
// 404 (as for unknown events).
func (a *API) reportEvent(r *http.Request, s *accounts.Session) (any, error) {
	var body reportBody
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	reason, score, err := body.parse()
	if err != nil {
		return nil, err
	}
	notFound := httputil.NotFound("The event was not found or you are not joined to the room")
	acc, err := a.view.Access(r.Context(), s.UserID, pathVar(r, "roomId"))
	if err != nil {
		var he *httputil.Error
		if errors.As(err, &he) {
			return nil, notFound
		}
		return nil, err
	}
	if acc.Viewer.Membership() != spec.Join {
		return nil, notFound
	}
	e, err := a.view.VisibleEvent(r.Context(), acc, pathVar(r, "eventId"))
	if err != nil {
		return nil, err
	}
	return a.saveReport(r, storage.Report{
		Kind: storage.ReportEvent, Reporter: s.UserID, RoomID: acc.Info.ID, EventID: e.EventID, UserID: e.Sender,
		Reason: reason, Score: score,
	})
}

// reportRoom serves POST /_matrix/client/v3/rooms/{roomId}/report (v1.13);
// the reporter need not be in the room.
func (a *API) reportRoom(r *http.Request, s *accounts.Session) (any, error) {
	var body reportBody
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	body.Score = nil
	reason, _, err := body.parse()
	if err != nil {
		return nil, err
	}
	info, err := a.db.Room(r.Context(), pathVar(r, "roomId"))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("The room was not found")
	}
	if err != nil {
		return nil, err
	}
	return a.saveReport(r, storage.Report{Kind: storage.ReportRoom, Reporter: s.UserID, RoomID: info.ID, Reason: reason})
}

// reportUser serves POST /_matrix/client/v3/users/{userId}/report (v1.14):
// users of this server only (it does not federate).
func (a *API) reportUser(r *http.Request, s *accounts.Session) (any, error) {
	var body reportBody
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	body.Score = nil
	reason, _, err := body.parse()
	if err != nil {
		return nil, err
	}
	userID := pathVar(r, "userId")
	if _, err := spec.NewUserID(userID, false); err != nil || !strings.HasPrefix(userID, "@") {
		return nil, httputil.InvalidParam("%q is not a user ID", userID)
	}
	if _, err := a.db.Account(r.Context(), userID); errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("The user was not found")
	} else if err != nil {
		return nil, err
	}
	return a.saveReport(r, storage.Report{Kind: storage.ReportUser, Reporter: s.UserID, UserID: userID, Reason: reason})
}
