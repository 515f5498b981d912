package clientapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"

	"github.com/gorilla/mux"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// Server-side key backup (spec "Server-side key backups"). Versions are
// per-user integers sent as strings; the etag is a counter that advances
// whenever the keys of a version change.

func unknownBackup() error { return httputil.NotFound("Unknown backup version") }

// parseBackupVersion parses a version string; ok is false for anything that
// cannot name a backup (such versions are simply unknown).
func parseBackupVersion(s string) (int64, bool) {
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil && v > 0
}

func backupVersionJSON(b *storage.BackupVersion) map[string]any {
	return map[string]any{
		"algorithm": b.Algorithm,
		"auth_data": json.RawMessage(b.AuthData),
		"count":     b.Count,
		"etag":      strconv.FormatInt(b.Etag, 10),
		"version":   strconv.FormatInt(b.Version, 10),
	}
}

// backupInfoReq is the body of POST and PUT /room_keys/version.
type backupInfoReq struct {
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Version   *string         `json:"version"`
}

func (b *backupInfoReq) validate() ([]byte, error) {
	if b.Algorithm == "" {
		return nil, httputil.MissingParam("algorithm is required")
	}
	auth := bytes.TrimSpace(b.AuthData)
	if len(auth) == 0 || auth[0] != '{' {
		return nil, httputil.MissingParam("auth_data must be an object")
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, auth); err != nil {
		return nil, httputil.BadJSON("bad auth_data: %v", err)
	}
	return compact.Bytes(), nil
}

// createBackupVersion serves POST /_matrix/client/v3/room_keys/version.
func (a *API) createBackupVersion(r *http.Request, s *accounts.Session) (any, error) {
	var req backupInfoReq
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	auth, err := req.validate()
	if err != nil {
		return nil, err
	}
	var version int64
	err = a.db.Write(r.Context(), func(tx *storage.Tx) error {
		var err error
		version, err = tx.CreateBackupVersion(r.Context(), s.UserID, req.Algorithm, auth)
		return err
	})
	if err != nil {
		return nil, err
	}
	return map[string]string{"version": strconv.FormatInt(version, 10)}, nil
}

// getBackupVersion serves GET /_matrix/client/v3/room_keys/version[/{version}].
func (a *API) getBackupVersion(r *http.Request, s *accounts.Session) (any, error) {
	var version int64
	if v, ok := mux.Vars(r)["version"]; ok {
		var valid bool
		if version, valid = parseBackupVersion(v); !valid {
			return nil, unknownBackup()
		}
	}
	b, err := a.db.BackupVersion(r.Context(), s.UserID, version)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && b.Deleted) {
		if version == 0 {
			return nil, httputil.NotFound("No current backup version")
		}
		return nil, unknownBackup()
	}
	if err != nil {
		return nil, err
	}
	return backupVersionJSON(b), nil
}

// putBackupVersion serves PUT /_matrix/client/v3/room_keys/version/{version}:
// only auth_data may change.
func (a *API) putBackupVersion(r *http.Request, s *accounts.Session) (any, error) {
	path := pathVar(r, "version")
	var req backupInfoReq
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	auth, err := req.validate()
	if err != nil {
		return nil, err
	}
	if req.Version != nil && *req.Version != path {
		return nil, httputil.InvalidParam("version in the body does not match the path")
	}
	version, ok := parseBackupVersion(path)
	if !ok {
		return nil, unknownBackup()
	}
	err = a.db.Write(r.Context(), func(tx *storage.Tx) error {
		b, err := tx.BackupVersion(r.Context(), s.UserID, version)
		if errors.Is(err, storage.ErrNotFound) || (err == nil && b.Deleted) {
			return unknownBackup()
		}
		if err != nil {
			return err
		}
		if b.Algorithm != req.Algorithm {
			return httputil.InvalidParam("algorithm does not match the backup's")
		}
		return tx.UpdateBackupAuthData(r.Context(), s.UserID, version, auth)
	})
	if err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}

