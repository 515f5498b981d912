package mediaapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// The media part of the Synapse-compatible admin API (server admins only):
// listing (by user, by room, one item), quarantine (by ID, user, room) and
// protection from it, deletion (by ID, by age and size, by user), purging
// the cache of other servers' media, and usage statistics. Deleting media
// deletes its files once nothing else uses them.

func (m *Media) adminRoutes(rt *httputil.Router) {
	get, post, del := http.MethodGet, http.MethodPost, http.MethodDelete
	a := m.authn.AdminJSON
	rt.Exact(get, "/_synapse/admin/v1/users/{userId}/media", a(m.adminUserMedia))
	rt.Exact(del, "/_synapse/admin/v1/users/{userId}/media", a(m.adminDeleteUserMedia))
	rt.Exact(get, "/_synapse/admin/v1/media/{serverName}/{mediaId}", a(m.adminMediaInfo))
	rt.Exact(del, "/_synapse/admin/v1/media/{serverName}/{mediaId}", a(m.adminDeleteMedia))
	rt.Exact(post, "/_synapse/admin/v1/media/delete", a(m.adminDeleteOldMedia))
	rt.Exact(post, "/_synapse/admin/v1/media/{serverName}/delete", a(m.adminDeleteOldMedia))
	rt.Exact(get, "/_synapse/admin/v1/room/{roomId}/media", a(m.adminRoomMedia))
	rt.Exact(post, "/_synapse/admin/v1/room/{roomId}/media/quarantine", a(m.adminQuarantineRoom))
	rt.Exact(post, "/_synapse/admin/v1/quarantine_media/{roomId}", a(m.adminQuarantineRoom)) // Synapse's older path
	rt.Exact(post, "/_synapse/admin/v1/user/{userId}/media/quarantine", a(m.adminQuarantineUser))
	rt.Exact(post, "/_synapse/admin/v1/media/quarantine/{serverName}/{mediaId}", a(m.adminQuarantineOne(true)))
	rt.Exact(post, "/_synapse/admin/v1/media/unquarantine/{serverName}/{mediaId}", a(m.adminQuarantineOne(false)))
	rt.Exact(post, "/_synapse/admin/v1/media/protect/{mediaId}", a(m.adminProtect(true)))
	rt.Exact(post, "/_synapse/admin/v1/media/unprotect/{mediaId}", a(m.adminProtect(false)))
	rt.Exact(post, "/_synapse/admin/v1/purge_media_cache", a(m.adminPurgeMediaCache))
	rt.Exact(get, "/_synapse/admin/v1/statistics/users/media", a(m.adminMediaStatistics))
}

