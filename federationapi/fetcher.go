package federationapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/sirupsen/logrus"

	"matrixhs/federationapi/fedclient"
	"matrixhs/roomserver"
)

// Fetcher gets events from other servers for the roomserver's pipeline
// (roomserver.Fetcher, StateFetcher and Backfiller): /event, /event_auth,
// /get_missing_events, /state_ids, /state and /backfill over the signed
// client. Answers are checked for shape and bounded here; the events in
// them are parsed, verified and authorised by the pipeline like any
// other.
type Fetcher struct {
	client *fedclient.Client
	log    logrus.FieldLogger
}

var (
	_ roomserver.Backfiller   = (*Fetcher)(nil)
	_ roomserver.StateFetcher = (*Fetcher)(nil)
)

// Bounds on what one answer may list: the spec's limits where it has
// them, generous ones where it has none.
const (
	maxFetchedStateIDs = 200_000
	maxFetchedEvents   = 100_000
)

// Fetcher is the API's fetcher over its client.
func (f *API) Fetcher() *Fetcher { return &Fetcher{client: f.Client, log: f.opts.Log} }

func (fe *Fetcher) do(ctx context.Context, method string, origin spec.ServerName, path string, body, out any) error {
	err := fe.client.Do(ctx, method, origin, path, body, out)
	if err != nil {
		fe.log.WithError(err).WithFields(logrus.Fields{"server": origin, "path": path}).Info("federation fetch failed")
	}
	return err
}

// Event fetches one event (/event).
func (fe *Fetcher) Event(ctx context.Context, origin spec.ServerName, _, eventID string) (json.RawMessage, error) {
	var resp struct {
		PDUs []json.RawMessage `json:"pdus"`
	}
	if err := fe.do(ctx, http.MethodGet, origin, "/_matrix/federation/v1/event/"+url.PathEscape(eventID), nil, &resp); err != nil {
		return nil, err
	}
	if len(resp.PDUs) != 1 {
		return nil, fmt.Errorf("%s answered /event with %d events", origin, len(resp.PDUs))
	}
	return resp.PDUs[0], nil
}

// TimestampToEvent asks for the server's event nearest a timestamp
// (/timestamp_to_event).
func (fe *Fetcher) TimestampToEvent(ctx context.Context, origin spec.ServerName, roomID string, ts int64, forwards bool) (string, int64, error) {
	dir := "b"
	if forwards {
		dir = "f"
	}
	var resp struct {
		EventID  string `json:"event_id"`
		OriginTS int64  `json:"origin_server_ts"`
	}
	q := url.Values{"ts": {strconv.FormatInt(ts, 10)}, "dir": {dir}}
	if err := fe.do(ctx, http.MethodGet, origin, "/_matrix/federation/v1/timestamp_to_event/"+url.PathEscape(roomID)+"?"+q.Encode(), nil, &resp); err != nil {
		return "", 0, err
	}
	if !strings.HasPrefix(resp.EventID, "$") || len(resp.EventID) > 255 {
		return "", 0, fmt.Errorf("%s answered /timestamp_to_event with %q", origin, resp.EventID)
	}
	return resp.EventID, resp.OriginTS, nil
}

// EventAuth fetches an event's auth chain (/event_auth).
func (fe *Fetcher) EventAuth(ctx context.Context, origin spec.ServerName, roomID, eventID string) ([]json.RawMessage, error) {
	var resp struct {
		AuthChain []json.RawMessage `json:"auth_chain"`
	}
	path := "/_matrix/federation/v1/event_auth/" + url.PathEscape(roomID) + "/" + url.PathEscape(eventID)
	if err := fe.do(ctx, http.MethodGet, origin, path, nil, &resp); err != nil {
		return nil, err
	}
	return bounded(resp.AuthChain, maxFetchedEvents), nil
}

// MissingEvents fetches the events between earliest and latest
// (/get_missing_events).
func (fe *Fetcher) MissingEvents(ctx context.Context, origin spec.ServerName, roomID string, earliest, latest []string, limit int) ([]json.RawMessage, error) {
	body := map[string]any{"earliest_events": nonNil(earliest), "latest_events": nonNil(latest), "limit": limit, "min_depth": 0}
	var resp struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := fe.do(ctx, http.MethodPost, origin, "/_matrix/federation/v1/get_missing_events/"+url.PathEscape(roomID), body, &resp); err != nil {
		return nil, err
	}
	return bounded(resp.Events, limit), nil
}

// StateIDs fetches the state before an event and its auth chain as event
// IDs (/state_ids).
func (fe *Fetcher) StateIDs(ctx context.Context, origin spec.ServerName, roomID, eventID string) (state, authChain []string, err error) {
	var resp struct {
		PDUIDs       []string `json:"pdu_ids"`
		AuthChainIDs []string `json:"auth_chain_ids"`
	}
	path := "/_matrix/federation/v1/state_ids/" + url.PathEscape(roomID) + "?event_id=" + url.QueryEscape(eventID)
	if err := fe.do(ctx, http.MethodGet, origin, path, nil, &resp); err != nil {
		return nil, nil, err
	}
	if resp.PDUIDs == nil || len(resp.PDUIDs)+len(resp.AuthChainIDs) > maxFetchedStateIDs {
		return nil, nil, fmt.Errorf("%s answered /state_ids with %d state and %d auth chain IDs", origin, len(resp.PDUIDs), len(resp.AuthChainIDs))
	}
	return resp.PDUIDs, resp.AuthChainIDs, nil
}

// State fetches the state before an event and its auth chain as events
// (/state).
func (fe *Fetcher) State(ctx context.Context, origin spec.ServerName, roomID, eventID string) (state, authChain []json.RawMessage, err error) {
	var resp struct {
		PDUs      []json.RawMessage `json:"pdus"`
		AuthChain []json.RawMessage `json:"auth_chain"`
	}
	path := "/_matrix/federation/v1/state/" + url.PathEscape(roomID) + "?event_id=" + url.QueryEscape(eventID)
	if err := fe.do(ctx, http.MethodGet, origin, path, nil, &resp); err != nil {
		return nil, nil, err
	}
	if len(resp.PDUs)+len(resp.AuthChain) > maxFetchedEvents {
		return nil, nil, fmt.Errorf("%s answered /state with %d events", origin, len(resp.PDUs)+len(resp.AuthChain))
	}
	return resp.PDUs, resp.AuthChain, nil
}

// Backfill fetches up to limit events preceding (and including) the events
// named in from (/backfill).
func (fe *Fetcher) Backfill(ctx context.Context, origin spec.ServerName, roomID string, from []string, limit int) ([]json.RawMessage, error) {
	q := url.Values{"v": from, "limit": {strconv.Itoa(limit)}}
	var resp struct {
		PDUs []json.RawMessage `json:"pdus"`
	}
	if err := fe.do(ctx, http.MethodGet, origin, "/_matrix/federation/v1/backfill/"+url.PathEscape(roomID)+"?"+q.Encode(), nil, &resp); err != nil {
		return nil, err
	}
	return bounded(resp.PDUs, limit), nil
}

// bounded keeps the first n entries of list.
func bounded(list []json.RawMessage, n int) []json.RawMessage {
	if len(list) > n {
		return list[:n]
	}
	return list
}

func nonNil(ids []string) []string {
	if ids == nil {
		return []string{}
	}
	return ids
}
