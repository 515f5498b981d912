package appservice

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"time"

	"matrixhs/internal/httputil"
)

// ByToken is the appservice of an as_token (nil: none).
func (s *Service) ByToken(token string) *Registration {
	if token == "" {
		return nil
	}
	return s.byASToken(token)
}

// QueryUser asks the appservices whose namespaces hold userID whether the
// user exists (GET /_matrix/app/v1/users/{userId}); an appservice that
// says yes has created it meanwhile. Exclusive namespaces are asked first.
func (s *Service) QueryUser(ctx context.Context, userID string) bool {
	return s.query(ctx, func(r *Registration) (bool, bool) { return r.IsUserInNamespace(userID), r.IsExclusiveUser(userID) },
		"/_matrix/app/v1/users/"+url.PathEscape(userID))
}

// QueryAlias asks the appservices whose namespaces hold alias whether the
// alias exists (GET /_matrix/app/v1/rooms/{alias}); one that says yes has
// created the room and alias meanwhile.
func (s *Service) QueryAlias(ctx context.Context, alias string) bool {
	return s.query(ctx, func(r *Registration) (bool, bool) { return r.IsAliasInNamespace(alias), r.IsExclusiveAlias(alias) },
		"/_matrix/app/v1/rooms/"+url.PathEscape(alias))
}

func (s *Service) query(ctx context.Context, match func(*Registration) (in, exclusive bool), path string) bool {
	var first, rest []*Registration
	for _, r := range s.All() {
		in, excl := match(r)
		switch {
		case r.PushURL() == "" || !in:
		case excl:
			first = append(first, r)
		default:
			rest = append(rest, r)
		}
	}
	for _, r := range append(first, rest...) {
		status, _, err := s.do(ctx, r, http.MethodGet, r.PushURL()+path, nil)
		if err != nil {
			s.log.WithError(err).WithField("appservice", r.ID).Warn("querying the appservice")
			continue
		}
		if status == http.StatusOK {
			return true
		}
	}
	return false
}

// Protocols gathers the third-party protocols of the appservices, each as
// its appservice describes it (GET /_matrix/app/v1/thirdparty/protocol/
// {protocol}); the instances of a protocol several appservices bridge are
// merged, each naming its appservice_id. One (only) is returned when
// protocol is not "". Protocols whose appservice does not answer are left
// out.
func (s *Service) Protocols(ctx context.Context, only string) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, r := range s.All() {
		for _, p := range r.Protocols {
			if (only != "" && p != only) || r.PushURL() == "" {
				continue
			}
			status, raw, err := s.do(ctx, r, http.MethodGet, r.PushURL()+"/_matrix/app/v1/thirdparty/protocol/"+url.PathEscape(p), nil)
			var info map[string]any
			if err != nil || status != http.StatusOK || json.Unmarshal(raw, &info) != nil || info == nil {
				s.log.WithError(err).WithFields(map[string]any{"appservice": r.ID, "protocol": p, "status": status}).Warn("appservice gave no protocol metadata")
				continue
			}
			instances, _ := info["instances"].([]any)
			for _, inst := range instances {
				if m, ok := inst.(map[string]any); ok {
					m["appservice_id"] = r.ID
				}
			}
			if prev, ok := out[p]; ok {
				merged, _ := prev["instances"].([]any)
				prev["instances"] = append(merged, instances...)
				continue
			}
			if instances == nil {
				info["instances"] = []any{}
			}
			out[p] = info
		}
	}
	return out
}

// ThirdPartyLookup asks the appservices bridging protocol (all, when
// protocol is "") for third-party locations or users (kind "location" or
// "user") matching the query, and concatenates their answers.
func (s *Service) ThirdPartyLookup(ctx context.Context, kind, protocol string, q url.Values) []json.RawMessage {
	out := []json.RawMessage{}
	path := "/_matrix/app/v1/thirdparty/" + kind
	if protocol != "" {
		path += "/" + url.PathEscape(protocol)
	}
	if enc := q.Encode(); enc != "" {
		path += "?" + enc
	}
	for _, r := range s.All() {
		if r.PushURL() == "" || (protocol != "" && !contains(r.Protocols, protocol)) {
			continue
		}
		status, raw, err := s.do(ctx, r, http.MethodGet, r.PushURL()+path, nil)
		var list []json.RawMessage
		if err != nil || status != http.StatusOK || json.Unmarshal(raw, &list) != nil {
			continue
		}
		out = append(out, list...)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

// Ping checks that the appservice can be reached with its hs_token (POST
// /_matrix/app/v1/ping) and returns how long it took, or the spec's error:
// M_URL_NOT_SET, M_BAD_STATUS (with the appservice's status and body),
// M_CONNECTION_FAILED or M_CONNECTION_TIMEOUT.
func (s *Service) Ping(ctx context.Context, r *Registration, txnID *string) (time.Duration, error) {
	if r.PushURL() == "" {
		return 0, &httputil.Error{Status: http.StatusBadRequest, Code: "M_URL_NOT_SET", Msg: "Application service URL is not set"}
	}
	body := map[string]any{}
	if txnID != nil {
		body["transaction_id"] = *txnID
	}
	raw, _ := json.Marshal(body)
	start := time.Now()
	status, answer, err := s.do(ctx, r, http.MethodPost, r.PushURL()+"/_matrix/app/v1/ping", raw)
	took := time.Since(start)
	var ne net.Error
	switch {
	case err != nil && (errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()):
		return 0, &httputil.Error{Status: http.StatusGatewayTimeout, Code: "M_CONNECTION_TIMEOUT", Msg: "Connection to the application service timed out"}
	case err != nil:
		return 0, &httputil.Error{Status: http.StatusBadGateway, Code: "M_CONNECTION_FAILED", Msg: "Connection to the application service failed"}
	case status < 200 || status >= 300:
		return 0, (&httputil.Error{Status: http.StatusBadGateway, Code: "M_BAD_STATUS", Msg: "Application service returned a non-2xx status"}).
			With("status", status).With("body", string(answer))
	}
	return took, nil
}