// adminMediaJSON is a media row as the admin API lists it.
func (m *Media) adminMediaJSON(md storage.Media) map[string]any {
	out := map[string]any{"media_id": md.MediaID, "media_type": md.ContentType, "media_length": md.Size,
		"upload_name": nullIfEmpty(md.UploadName), "created_ts": md.CreatedTS, "last_access_ts": nil,
		"quarantined_by": nullIfEmpty(md.QuarantinedBy), "safe_from_quarantine": md.SafeFromQuarantine,
		"media_origin": md.Origin, "user_id": nullIfEmpty(md.UserID), "filesystem_id": nullIfEmpty(md.SHA256), "url_cache": nil,
		"authenticated": nil}
	return out
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// adminUser is the existing local account a path's {userId} names.
func (m *Media) adminUser(r *http.Request) (string, error) {
	userID := pathVar(r, "userId")
	if !strings.HasSuffix(userID, ":"+m.serverName) || !strings.HasPrefix(userID, "@") {
		return "", httputil.InvalidParam("Can only look up local users")
	}
	if _, err := m.db.Account(r.Context(), userID); errors.Is(err, storage.ErrNotFound) {
		return "", httputil.NotFound("User not found")
	} else if err != nil {
		return "", err
	}
	return userID, nil
}

// adminUserMedia serves GET /_synapse/admin/v1/users/{userId}/media.
func (m *Media) adminUserMedia(r *http.Request, _ *accounts.Session) (any, error) {
	userID, err := m.adminUser(r)
	if err != nil {
		return nil, err
	}
	page, total, next, err := m.userMediaPage(r, userID)
	if err != nil {
		return nil, err
	}
	list := []map[string]any{}
	for _, md := range page {
		list = append(list, m.adminMediaJSON(md))
	}
	out := map[string]any{"media": list, "total": total}
	if next > 0 {
		out["next_token"] = next
	}
	return out, nil
}

// userMediaPage is the page of a user's media the query asks for
// (from, limit, order_by, dir), with the total and the next offset.
func (m *Media) userMediaPage(r *http.Request, userID string) ([]storage.Media, int, int, error) {
	q := r.URL.Query()
	from, limit, err := httputil.OffsetLimit(q, 100)
	if err != nil {
		return nil, 0, 0, err
	}
	all, err := m.db.UserMedia(r.Context(), userID)
	if err != nil {
		return nil, 0, 0, err
	}
	if err := sortMedia(all, q.Get("order_by"), q.Get("dir")); err != nil {
		return nil, 0, 0, err
	}
	end := min(from+limit, len(all))
	if from >= len(all) {
		return nil, len(all), 0, nil
	}
	next := 0
	if end < len(all) {
		next = end
	}
	return all[from:end], len(all), next, nil
}

// sortMedia orders a user's media as the admin API's order_by and dir
// say (default: newest first).
func sortMedia(all []storage.Media, orderBy, dir string) error {
	if dir != "" && dir != "f" && dir != "b" {
		return httputil.InvalidParam("dir must be f or b")
	}
	var less func(a, b storage.Media) bool
	switch orderBy {
	case "":
		return nil // UserMedia's order: newest first
	case "media_id":
		less = func(a, b storage.Media) bool { return a.MediaID < b.MediaID }
	case "upload_name":
		less = func(a, b storage.Media) bool { return a.UploadName < b.UploadName }
	case "created_ts", "last_access_ts":
		less = func(a, b storage.Media) bool { return a.CreatedTS < b.CreatedTS }
	case "media_length":
		less = func(a, b storage.Media) bool { return a.Size < b.Size }
	case "media_type":
		less = func(a, b storage.Media) bool { return a.ContentType < b.ContentType }
	case "quarantined_by":
		less = func(a, b storage.Media) bool { return a.QuarantinedBy < b.QuarantinedBy }
	case "safe_from_quarantine":
		less = func(a, b storage.Media) bool { return !a.SafeFromQuarantine && b.SafeFromQuarantine }
	default:
		return httputil.InvalidParam("unknown order_by %q", orderBy)
	}
	sort.SliceStable(all, func(i, j int) bool {
		if dir == "b" {
			return less(all[j], all[i])
		}
		return less(all[i], all[j])
	})
	return nil
}

// adminDeleteUserMedia serves DELETE /_synapse/admin/v1/users/{userId}/media:
// deletes the page of the user's media a listing would show.
func (m *Media) adminDeleteUserMedia(r *http.Request, _ *accounts.Session) (any, error) {
	userID, err := m.adminUser(r)
	if err != nil {
		return nil, err
	}
	page, _, _, err := m.userMediaPage(r, userID)
	if err != nil {
		return nil, err
	}
	keys := make([]storage.MediaKey, 0, len(page))
	for _, md := range page {
		keys = append(keys, storage.MediaKey{Origin: md.Origin, MediaID: md.MediaID})
	}
	return m.deleteKeys(r.Context(), keys)
}

// deleteKeys deletes media rows with their files and answers Synapse's
// {"deleted_media", "total"}.
func (m *Media) deleteKeys(ctx context.Context, keys []storage.MediaKey) (any, error) {
	deleted := []string{}
	for _, k := range keys {
		if _, err := deleteMediaRow(ctx, m.db, m.store, k.Origin, k.MediaID); errors.Is(err, storage.ErrNotFound) {
			continue
		} else if err != nil {
			return nil, err
		}
		deleted = append(deleted, k.MediaID)
	}
	return map[string]any{"deleted_media": deleted, "total": len(deleted)}, nil
}

// adminMediaInfo serves GET /_synapse/admin/v1/media/{serverName}/{mediaId}.
func (m *Media) adminMediaInfo(r *http.Request, _ *accounts.Session) (any, error) {
	md, err := m.db.Media(r.Context(), pathVar(r, "serverName"), pathVar(r, "mediaId"))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("Unknown media")
	}
	if err != nil {
		return nil, err
	}
	return map[string]any{"media_info": m.adminMediaJSON(*md)}, nil
}

