package federationapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"sync"

	"github.com/gorilla/mux"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/httputil"
)

// notaryConcurrency bounds the servers one notary query asks at once.
const notaryConcurrency = 8

// serverKeys serves GET /_matrix/key/v2/server: the current verify key,
// the old ones with when they expired, signed with the current key.
func (f *API) serverKeys(*http.Request) (any, error) {
	raw, err := f.Own.ServerKeysJSON(f.now().Add(f.keyValidity))
	if err != nil {
		return nil, err
	}
	return json.RawMessage(raw), nil
}

// queryKeys serves GET /_matrix/key/v2/query/{serverName}[/{keyId}] (the
// key ID form is deprecated): the server's keys, countersigned.
func (f *API) queryKeys(r *http.Request) (any, error) {
	vars := mux.Vars(r)
	server, err := url.PathUnescape(vars["serverName"])
	if err != nil {
		return nil, httputil.InvalidParam("bad server name")
	}
	if _, _, ok := spec.ParseAndValidateServerName(spec.ServerName(server)); !ok {
		return nil, httputil.InvalidParam("%q is not a server name", server)
	}
	minValid := spec.AsTimestamp(f.now())
	if s := r.URL.Query().Get("minimum_valid_until_ts"); s != "" {
		ts, err := strconv.ParseInt(s, 10, 64)
		if err != nil || ts < 0 {
			return nil, httputil.InvalidParam("minimum_valid_until_ts must be a timestamp in milliseconds")
		}
		minValid = spec.Timestamp(ts)
	}
	var keyIDs []gomatrixserverlib.KeyID
	if id, err := url.PathUnescape(vars["keyId"]); err == nil && id != "" {
		keyIDs = append(keyIDs, gomatrixserverlib.KeyID(id))
	}
	return f.notaryAnswer(r.Context(), []notaryQuery{{server: spec.ServerName(server), minValid: minValid, keyIDs: keyIDs}})
}

// queryKeysBatch serves POST /_matrix/key/v2/query.
func (f *API) queryKeysBatch(r *http.Request) (any, error) {
	var body struct {
		ServerKeys *map[string]map[string]struct {
			MinimumValidUntilTS *int64 `json:"minimum_valid_until_ts"`
		} `json:"server_keys"`
	}
	if err := httputil.DecodeJSONWithNUL(r, &body); err != nil {
		return nil, err
	}
	if body.ServerKeys == nil {
		return nil, httputil.BadJSON("server_keys is required")
	}
	now := spec.AsTimestamp(f.now())
	var queries []notaryQuery
	for server, keys := range *body.ServerKeys {
		if _, _, ok := spec.ParseAndValidateServerName(spec.ServerName(server)); !ok {
			continue // nothing can be known of it: no entry, as for an unreachable server
		}
		q := notaryQuery{server: spec.ServerName(server), minValid: now}
		for id, criteria := range keys {
			q.keyIDs = append(q.keyIDs, gomatrixserverlib.KeyID(id))
			if criteria.MinimumValidUntilTS != nil && spec.Timestamp(*criteria.MinimumValidUntilTS) > q.minValid {
				q.minValid = spec.Timestamp(*criteria.MinimumValidUntilTS)
			}
		}
		sort.Slice(q.keyIDs, func(i, j int) bool { return q.keyIDs[i] < q.keyIDs[j] })
		queries = append(queries, q)
	}
	sort.Slice(queries, func(i, j int) bool { return queries[i].server < queries[j].server })
	return f.notaryAnswer(r.Context(), queries)
}

type notaryQuery struct {
	server   spec.ServerName
	minValid spec.Timestamp
	keyIDs   []gomatrixserverlib.KeyID
}

// notaryAnswer is {"server_keys": [...]}: for each server, its own key
// response (from the key ring, fetched when what is stored falls short),
// countersigned by us. Servers we know nothing of and cannot reach are
// left out.
func (f *API) notaryAnswer(ctx context.Context, queries []notaryQuery) (any, error) {
	answers := make([]json.RawMessage, len(queries))
	errs := make([]error, len(queries))
	sem := make(chan struct{}, notaryConcurrency)
	var wg sync.WaitGroup
	for i, q := range queries {
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			answers[i], errs[i] = f.notaryEntry(ctx, q)
		}()
	}
	wg.Wait()
	out := []json.RawMessage{}
	for i, a := range answers {
		if errs[i] != nil {
			return nil, errs[i]
		}
		if a != nil {
			out = append(out, a)
		}
	}
	return map[string]any{"server_keys": out}, nil
}

// notaryEntry is one server's countersigned keys, nil when none are known.
func (f *API) notaryEntry(ctx context.Context, q notaryQuery) (json.RawMessage, error) {
	var raw []byte
	if q.server == f.serverName {
		var err error
		if raw, err = f.Own.ServerKeysJSON(f.now().Add(f.keyValidity)); err != nil {
			return nil, err
		}
		return raw, nil
	}
	raw, found, err := f.KeyRing.NotaryKeys(ctx, q.server, q.minValid, q.keyIDs)
	if err != nil || !found {
		return nil, err
	}
	signed, err := gomatrixserverlib.SignJSON(string(f.serverName), f.Own.KeyID, f.Own.PrivateKey, raw)
	if err != nil {
		return nil, fmt.Errorf("countersigning keys of %s: %w", q.server, err)
	}
	return signed, nil
}
