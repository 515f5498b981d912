package admin

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// Synapse's federation admin API: the destinations this server sends to,
// with their retry timing as the outbound sender records it, the rooms
// whose events went to each, and a way to retry one at once.

// DestinationWaker retries a destination now (the outbound federation
// sender's ResetBackoff).
type DestinationWaker interface{ ResetBackoff(destination string) }

// SetFederationSender lets reset_connection wake the sender (nil while
// federation is disabled: the reset is only recorded).
func (a *API) SetFederationSender(w DestinationWaker) { a.fedSender = w }

// destinationJSON is a destination as Synapse's admin API shows it.
func destinationJSON(d storage.DestinationStatus) map[string]any {
	out := map[string]any{
		"destination": d.Destination, "retry_last_ts": d.RetryLastTS, "retry_interval": d.RetryInterval,
		"failure_ts": nil, "last_successful_stream_ordering": nil,
	}
	if d.FailureTS != nil {
		out["failure_ts"] = *d.FailureTS
	}
	if d.LastSuccessPos != nil {
		out["last_successful_stream_ordering"] = *d.LastSuccessPos
	}
	return out
}

// pageParams reads from, limit (default 100) and dir (f or b) as Synapse
// does: anything else is 400 M_INVALID_PARAM.
func pageParams(q url.Values) (from, limit int, backwards bool, err error) {
	if from, limit, err = httputil.OffsetLimit(q, 100); err != nil {
		return 0, 0, false, err
	}
	switch q.Get("dir") {
	case "", "f":
	case "b":
		backwards = true
	default:
		return 0, 0, false, httputil.InvalidParam("dir must be f or b")
	}
	return from, limit, backwards, nil
}

// nextToken is the from of the next page, when there is one.
func nextToken(out map[string]any, from, limit, n, total int) {
	if from+limit < total {
		out["next_token"] = strconv.Itoa(from + n)
	}
}

// adminDestinations serves GET /_synapse/admin/v1/federation/destinations.
func (a *API) adminDestinations(r *http.Request, _ *accounts.Session) (any, error) {
	q := r.URL.Query()
	from, limit, backwards, err := pageParams(q)
	if err != nil {
		return nil, err
	}
	order := q.Get("order_by")
	if order == "" {
		order = "destination"
	}
	if !storage.ValidDestinationOrder(order) {
		return nil, httputil.InvalidParam("order_by must be one of destination, retry_last_ts, retry_interval, " +
			"failure_ts, last_successful_stream_ordering")
	}
	dests, total, err := a.db.FederationDestinations(r.Context(), storage.DestinationQuery{
		Search: q.Get("destination"), OrderBy: order, Backwards: backwards, From: from, Limit: limit,
	})
	if err != nil {
		return nil, err
	}
	list := make([]any, 0, len(dests))
	for _, d := range dests {
		list = append(list, destinationJSON(d))
	}
	out := map[string]any{"destinations": list, "total": total}
	nextToken(out, from, limit, len(dests), total)
	return out, nil
}

// knownDestination loads the {destination} of the path: 404 M_NOT_FOUND
// when this server never sent it anything.
func (a *API) knownDestination(ctx context.Context, r *http.Request) (storage.DestinationStatus, error) {
	d, found, err := a.db.FederationDestinationStatus(ctx, httputil.PathVar(r, "destination"))
	if err != nil {
		return d, err
	}
	if !found {
		return d, httputil.NotFound("Unknown destination")
	}
	return d, nil
}

// adminDestination serves GET /_synapse/admin/v1/federation/destinations/{destination}.
func (a *API) adminDestination(r *http.Request, _ *accounts.Session) (any, error) {
	d, err := a.knownDestination(r.Context(), r)
	if err != nil {
		return nil, err
	}
	return destinationJSON(d), nil
}

// adminDestinationRooms serves GET /_synapse/admin/v1/federation/destinations/{destination}/rooms.
func (a *API) adminDestinationRooms(r *http.Request, _ *accounts.Session) (any, error) {
	d, err := a.knownDestination(r.Context(), r)
	if err != nil {
		return nil, err
	}
	from, limit, backwards, err := pageParams(r.URL.Query())
	if err != nil {
		return nil, err
	}
	rooms, total, err := a.db.FederationDestinationRooms(r.Context(), d.Destination, from, limit, backwards)
	if err != nil {
		return nil, err
	}
	list := make([]any, 0, len(rooms))
	for _, rm := range rooms {
		list = append(list, map[string]any{"room_id": rm.RoomID, "stream_ordering": rm.StreamPos})
	}
	out := map[string]any{"rooms": list, "total": total}
	nextToken(out, from, limit, len(rooms), total)
	return out, nil
}

// adminResetDestination serves POST
// /_synapse/admin/v1/federation/destinations/{destination}/reset_connection:
// a destination being backed off from is retried at once (400 when it is
// not: there is nothing to reset).
func (a *API) adminResetDestination(r *http.Request, _ *accounts.Session) (any, error) {
	d, err := a.knownDestination(r.Context(), r)
	if err != nil {
		return nil, err
	}
	if d.RetryLastTS == 0 {
		return nil, httputil.Unknown("The retry timing does not need to be reset for this destination.")
	}
	ctx := r.Context()
	if err := a.db.Write(ctx, func(tx *storage.Tx) error { return tx.SetFederationBackoff(ctx, d.Destination, 0, 0) }); err != nil {
		return nil, err
	}
	if a.fedSender != nil {
		a.fedSender.ResetBackoff(d.Destination)
	}
	a.log.WithField("destination", d.Destination).Info("admin reset the federation backoff of a destination")
	return httputil.Empty, nil
}