// adminDeleteMedia serves DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}.
func (m *Media) adminDeleteMedia(r *http.Request, _ *accounts.Session) (any, error) {
	if pathVar(r, "serverName") != m.serverName {
		return nil, httputil.InvalidParam("Only local media can be deleted")
	}
	mediaID := pathVar(r, "mediaId")
	if _, err := deleteMediaRow(r.Context(), m.db, m.store, m.serverName, mediaID); errors.Is(err, storage.ErrNotFound) {
		return nil, httputil.NotFound("No such media")
	} else if err != nil {
		return nil, err
	}
	return map[string]any{"deleted_media": []string{mediaID}, "total": 1}, nil
}

// queryInt reads an optional non-negative integer query parameter.
func queryInt(r *http.Request, name string, def int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, httputil.InvalidParam("%s must be a non-negative integer", name)
	}
	return n, nil
}

// adminDeleteOldMedia serves POST /_synapse/admin/v1/media/delete (and
// .../media/{serverName}/delete): local media uploaded before before_ts,
// larger than size_gt, not quarantined or protected, and unless
// keep_profiles=false, not in use as an avatar.
func (m *Media) adminDeleteOldMedia(r *http.Request, _ *accounts.Session) (any, error) {
	if s := pathVar(r, "serverName"); s != "" && s != m.serverName {
		return nil, httputil.InvalidParam("Can only delete local media")
	}
	if r.URL.Query().Get("before_ts") == "" {
		return nil, httputil.MissingParam("before_ts is required")
	}
	before, err := queryInt(r, "before_ts", 0)
	if err != nil {
		return nil, err
	}
	sizeGT, err := queryInt(r, "size_gt", 0)
	if err != nil {
		return nil, err
	}
	keepProfiles := true
	switch r.URL.Query().Get("keep_profiles") {
	case "", "true":
	case "false":
		keepProfiles = false
	default:
		return nil, httputil.InvalidParam("keep_profiles must be true or false")
	}
	ctx := r.Context()
	keys, err := m.db.LocalMediaToDelete(ctx, storage.LocalMediaSelection{Origin: m.serverName, BeforeTS: before, SizeGT: sizeGT})
	if err != nil {
		return nil, err
	}
	if keepProfiles {
		avatars, err := m.db.AvatarURIs(ctx)
		if err != nil {
			return nil, err
		}
		kept := keys[:0]
		for _, k := range keys {
			if !avatars["mxc://"+k.Origin+"/"+k.MediaID] {
				kept = append(kept, k)
			}
		}
		keys = kept
	}
	return m.deleteKeys(ctx, keys)
}

// adminRoomMedia serves GET /_synapse/admin/v1/room/{roomId}/media: the
// media its (unencrypted) events refer to, local and remote.
func (m *Media) adminRoomMedia(r *http.Request, _ *accounts.Session) (any, error) {
	local, remote, err := m.roomMedia(r.Context(), pathVar(r, "roomId"))
	if err != nil {
		return nil, err
	}
	out := map[string]any{"local": []string{}, "remote": []string{}}
	for _, k := range local {
		out["local"] = append(out["local"].([]string), "mxc://"+k.Origin+"/"+k.MediaID)
	}
	for _, k := range remote {
		out["remote"] = append(out["remote"].([]string), "mxc://"+k.Origin+"/"+k.MediaID)
	}
	return out, nil
}

