package clientapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"matrixhs/clientapi/internal/users"
	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/internal/matrixerr"
	"matrixhs/roomserver/pushrules"
	"matrixhs/storage"
)

// updatePushRules applies change to the stored rules in one write.
func (a *API) updatePushRules(ctx context.Context, userID string, change func(*pushrules.UserRules) error) error {
	return a.db.Write(ctx, func(tx *storage.Tx) error {
		raw, err := tx.PushRules(ctx, userID)
		if err != nil {
			return err
		}
		u, err := users.DecodeRules(raw)
		if err != nil {
			return err
		}
		if err := change(&u); err != nil {
			return matrixerr.From(err)
		}
		out, err := json.Marshal(u)
		if err != nil {
			return fmt.Errorf("encoding push rules: %w", err)
		}
		if _, err := tx.PutPushRules(ctx, userID, out); err != nil {
			return err
		}
		tx.OnCommit(func() { a.rooms.InvalidatePushRules(userID) })
		return nil
	})
}

func checkScope(r *http.Request) error {
	if s := pathVar(r, "scope"); s != "global" {
		return httputil.InvalidParam("unknown push rule scope %q", s)
	}
	return nil
}

// getPushRules serves GET /_matrix/client/v3/pushrules/.
func (a *API) getPushRules(r *http.Request, s *accounts.Session) (any, error) {
	rs, err := a.users.PushRules(r.Context(), s.UserID)
	if err != nil {
		return nil, err
	}
	return map[string]any{"global": rs}, nil
}

// getPushRulesScope serves GET /_matrix/client/v3/pushrules/global/.
func (a *API) getPushRulesScope(r *http.Request, s *accounts.Session) (any, error) {
	if err := checkScope(r); err != nil {
		return nil, err
	}
	return a.users.PushRules(r.Context(), s.UserID)
}

// getPushRule serves GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}.
func (a *API) getPushRule(r *http.Request, s *accounts.Session) (any, error) {
	if err := checkScope(r); err != nil {
		return nil, err
	}
	rs, err := a.users.PushRules(r.Context(), s.UserID)
	if err != nil {
		return nil, err
	}
	rule, err := rs.Get(pathVar(r, "kind"), pathVar(r, "ruleId"))
	if err != nil {
		return nil, matrixerr.From(err)
	}
	return rule, nil
}

// putPushRule serves PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}.
func (a *API) putPushRule(r *http.Request, s *accounts.Session) (any, error) {
	if err := checkScope(r); err != nil {
		return nil, err
	}
	body, err := httputil.ReadBody(r)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	kind, id := pathVar(r, "kind"), pathVar(r, "ruleId")
	err = a.updatePushRules(r.Context(), s.UserID, func(u *pushrules.UserRules) error {
		return u.Put(kind, id, body, q.Get("before"), q.Get("after"))
	})
	if err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}

// deletePushRule serves DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}.
func (a *API) deletePushRule(r *http.Request, s *accounts.Session) (any, error) {
	if err := checkScope(r); err != nil {
		return nil, err
	}
	kind, id := pathVar(r, "kind"), pathVar(r, "ruleId")
	if err := a.updatePushRules(r.Context(), s.UserID, func(u *pushrules.UserRules) error { return u.Delete(kind, id) }); err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}

// getPushRuleAttr serves GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/{enabled|actions}.
func (a *API) getPushRuleAttr(r *http.Request, s *accounts.Session) (any, error) {
	if err := checkScope(r); err != nil {
		return nil, err
	}
	rs, err := a.users.PushRules(r.Context(), s.UserID)
	if err != nil {
		return nil, err
	}
	kind, id := pathVar(r, "kind"), pathVar(r, "ruleId")
	if pathVar(r, "attr") == "enabled" {
		enabled, err := rs.GetEnabled(kind, id)
		if err != nil {
			return nil, matrixerr.From(err)
		}
		return map[string]bool{"enabled": enabled}, nil
	}
	actions, err := rs.GetActions(kind, id)
	if err != nil {
		return nil, matrixerr.From(err)
	}
	return map[string]any{"actions": actions}, nil
}

// putPushRuleAttr serves PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/{enabled|actions}.
func (a *API) putPushRuleAttr(r *http.Request, s *accounts.Session) (any, error) {
	if err := checkScope(r); err != nil {
		return nil, err
	}
	body, err := httputil.ReadBody(r)
	if err != nil {
		return nil, err
	}
	kind, id := pathVar(r, "kind"), pathVar(r, "ruleId")
	var change func(*pushrules.UserRules) error
	if pathVar(r, "attr") == "enabled" {
		enabled, err := pushrules.ParseEnabled(body)
		if err != nil {
			return nil, matrixerr.From(err)
		}
		change = func(u *pushrules.UserRules) error { return u.SetEnabled(kind, id, enabled) }
	} else {
		actions, err := pushrules.ParseActions(body)
		if err != nil {
			return nil, matrixerr.From(err)
		}
		change = func(u *pushrules.UserRules) error { return u.SetActions(kind, id, actions) }
	}
	if err := a.updatePushRules(r.Context(), s.UserID, change); err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}
