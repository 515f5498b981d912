package admin

import (
	"context"
	"errors"
	"net/http"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"

	"matrixhs/clientapi/internal/users"
	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// adminServerVersion serves GET /_synapse/admin/v1/server_version: the
// module and the VCS revision it was built from, when known.
func (a *API) adminServerVersion(*http.Request, *accounts.Session) (any, error) {
	version := "matrixhs"
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				version += " (" + s.Value[:12] + ")"
			}
		}
	}
	return map[string]any{"server_version": version}, nil
}

// adminUser is the admin API's view of an account.
func adminUser(acc *storage.Account) map[string]any {
	return map[string]any{
		"name": acc.UserID, "displayname": acc.DisplayName, "avatar_url": nullIfEmpty(acc.AvatarURL),
		"admin": acc.IsAdmin, "deactivated": acc.Deactivated, "creation_ts": acc.CreatedTS,
		"is_guest": false, "user_type": nil, "locked": acc.Locked, "shadow_banned": acc.ShadowBanned, "suspended": acc.Suspended,
		"erased":    false,
		"threepids": []any{}, "external_ids": []any{},
	}
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// adminListUsers serves GET /_synapse/admin/v2/users.
func (a *API) adminListUsers(r *http.Request, _ *accounts.Session) (any, error) {
	q := r.URL.Query()
	from, limit, err := httputil.OffsetLimit(q, 100)
	if err != nil {
		return nil, err
	}
	all, err := a.db.Accounts(r.Context())
	if err != nil {
		return nil, err
	}
	showDeactivated := q.Get("deactivated") == "true"
	name := strings.ToLower(q.Get("name"))
	if name == "" {
		name = strings.ToLower(q.Get("user_id"))
	}
	var users []map[string]any
	for i := range all {
		acc := &all[i]
		if acc.Deactivated && !showDeactivated {
			continue
		}
		if acc.UserID == a.cfg.ServerNoticesUserID() {
			continue // the system user behind server notices, not a person
		}
		if admins := q.Get("admins"); admins != "" && (admins == "true") != acc.IsAdmin {
			continue
		}
		if name != "" && !strings.Contains(strings.ToLower(acc.UserID), name) && !strings.Contains(strings.ToLower(acc.DisplayName), name) {
			continue
		}
		u := adminUser(acc)
		for _, k := range []string{"threepids", "external_ids", "erased"} {
			delete(u, k)
		}
		users = append(users, u)
	}
	sortUsers(users, q.Get("order_by"), q.Get("dir") == "b")
	out := map[string]any{"total": len(users)}
	end := min(from+limit, len(users))
	if from >= len(users) {
		out["users"] = []any{}
	} else {
		out["users"] = users[from:end]
	}
	if end < len(users) {
		out["next_token"] = strconv.Itoa(end)
	}
	return out, nil
}

func sortUsers(users []map[string]any, orderBy string, backwards bool) {
	key := func(u map[string]any) string {
		switch orderBy {
		case "displayname":
			return u["displayname"].(string)
		case "creation_ts":
			return strconv.FormatInt(u["creation_ts"].(int64)+1e15, 10) // fixed width
		default:
			return u["name"].(string)
		}
	}
	sort.SliceStable(users, func(i, j int) bool {
		if backwards {
			return key(users[i]) > key(users[j])
		}
		return key(users[i]) < key(users[j])
	})
}

// adminLocalUser parses the {userId} of an admin path: a local user.
func (a *API) adminLocalUser(r *http.Request) (string, error) {
	userID := httputil.PathVar(r, "userId")
	if _, err := a.accounts.ParseLocalUser(userID); err != nil {
		return "", httputil.InvalidParam("%s is not a local user ID", userID)
	}
	return userID, nil
}

func (a *API) adminAccount(ctx context.Context, userID string) (*storage.Account, error) {
	acc, err := a.db.Account(ctx, userID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("User not found")
	}
	return acc, err
}

// adminTarget is the existing local account an admin path's {userId} names.
func (a *API) adminTarget(r *http.Request) (*storage.Account, error) {
	userID, err := a.adminLocalUser(r)
	if err != nil {
		return nil, err
	}
	return a.adminAccount(r.Context(), userID)
}

// adminGetUser serves GET /_synapse/admin/v2/users/{userId}.
func (a *API) adminGetUser(r *http.Request, _ *accounts.Session) (any, error) {
	acc, err := a.adminTarget(r)
	if err != nil {
		return nil, err
	}
	return adminUser(acc), nil
}

// adminPutUser serves PUT /_synapse/admin/v2/users/{userId}: creates the
// account (201) or changes it (200): password, displayname, avatar_url,
// admin, deactivated.
func (a *API) adminPutUser(r *http.Request, s *accounts.Session) (any, error) {
	userID, err := a.adminLocalUser(r)
	if err != nil {
		return nil, err
	}
	var req struct {
		Password      *string `json:"password"`
		LogoutDevices *bool   `json:"logout_devices"`
		DisplayName   *string `json:"displayname"`
		AvatarURL     *string `json:"avatar_url"`
		Admin         *bool   `json:"admin"`
		Deactivated   *bool   `json:"deactivated"`
		Locked        *bool   `json:"locked"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	ctx := r.Context()
	acc, err := a.db.Account(ctx, userID)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	// Everything is checked before anything is changed.
	if err := users.CheckProfileValue("displayname", req.DisplayName); err != nil {
		return nil, err
	}
	if err := users.CheckProfileValue("avatar_url", req.AvatarURL); err != nil {
		return nil, err
	}
	if req.Password != nil {
		if _, err := a.accounts.HashPassword(*req.Password); err != nil {
			return nil, err
		}
	}
	if req.Admin != nil && userID == s.UserID && !*req.Admin {
		return nil, httputil.InvalidParam("You may not demote yourself")
	}
	if req.Deactivated != nil && !*req.Deactivated && acc != nil && acc.Deactivated {
		return nil, httputil.InvalidParam("Reactivating an account is not supported; create a new one")
	}
	created := false
	if acc == nil {
		localpart, _ := a.accounts.ParseLocalUser(userID)
		reg := accounts.Registration{Localpart: localpart, InhibitLogin: true, Admin: req.Admin != nil && *req.Admin}
		if req.Password != nil {
			reg.Password = *req.Password
		} else {
			reg.NoPassword = true
		}
		if req.DisplayName != nil {
			reg.DisplayName = *req.DisplayName
		}
		if _, err := a.accounts.Register(ctx, reg); err != nil {
			return nil, err
		}
		created = true
		req.Password, req.Admin, req.DisplayName = nil, nil, nil
	}
	if req.Password != nil {
		logout := req.LogoutDevices == nil || *req.LogoutDevices
		if err := a.accounts.ChangePassword(ctx, userID, *req.Password, logout, ""); err != nil {
			return nil, err
		}
	}
	if req.Admin != nil {
		if err := a.accounts.SetAdmin(ctx, userID, *req.Admin); err != nil {
			return nil, err
		}
	}
	if req.DisplayName != nil || req.AvatarURL != nil {
		if err := a.adminSetProfile(ctx, userID, req.DisplayName, req.AvatarURL); err != nil {
			return nil, err
		}
	}
	if req.Locked != nil {
		if err := a.setFlag(ctx, userID, storage.FlagLocked, *req.Locked); err != nil {
			return nil, err
		}
	}
	if req.Deactivated != nil && *req.Deactivated && (acc == nil || !acc.Deactivated) {
		if err := a.users.Deactivate(ctx, userID, false); err != nil {
			return nil, err
		}
	}
	acc, err = a.adminAccount(ctx, userID)
	if err != nil {
		return nil, err
	}
	if created {
		return httputil.Response{Status: http.StatusCreated, Body: adminUser(acc)}, nil
	}
	return adminUser(acc), nil
}

// adminSetProfile changes a user's display name and/or avatar the way the
// user would, so their rooms hear of it.
func (a *API) adminSetProfile(ctx context.Context, userID string, displayName, avatarURL *string) error {
	if displayName != nil {
		if err := a.users.SetProfileField(ctx, userID, "", "displayname", *displayName); err != nil {
			return err
		}
	}
	if avatarURL != nil {
		if err := a.users.SetProfileField(ctx, userID, "", "avatar_url", *avatarURL); err != nil {
			return err
		}
	}
	return nil
}

// adminDeactivate serves POST /_synapse/admin/v1/deactivate/{userId}.
func (a *API) adminDeactivate(r *http.Request, s *accounts.Session) (any, error) {
	var req struct {
		Erase bool `json:"erase"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	acc, err := a.adminTarget(r)
	if err != nil {
		return nil, err
	}
	if err := a.users.Deactivate(r.Context(), acc.UserID, req.Erase); err != nil {
		return nil, err
	}
	return map[string]any{"id_server_unbind_result": "success"}, nil
}

// adminResetPassword serves POST /_synapse/admin/v1/reset_password/{userId}.
func (a *API) adminResetPassword(r *http.Request, _ *accounts.Session) (any, error) {
	var req struct {
		NewPassword   string `json:"new_password"`
		LogoutDevices *bool  `json:"logout_devices"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	acc, err := a.adminTarget(r)
	if err != nil {
		return nil, err
	}
	if acc.Deactivated {
		return nil, httputil.InvalidParam("The account is deactivated")
	}
	logout := req.LogoutDevices == nil || *req.LogoutDevices
	if err := a.accounts.ChangePassword(r.Context(), acc.UserID, req.NewPassword, logout, ""); err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}

// adminUserAdmin serves GET and PUT /_synapse/admin/v1/users/{userId}/admin.
func (a *API) adminUserAdmin(r *http.Request, s *accounts.Session) (any, error) {
	acc, err := a.adminTarget(r)
	if err != nil {
		return nil, err
	}
	userID := acc.UserID
	if r.Method == http.MethodGet {
		return map[string]any{"admin": acc.IsAdmin}, nil
	}
	var req struct {
		Admin *bool `json:"admin"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.Admin == nil {
		return nil, httputil.MissingParam("admin is required")
	}
	if userID == s.UserID && !*req.Admin {
		return nil, httputil.InvalidParam("You may not demote yourself")
	}
	if err := a.accounts.SetAdmin(r.Context(), userID, *req.Admin); err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}

// whois serves GET /_matrix/client/v3/admin/whois/{userId} (admins, or a
// user asking about themselves) and the Synapse admin path.
func (a *API) whois(r *http.Request, s *accounts.Session) (any, error) {
	userID := httputil.PathVar(r, "userId")
	if userID != s.UserID {
		acc, err := a.db.Account(r.Context(), s.UserID)
		if err != nil {
			return nil, err
		}
		if !acc.IsAdmin {
			return nil, httputil.Forbidden("You may only look up yourself")
		}
	}
	if _, err := a.adminAccount(r.Context(), userID); err != nil {
		return nil, err
	}
	devices, err := a.accounts.Devices(r.Context(), userID)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	for _, d := range devices {
		conns := []any{}
		if d.LastSeenTS > 0 {
			conns = append(conns, map[string]any{"ip": d.LastSeenIP, "last_seen": d.LastSeenTS, "user_agent": ""})
		}
		out[d.DeviceID] = map[string]any{"sessions": []any{map[string]any{"connections": conns}}}
	}
	return map[string]any{"user_id": userID, "devices": out}, nil
}

// adminRoom is the admin API's view of a room.
func adminRoom(rm storage.AdminRoom) map[string]any {
	return map[string]any{
		"room_id": rm.RoomID, "name": nullIfEmpty(rm.Name), "canonical_alias": nullIfEmpty(rm.CanonicalAlias),
		"joined_members": rm.JoinedMembers, "joined_local_members": rm.JoinedMembers, "version": rm.Version,
		"creator": rm.Creator, "encryption": nullIfEmpty(rm.Encryption), "federatable": true, "public": rm.Published,
		"join_rules": nullIfEmpty(rm.JoinRules), "guest_access": nullIfEmpty(rm.GuestAccess),
		"history_visibility": nullIfEmpty(rm.HistoryVisibility), "state_events": rm.StateEvents,
		"room_type": nullIfEmpty(rm.RoomType),
	}
}

// adminListRooms serves GET /_synapse/admin/v1/rooms.
func (a *API) adminListRooms(r *http.Request, _ *accounts.Session) (any, error) {
	q := r.URL.Query()
	from, limit, err := httputil.OffsetLimit(q, 100)
	if err != nil {
		return nil, err
	}
	all, err := a.db.AdminRooms(r.Context(), "")
	if err != nil {
		return nil, err
	}
	term := strings.ToLower(q.Get("search_term"))
	var rooms []storage.AdminRoom
	for _, rm := range all {
		if term == "" || strings.Contains(strings.ToLower(rm.Name), term) || strings.Contains(strings.ToLower(rm.RoomID), term) ||
			strings.Contains(strings.ToLower(rm.CanonicalAlias), term) {
			rooms = append(rooms, rm)
		}
	}
	backwards := q.Get("dir") == "b"
	sort.SliceStable(rooms, func(i, j int) bool {
		var less bool
		switch q.Get("order_by") {
		case "name":
			less = rooms[i].Name < rooms[j].Name
		case "joined_members", "joined_local_members", "":
			less = rooms[i].JoinedMembers > rooms[j].JoinedMembers // largest first
		case "state_events":
			less = rooms[i].StateEvents > rooms[j].StateEvents
		default:
			less = rooms[i].RoomID < rooms[j].RoomID
		}
		return less != backwards
	})
	page := []map[string]any{}
	for i := from; i < len(rooms) && i < from+limit; i++ {
		page = append(page, adminRoom(rooms[i]))
	}
	out := map[string]any{"rooms": page, "offset": from, "total_rooms": len(rooms)}
	if from+limit < len(rooms) {
		out["next_batch"] = from + limit
	}
	if from > 0 {
		out["prev_batch"] = max(0, from-limit)
	}
	return out, nil
}

// adminGetRoom serves GET /_synapse/admin/v1/rooms/{roomId}.
func (a *API) adminGetRoom(r *http.Request, _ *accounts.Session) (any, error) {
	rooms, err := a.db.AdminRooms(r.Context(), httputil.PathVar(r, "roomId"))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("Room not found")
	}
	if err != nil {
		return nil, err
	}
	return adminRoom(rooms[0]), nil
}

// adminRoomMembers serves GET /_synapse/admin/v1/rooms/{roomId}/members.
func (a *API) adminRoomMembers(r *http.Request, _ *accounts.Session) (any, error) {
	info, err := a.db.Room(r.Context(), httputil.PathVar(r, "roomId"))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("Room not found")
	}
	if err != nil {
		return nil, err
	}
	members, err := a.db.JoinedMembers(r.Context(), info.NID)
	if err != nil {
		return nil, err
	}
	return map[string]any{"members": members, "total": len(members)}, nil
}

// adminUserDevices serves GET /_synapse/admin/v2/users/{userId}/devices.
func (a *API) adminUserDevices(r *http.Request, _ *accounts.Session) (any, error) {
	acc, err := a.adminTarget(r)
	if err != nil {
		return nil, err
	}
	devices, err := a.accounts.Devices(r.Context(), acc.UserID)
	if err != nil {
		return nil, err
	}
	out := []map[string]any{}
	for _, d := range devices {
		out = append(out, map[string]any{"device_id": d.DeviceID, "display_name": nullIfEmpty(d.DisplayName),
			"last_seen_ip": nullIfEmpty(d.LastSeenIP), "last_seen_ts": nullIfZeroInt(d.LastSeenTS),
			"last_seen_user_agent": nil, "user_id": acc.UserID})
	}
	return map[string]any{"devices": out, "total": len(out)}, nil
}

// adminDeleteDevices serves DELETE /_synapse/admin/v2/users/{userId}/devices/{deviceId}
// and POST /_synapse/admin/v2/users/{userId}/delete_devices.
func (a *API) adminDeleteDevices(r *http.Request, _ *accounts.Session) (any, error) {
	var ids []string
	if r.Method == http.MethodDelete {
		ids = []string{httputil.PathVar(r, "deviceId")}
	} else {
		var req struct {
			Devices []string `json:"devices"`
		}
		if err := httputil.DecodeJSON(r, &req); err != nil {
			return nil, err
		}
		if req.Devices == nil {
			return nil, httputil.MissingParam("devices is required")
		}
		ids = req.Devices
	}
	acc, err := a.adminTarget(r)
	if err != nil {
		return nil, err
	}
	if _, err := a.accounts.DeleteDevices(r.Context(), acc.UserID, ids, ""); err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}

// adminJoinedRooms serves GET /_synapse/admin/v1/users/{userId}/joined_rooms.
func (a *API) adminJoinedRooms(r *http.Request, _ *accounts.Session) (any, error) {
	acc, err := a.adminTarget(r)
	if err != nil {
		return nil, err
	}
	rooms, err := a.db.JoinedRooms(r.Context(), acc.UserID)
	if err != nil {
		return nil, err
	}
	if rooms == nil {
		rooms = []string{}
	}
	return map[string]any{"joined_rooms": rooms, "total": len(rooms)}, nil
}

// adminRoomBlock serves GET and PUT /_synapse/admin/v1/rooms/{roomId}/block.
func (a *API) adminRoomBlock(r *http.Request, s *accounts.Session) (any, error) {
	roomID := httputil.PathVar(r, "roomId")
	if !strings.HasPrefix(roomID, "!") || len(roomID) > 255 {
		return nil, httputil.InvalidParam("%q is not a room ID", roomID)
	}
	if r.Method == http.MethodPut {
		var req struct {
			Block *bool `json:"block"`
		}
		if err := httputil.DecodeJSON(r, &req); err != nil {
			return nil, err
		}
		if req.Block == nil {
			return nil, httputil.MissingParam("block is required")
		}
		err := a.db.Write(r.Context(), func(tx *storage.Tx) error {
			return tx.SetRoomBlocked(r.Context(), roomID, *req.Block, s.UserID, a.accounts.Now().UnixMilli())
		})
		if err != nil {
			return nil, err
		}
		return map[string]any{"block": *req.Block}, nil
	}
	by, err := a.db.RoomBlockedBy(r.Context(), roomID)
	if err != nil {
		return nil, err
	}
	if by == "" {
		return map[string]any{"block": false}, nil
	}
	return map[string]any{"block": true, "user_id": by}, nil
}