// roomMedia lists the media a room's events refer to (content.url,
// content.info.thumbnail_url), local and other servers'.
func (m *Media) roomMedia(ctx context.Context, roomID string) (local, remote []storage.MediaKey, err error) {
	info, err := m.db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil, httputil.NotFound("Room not found")
	}
	if err != nil {
		return nil, nil, err
	}
	events, err := m.db.RoomEventContents(ctx, info.NID)
	if err != nil {
		return nil, nil, err
	}
	seen := map[storage.MediaKey]bool{}
	for _, js := range events {
		var ev struct {
			Content struct {
				URL  any `json:"url"`
				Info struct {
					ThumbnailURL any `json:"thumbnail_url"`
				} `json:"info"`
			} `json:"content"`
		}
		if json.Unmarshal(js, &ev) != nil {
			continue
		}
		for _, u := range []any{ev.Content.URL, ev.Content.Info.ThumbnailURL} {
			k, ok := parseMXC(u)
			if !ok || seen[k] {
				continue
			}
			seen[k] = true
			if k.Origin == m.serverName {
				local = append(local, k)
			} else {
				remote = append(remote, k)
			}
		}
	}
	return local, remote, nil
}

// parseMXC reads an mxc://server/id URI.
func parseMXC(v any) (storage.MediaKey, bool) {
	s, ok := v.(string)
	if !ok {
		return storage.MediaKey{}, false
	}
	rest, ok := strings.CutPrefix(s, "mxc://")
	if !ok {
		return storage.MediaKey{}, false
	}
	server, id, ok := strings.Cut(rest, "/")
	if !ok || server == "" || !validMediaID(id) {
		return storage.MediaKey{}, false
	}
	return storage.MediaKey{Origin: server, MediaID: id}, true
}

// quarantine marks media quarantined by the admin and answers how many.
func (m *Media) quarantine(ctx context.Context, keys []storage.MediaKey, by string) (any, error) {
	var n int64
	err := m.db.Write(ctx, func(tx *storage.Tx) error {
		var err error
		n, err = tx.QuarantineMedia(ctx, keys, by)
		return err
	})
	if err != nil {
		return nil, err
	}
	return map[string]any{"num_quarantined": n}, nil
}

// adminQuarantineRoom serves POST /_synapse/admin/v1/room/{roomId}/media/quarantine.
func (m *Media) adminQuarantineRoom(r *http.Request, s *accounts.Session) (any, error) {
	local, remote, err := m.roomMedia(r.Context(), pathVar(r, "roomId"))
	if err != nil {
		return nil, err
	}
	return m.quarantine(r.Context(), append(local, remote...), s.UserID)
}

// adminQuarantineUser serves POST /_synapse/admin/v1/user/{userId}/media/quarantine.
func (m *Media) adminQuarantineUser(r *http.Request, s *accounts.Session) (any, error) {
	userID, err := m.adminUser(r)
	if err != nil {
		return nil, err
	}
	keys, err := m.db.UserMediaKeys(r.Context(), userID)
	if err != nil {
		return nil, err
	}
	return m.quarantine(r.Context(), keys, s.UserID)
}

// adminQuarantineOne serves POST /_synapse/admin/v1/media/{un,}quarantine/{serverName}/{mediaId}.
func (m *Media) adminQuarantineOne(on bool) func(*http.Request, *accounts.Session) (any, error) {
	return func(r *http.Request, s *accounts.Session) (any, error) {
		key := storage.MediaKey{Origin: pathVar(r, "serverName"), MediaID: pathVar(r, "mediaId")}
		by := ""
		if on {
			by = s.UserID
		}
		if _, err := m.quarantine(r.Context(), []storage.MediaKey{key}, by); err != nil {
			return nil, err
		}
		return httputil.Empty, nil
	}
}

// adminProtect serves POST /_synapse/admin/v1/media/{un,}protect/{mediaId}.
func (m *Media) adminProtect(on bool) func(*http.Request, *accounts.Session) (any, error) {
	return func(r *http.Request, _ *accounts.Session) (any, error) {
		ctx := r.Context()
		md, err := m.db.MediaByID(ctx, m.serverName, pathVar(r, "mediaId"))
		if errors.Is(err, storage.ErrNotFound) {
			return nil, httputil.NotFound("Unknown media")
		}
		if err != nil {
			return nil, err
		}
		err = m.db.Write(ctx, func(tx *storage.Tx) error { return tx.SetMediaProtected(ctx, md.Origin, md.MediaID, on) })
		if err != nil {
			return nil, err
		}
		return httputil.Empty, nil
	}
}