// deleteBackupVersion serves DELETE /_matrix/client/v3/room_keys/version/{version}.
func (a *API) deleteBackupVersion(r *http.Request, s *accounts.Session) (any, error) {
	version, ok := parseBackupVersion(pathVar(r, "version"))
	if !ok {
		return nil, unknownBackup()
	}
	err := a.db.Write(r.Context(), func(tx *storage.Tx) error {
		return tx.DeleteBackupVersion(r.Context(), s.UserID, version)
	})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, unknownBackup()
	}
	if err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}

// backupTarget is the version, room and session a /room_keys/keys request names.
type backupTarget struct {
	version   int64
	roomID    string
	sessionID string
}

func parseBackupTarget(r *http.Request) (*backupTarget, error) {
	v := r.URL.Query().Get("version")
	if v == "" {
		return nil, httputil.MissingParam("the version query parameter is required")
	}
	t := &backupTarget{}
	var ok bool
	if t.version, ok = parseBackupVersion(v); !ok {
		return nil, unknownBackup()
	}
	vars := mux.Vars(r)
	if _, has := vars["roomId"]; has {
		t.roomID = pathVar(r, "roomId")
	}
	if _, has := vars["sessionId"]; has {
		t.sessionID = pathVar(r, "sessionId")
	}
	return t, nil
}

// liveVersion checks that a version exists and is not deleted.
func (a *API) liveVersion(r *http.Request, userID string, version int64) error {
	b, err := a.db.BackupVersion(r.Context(), userID, version)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && b.Deleted) {
		return unknownBackup()
	}
	return err
}

// keyBackupData is one session's backup entry.
type keyBackupData struct {
	FirstMessageIndex *int64          `json:"first_message_index"`
	ForwardedCount    *int64          `json:"forwarded_count"`
	IsVerified        *bool           `json:"is_verified"`
	SessionData       json.RawMessage `json:"session_data"`
}

func (k *keyBackupData) toKey(roomID, sessionID string) (storage.BackupKey, error) {
	if k.FirstMessageIndex == nil || k.ForwardedCount == nil || k.IsVerified == nil {
		return storage.BackupKey{}, httputil.MissingParam("key data for session %s needs first_message_index, forwarded_count and is_verified", sessionID)
	}
	if *k.FirstMessageIndex < 0 || *k.ForwardedCount < 0 {
		return storage.BackupKey{}, httputil.InvalidParam("first_message_index and forwarded_count must not be negative")
	}
	data := bytes.TrimSpace(k.SessionData)
	if len(data) == 0 || data[0] != '{' {
		return storage.BackupKey{}, httputil.MissingParam("session_data of session %s must be an object", sessionID)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, data); err != nil {
		return storage.BackupKey{}, httputil.BadJSON("bad session_data: %v", err)
	}
	return storage.BackupKey{RoomID: roomID, SessionID: sessionID, FirstMessageIndex: *k.FirstMessageIndex,
		ForwardedCount: *k.ForwardedCount, IsVerified: *k.IsVerified, SessionData: compact.Bytes()}, nil
}

func keyDataJSON(k storage.BackupKey) map[string]any {
	return map[string]any{
		"first_message_index": k.FirstMessageIndex,
		"forwarded_count":     k.ForwardedCount,
		"is_verified":         k.IsVerified,
		"session_data":        json.RawMessage(k.SessionData),
	}
}

type roomKeyBackup struct {
	Sessions map[string]keyBackupData `json:"sessions"`
}

