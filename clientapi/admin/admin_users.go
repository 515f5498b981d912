package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/internal/matrixerr"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

// Users as Synapse's admin API and the spec's admin client API manage them
// beyond their accounts: logging in as them, shadow bans, locks,
// suspensions, rate limit overrides, their account data, pushers and
// devices, and redacting their events.

// adminLoginAs serves POST /_synapse/admin/v1/users/{userId}/login: an
// access token of the user for the admin, on a session the user's device
// list does not show, expiring at valid_until_ms when given, ended by the
// admin's /logout/all.
func (a *API) adminLoginAs(r *http.Request, s *accounts.Session) (any, error) {
	var req struct {
		ValidUntilMS *int64 `json:"valid_until_ms"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	acc, err := a.adminTarget(r)
	if err != nil {
		return nil, err
	}
	if acc.UserID == s.UserID {
		return nil, httputil.InvalidParam("Cannot use admin API to login as self")
	}
	if acc.Deactivated {
		return nil, httputil.InvalidParam("The account is deactivated")
	}
	var until int64
	if req.ValidUntilMS != nil {
		if until = *req.ValidUntilMS; until <= a.accounts.Now().UnixMilli() {
			return nil, httputil.InvalidParam("valid_until_ms must be in the future")
		}
	}
	token, err := a.accounts.LoginAs(r.Context(), acc.UserID, s.UserID, until)
	if err != nil {
		return nil, err
	}
	return map[string]any{"access_token": token}, nil
}

// adminShadowBan serves POST (ban) and DELETE (lift) /_synapse/admin/v1/users/{userId}/shadow_ban.
func (a *API) adminShadowBan(r *http.Request, _ *accounts.Session) (any, error) {
	acc, err := a.adminTarget(r)
	if err != nil {
		return nil, err
	}
	if err := a.setFlag(r.Context(), acc.UserID, storage.FlagShadowBanned, r.Method == http.MethodPost); err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}

func (a *API) setFlag(ctx context.Context, userID, flag string, on bool) error {
	return a.db.Write(ctx, func(tx *storage.Tx) error { return tx.SetAccountFlag(ctx, userID, flag, on) })
}

// adminSuspendSynapse serves PUT /_synapse/admin/v1/suspend/{userId} {"suspend": bool}.
func (a *API) adminSuspendSynapse(r *http.Request, _ *accounts.Session) (any, error) {
	var req struct {
		Suspend *bool `json:"suspend"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Suspend == nil {
		return nil, httputil.MissingParam("suspend is required")
	}
	acc, err := a.adminTarget(r)
	if err != nil {
		return nil, err
	}
	if err := a.setFlag(r.Context(), acc.UserID, storage.FlagSuspended, *req.Suspend); err != nil {
		return nil, err
	}
	return map[string]any{"user_" + acc.UserID + "_suspended": *req.Suspend}, nil
}

// adminAccountFlag serves the spec's GET and PUT
// /_matrix/client/v1/admin/{lock,suspend}/{userId} ({"locked": bool},
// {"suspended": bool}).
func (a *API) adminAccountFlag(flag, field string) func(*http.Request, *accounts.Session) (any, error) {
	return func(r *http.Request, _ *accounts.Session) (any, error) {
		acc, err := a.adminTarget(r)
		if err != nil {
			return nil, err
		}
		if r.Method == http.MethodGet {
			on := acc.Locked
			if flag == storage.FlagSuspended {
				on = acc.Suspended
			}
			return map[string]any{field: on}, nil
		}
		var req map[string]json.RawMessage
		if err := httputil.DecodeJSON(r, &req); err != nil {
			return nil, err
		}
		raw, ok := req[field]
		if !ok {
			return nil, httputil.MissingParam("%s is required", field)
		}
		var on bool
		if json.Unmarshal(raw, &on) != nil {
			return nil, httputil.BadJSON("%s must be a boolean", field)
		}
		if err := a.setFlag(r.Context(), acc.UserID, flag, on); err != nil {
			return nil, err
		}
		return map[string]any{field: on}, nil
	}
}

// adminRatelimit serves GET, POST and DELETE
// /_synapse/admin/v1/users/{userId}/override_ratelimit.
func (a *API) adminRatelimit(r *http.Request, _ *accounts.Session) (any, error) {
	acc, err := a.adminTarget(r)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	switch r.Method {
	case http.MethodGet:
		o, err := a.db.RatelimitOverride(ctx, acc.UserID)
		if errors.Is(err, storage.ErrNotFound) {
			return httputil.Empty, nil
		}
		if err != nil {
			return nil, err
		}
		return map[string]any{"messages_per_second": o.MessagesPerSecond, "burst_count": o.BurstCount}, nil
	case http.MethodDelete:
		return httputil.Empty, a.db.Write(ctx, func(tx *storage.Tx) error { return tx.SetRatelimitOverride(ctx, acc.UserID, nil) })
	}
	var req struct {
		MessagesPerSecond *int64 `json:"messages_per_second"`
		BurstCount        *int64 `json:"burst_count"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	var o storage.RatelimitOverride
	if req.MessagesPerSecond != nil {
		o.MessagesPerSecond = *req.MessagesPerSecond
	}
	if req.BurstCount != nil {
		o.BurstCount = *req.BurstCount
	}
	if o.MessagesPerSecond < 0 || o.BurstCount < 0 {
		return nil, httputil.InvalidParam("messages_per_second and burst_count must be positive integers")
	}
	if err := a.db.Write(ctx, func(tx *storage.Tx) error { return tx.SetRatelimitOverride(ctx, acc.UserID, &o) }); err != nil {
		return nil, err
	}
	return map[string]any{"messages_per_second": o.MessagesPerSecond, "burst_count": o.BurstCount}, nil
}

// adminAccountData serves GET /_synapse/admin/v1/users/{userId}/accountdata.
func (a *API) adminAccountData(r *http.Request, _ *accounts.Session) (any, error) {
	acc, err := a.adminTarget(r)
	if err != nil {
		return nil, err
	}
	all, err := a.db.AllAccountData(r.Context(), acc.UserID)
	if err != nil {
		return nil, err
	}
	global, rooms := map[string]json.RawMessage{}, map[string]map[string]json.RawMessage{}
	for _, d := range all {
		if d.RoomID == "" {
			global[d.Type] = d.Content
			continue
		}
		if rooms[d.RoomID] == nil {
			rooms[d.RoomID] = map[string]json.RawMessage{}
		}
		rooms[d.RoomID][d.Type] = d.Content
	}
	return map[string]any{"account_data": map[string]any{"global": global, "rooms": rooms}}, nil
}

// adminPushers serves GET /_synapse/admin/v1/users/{userId}/pushers.
func (a *API) adminPushers(r *http.Request, _ *accounts.Session) (any, error) {
	acc, err := a.adminTarget(r)
	if err != nil {
		return nil, err
	}
	pushers, err := a.db.Pushers(r.Context(), acc.UserID)
	if err != nil {
		return nil, err
	}
	out := []map[string]any{}
	for _, p := range pushers {
		data := json.RawMessage(p.Data)
		if len(data) == 0 {
			data = json.RawMessage("{}")
		}
		out = append(out, map[string]any{"app_id": p.AppID, "pushkey": p.PushKey, "kind": p.Kind,
			"app_display_name": p.AppDisplayName, "device_display_name": p.DeviceDisplayName, "profile_tag": p.ProfileTag,
			"lang": p.Lang, "data": data, "pushkey_ts": p.PushKeyTS})
	}
	return map[string]any{"pushers": out, "total": len(out)}, nil
}

// adminDevice serves GET and PUT /_synapse/admin/v2/users/{userId}/devices/{deviceId}.
func (a *API) adminDevice(r *http.Request, _ *accounts.Session) (any, error) {
	var req struct {
		DisplayName *string `json:"display_name"`
	}
	if r.Method == http.MethodPut {
		if err := httputil.DecodeJSON(r, &req); err != nil {
			return nil, err
		}
		if req.DisplayName != nil && len(*req.DisplayName) > 100 {
			return nil, httputil.InvalidParam("display_name is longer than 100 characters")
		}
	}
	acc, err := a.adminTarget(r)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	d, err := a.db.Device(ctx, acc.UserID, httputil.PathVar(r, "deviceId"))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("Device not found")
	}
	if err != nil {
		return nil, err
	}
	if r.Method == http.MethodPut {
		if req.DisplayName != nil {
			err := a.db.Write(ctx, func(tx *storage.Tx) error {
				return tx.SetDeviceDisplayName(ctx, acc.UserID, d.DeviceID, *req.DisplayName)
			})
			if err != nil {
				return nil, err
			}
		}
		return httputil.Empty, nil
	}
	return adminDeviceJSON(acc.UserID, *d), nil
}

func adminDeviceJSON(userID string, d storage.Device) map[string]any {
	return map[string]any{"device_id": d.DeviceID, "display_name": nullIfEmpty(d.DisplayName),
		"last_seen_ip": nullIfEmpty(d.LastSeenIP), "last_seen_ts": nullIfZeroInt(d.LastSeenTS),
		"last_seen_user_agent": nil, "user_id": userID}
}

// adminNoSuchLookup serves the lookups by third-party ID and by external
// auth provider ID: this server has neither, so no user has one.
func (a *API) adminNoSuchLookup(*http.Request, *accounts.Session) (any, error) {
	return nil, httputil.NotFound("User not found")
}

// adminUsernameAvailable serves GET /_synapse/admin/v1/username_available?username=.
func (a *API) adminUsernameAvailable(r *http.Request, _ *accounts.Session) (any, error) {
	name := r.URL.Query().Get("username")
	if name == "" {
		return nil, httputil.MissingParam("username is required")
	}
	localpart, err := a.accounts.ParseLocalUser(name)
	if err != nil {
		return nil, &httputil.Error{Status: http.StatusBadRequest, Code: "M_INVALID_USERNAME", Msg: err.Error()}
	}
	if _, err := a.db.Account(r.Context(), a.accounts.UserID(localpart)); err == nil {
		return nil, &httputil.Error{Status: http.StatusBadRequest, Code: "M_USER_IN_USE", Msg: "User ID already taken."}
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	return map[string]any{"available": true}, nil
}

// adminRedactUser serves POST /_synapse/admin/v1/user/{userId}/redact: the
// user's events (not state) in the rooms given (none: every room they are
// in), newest first, up to limit per room, redacted in the background by
// the user themselves (a local user) or, with use_admin or for a remote
// user, by the admin.
func (a *API) adminRedactUser(r *http.Request, s *accounts.Session) (any, error) {
	var req struct {
		Rooms    []string `json:"rooms"`
		Reason   *string  `json:"reason"`
		Limit    *int     `json:"limit"`
		UseAdmin bool     `json:"use_admin"`
		AfterTS  *int64   `json:"after_ts"`
		BeforeTS *int64   `json:"before_ts"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Rooms == nil {
		return nil, httputil.MissingParam("rooms is required")
	}
	limit := 1000
	if req.Limit != nil {
		if limit = *req.Limit; limit <= 0 {
			return nil, httputil.InvalidParam("limit must be a positive integer")
		}
	}
	userID := httputil.PathVar(r, "userId")
	if _, err := spec.NewUserID(userID, true); err != nil {
		return nil, httputil.InvalidParam("%q is not a user ID", userID)
	}
	_, notLocal := a.accounts.ParseLocalUser(userID)
	redactor := userID
	if req.UseAdmin || notLocal != nil {
		redactor = s.UserID
	}
	ctx := r.Context()
	rooms := req.Rooms
	if len(rooms) == 0 {
		joined, err := a.db.JoinedRooms(ctx, userID)
		if err != nil {
			return nil, err
		}
		rooms = joined
	}
	sel := storage.UserEventsSelection{Sender: userID, Limit: limit}
	if req.AfterTS != nil {
		sel.AfterTS = *req.AfterTS
	}
	if req.BeforeTS != nil {
		sel.BeforeTS = *req.BeforeTS
	}
	reason := ""
	if req.Reason != nil {
		reason = *req.Reason
	}
	t, ok := a.tasks.start(userID, taskRedactUser)
	if !ok {
		return nil, httputil.InvalidParam("A redaction of %s's events is already in progress", userID)
	}
	go a.runRedactions(context.WithoutCancel(ctx), t, redactor, rooms, sel, reason)
	return map[string]any{"redact_id": t.id}, nil
}

func (a *API) runRedactions(ctx context.Context, t *task, redactor string, rooms []string, sel storage.UserEventsSelection, reason string) {
	a.tasks.update(t, func(t *task) { t.status, t.failedRedactions = taskActive, map[string]string{} })
	for _, roomID := range rooms {
		info, err := a.db.Room(ctx, roomID)
		if err != nil {
			continue // unknown rooms have nothing to redact
		}
		ids, err := a.db.UserEventsToRedact(ctx, info.NID, sel)
		if err != nil {
			a.tasks.update(t, func(t *task) { t.failedRedactions[roomID] = err.Error() })
			continue
		}
		for _, id := range ids {
			content := map[string]string{"redacts": id}
			if reason != "" {
				content["reason"] = reason
			}
			raw, _ := json.Marshal(content)
			_, err := a.rooms.Send(ctx, roomserver.LocalEvent{RoomID: roomID, Sender: redactor, Type: spec.MRoomRedaction, Content: raw, Redacts: id})
			if err != nil {
				msg := matrixerr.From(err).Error()
				a.tasks.update(t, func(t *task) { t.failedRedactions[id] = msg })
				continue
			}
			a.tasks.update(t, func(t *task) { t.progress.Events++ })
		}
	}
	done, _ := a.tasks.get(t.id)
	a.log.WithField("user_id", t.roomID).WithField("redact_id", t.id).WithField("redacted", strconv.FormatInt(done.progress.Events, 10)).
		Info("Redacted a user's events")
	a.tasks.update(t, func(t *task) { t.status = taskComplete })
}

// adminRedactStatus serves GET /_synapse/admin/v1/user/redact_status/{redactId}.
func (a *API) adminRedactStatus(r *http.Request, _ *accounts.Session) (any, error) {
	t, ok := a.tasks.get(httputil.PathVar(r, "redactId"))
	if !ok || t.kind != taskRedactUser {
		return nil, httputil.NotFound("redact id '%s' not found", httputil.PathVar(r, "redactId"))
	}
	failed := t.failedRedactions
	if failed == nil {
		failed = map[string]string{}
	}
	return map[string]any{"status": t.status, "failed_redactions": failed}, nil
}