// adminPurgeMediaCache serves POST /_synapse/admin/v1/purge_media_cache?before_ts=:
// deletes this server's copies of other servers' media fetched before
// before_ts, files and thumbnails too (they are fetched again when asked
// for).
func (m *Media) adminPurgeMediaCache(r *http.Request, _ *accounts.Session) (any, error) {
	if r.URL.Query().Get("before_ts") == "" {
		return nil, httputil.MissingParam("Missing integer query parameter 'before_ts'")
	}
	before, err := queryInt(r, "before_ts", 0)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	keys, err := m.db.RemoteMediaBefore(ctx, m.serverName, before)
	if err != nil {
		return nil, err
	}
	n := 0
	for _, k := range keys {
		if _, err := deleteMediaRow(ctx, m.db, m.store, k.Origin, k.MediaID); errors.Is(err, storage.ErrNotFound) {
			continue
		} else if err != nil {
			return nil, err
		}
		n++
	}
	return map[string]any{"deleted": n}, nil
}

// adminMediaStatistics serves GET /_synapse/admin/v1/statistics/users/media.
func (m *Media) adminMediaStatistics(r *http.Request, _ *accounts.Session) (any, error) {
	q := r.URL.Query()
	from, limit, err := httputil.OffsetLimit(q, 100)
	if err != nil {
		return nil, err
	}
	fromTS, err := queryInt(r, "from_ts", 0)
	if err != nil {
		return nil, err
	}
	untilTS, err := queryInt(r, "until_ts", 1<<62)
	if err != nil {
		return nil, err
	}
	usage, err := m.db.MediaUsageByUser(r.Context(), m.serverName, fromTS, untilTS)
	if err != nil {
		return nil, err
	}
	if term := strings.ToLower(q.Get("search_term")); term != "" {
		kept := usage[:0]
		for _, u := range usage {
			if strings.Contains(strings.ToLower(u.UserID), term) || strings.Contains(strings.ToLower(u.DisplayName), term) {
				kept = append(kept, u)
			}
		}
		usage = kept
	}
	var less func(a, b storage.MediaUsage) bool
	switch q.Get("order_by") {
	case "", "user_id":
		less = func(a, b storage.MediaUsage) bool { return a.UserID < b.UserID }
	case "displayname":
		less = func(a, b storage.MediaUsage) bool { return a.DisplayName < b.DisplayName }
	case "media_length":
		less = func(a, b storage.MediaUsage) bool { return a.Length < b.Length }
	case "media_count":
		less = func(a, b storage.MediaUsage) bool { return a.Count < b.Count }
	default:
		return nil, httputil.InvalidParam("unknown order_by %q", q.Get("order_by"))
	}
	if d := q.Get("dir"); d != "" && d != "f" && d != "b" {
		return nil, httputil.InvalidParam("dir must be f or b")
	}
	sort.SliceStable(usage, func(i, j int) bool {
		if q.Get("dir") == "b" {
			return less(usage[j], usage[i])
		}
		return less(usage[i], usage[j])
	})
	users := []map[string]any{}
	for i := from; i < len(usage) && i < from+limit; i++ {
		u := usage[i]
		users = append(users, map[string]any{"user_id": u.UserID, "displayname": nullIfEmpty(u.DisplayName),
			"media_count": u.Count, "media_length": u.Length})
	}
	out := map[string]any{"users": users, "total": len(usage)}
	if from+limit < len(usage) {
		out["next_token"] = from + limit
	}
	return out, nil
}

// AdminRoutes lists the media admin API's routes (for tests and tools).
func AdminRoutes() []httputil.Route {
	rt := httputil.NewRouter()
	(&Media{}).adminRoutes(rt)
	return rt.Routes()
}