func roomKeys(roomID string, room roomKeyBackup) ([]storage.BackupKey, error) {
	if room.Sessions == nil {
		return nil, httputil.MissingParam("sessions is required for room %s", roomID)
	}
	ids := make([]string, 0, len(room.Sessions))
	for id := range room.Sessions {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]storage.BackupKey, 0, len(ids))
	for _, id := range ids {
		d := room.Sessions[id]
		k, err := d.toKey(roomID, id)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// putBackupKeys serves PUT /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]].
// Keys may only be added to the current version.
func (a *API) putBackupKeys(r *http.Request, s *accounts.Session) (any, error) {
	t, err := parseBackupTarget(r)
	if err != nil {
		return nil, err
	}
	var keys []storage.BackupKey
	switch {
	case t.sessionID != "":
		var d keyBackupData
		if err := httputil.DecodeJSON(r, &d); err != nil {
			return nil, err
		}
		k, err := d.toKey(t.roomID, t.sessionID)
		if err != nil {
			return nil, err
		}
		keys = []storage.BackupKey{k}
	case t.roomID != "":
		var room roomKeyBackup
		if err := httputil.DecodeJSON(r, &room); err != nil {
			return nil, err
		}
		if keys, err = roomKeys(t.roomID, room); err != nil {
			return nil, err
		}
	default:
		var req struct {
			Rooms map[string]roomKeyBackup `json:"rooms"`
		}
		if err := httputil.DecodeJSON(r, &req); err != nil {
			return nil, err
		}
		if req.Rooms == nil {
			return nil, httputil.MissingParam("rooms is required")
		}
		roomIDs := make([]string, 0, len(req.Rooms))
		for id := range req.Rooms {
			roomIDs = append(roomIDs, id)
		}
		sort.Strings(roomIDs)
		for _, id := range roomIDs {
			ks, err := roomKeys(id, req.Rooms[id])
			if err != nil {
				return nil, err
			}
			keys = append(keys, ks...)
		}
	}
	var etag, count int64
	err = a.db.Write(r.Context(), func(tx *storage.Tx) error {
		cur, err := tx.BackupVersion(r.Context(), s.UserID, 0)
		if errors.Is(err, storage.ErrNotFound) {
			return unknownBackup()
		}
		if err != nil {
			return err
		}
		if cur.Version != t.version {
			b, err := tx.BackupVersion(r.Context(), s.UserID, t.version)
			if errors.Is(err, storage.ErrNotFound) || (err == nil && b.Deleted) {
				return unknownBackup()
			}
			if err != nil {
				return err
			}
			return (&httputil.Error{Status: http.StatusForbidden, Code: "M_WRONG_ROOM_KEYS_VERSION",
				Msg: "Wrong backup version."}).With("current_version", strconv.FormatInt(cur.Version, 10))
		}
		etag, count, err = tx.PutBackupKeys(r.Context(), s.UserID, t.version, keys)
		return err
	})
	if err != nil {
		return nil, err
	}
	return map[string]any{"etag": strconv.FormatInt(etag, 10), "count": count}, nil
}

// getBackupKeys serves GET /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]].
func (a *API) getBackupKeys(r *http.Request, s *accounts.Session) (any, error) {
	t, err := parseBackupTarget(r)
	if err != nil {
		return nil, err
	}
	if err := a.liveVersion(r, s.UserID, t.version); err != nil {
		return nil, err
	}
	keys, err := a.db.BackupKeys(r.Context(), s.UserID, t.version, t.roomID, t.sessionID)
	if err != nil {
		return nil, err
	}
	switch {
	case t.sessionID != "":
		if len(keys) == 0 {
			return nil, httputil.NotFound("No room_keys found")
		}
		return keyDataJSON(keys[0]), nil
	case t.roomID != "":
		sessions := map[string]any{}
		for _, k := range keys {
			sessions[k.SessionID] = keyDataJSON(k)
		}
		return map[string]any{"sessions": sessions}, nil
	default:
		rooms := map[string]map[string]map[string]any{}
		for _, k := range keys {
			if rooms[k.RoomID] == nil {
				rooms[k.RoomID] = map[string]map[string]any{"sessions": {}}
			}
			rooms[k.RoomID]["sessions"][k.SessionID] = keyDataJSON(k)
		}
		return map[string]any{"rooms": rooms}, nil
	}
}

// deleteBackupKeys serves DELETE /_matrix/client/v3/room_keys/keys[/{roomId}[/{sessionId}]].
func (a *API) deleteBackupKeys(r *http.Request, s *accounts.Session) (any, error) {
	t, err := parseBackupTarget(r)
	if err != nil {
		return nil, err
	}
	var etag, count int64
	err = a.db.Write(r.Context(), func(tx *storage.Tx) error {
		b, err := tx.BackupVersion(r.Context(), s.UserID, t.version)
		if errors.Is(err, storage.ErrNotFound) || (err == nil && b.Deleted) {
			return unknownBackup()
		}
		if err != nil {
			return err
		}
		etag, count, err = tx.DeleteBackupKeys(r.Context(), s.UserID, t.version, t.roomID, t.sessionID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return map[string]any{"etag": strconv.FormatInt(etag, 10), "count": count}, nil
}
