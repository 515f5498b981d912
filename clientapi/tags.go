package clientapi

// Room tagging (spec "Room Tagging"): tags are the room account data
// m.tag, {"tags": {"<tag>": {"order": 0.5}}}, so they reach /sync like any
// room account data.

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

const tagAccountDataType = "m.tag"

// tagTarget checks the user and room of a tags request.
func tagTarget(r *http.Request, s *accounts.Session) (string, error) {
	if err := requireSelf(s, pathVar(r, "userId")); err != nil {
		return "", err
	}
	roomID := pathVar(r, "roomId")
	if !strings.HasPrefix(roomID, "!") || len(roomID) > 255 {
		return "", httputil.InvalidParam("%q is not a room ID", roomID)
	}
	return roomID, nil
}

// parseTags reads the tags map of m.tag content (an empty map for absent
// or malformed content).
func parseTags(content []byte) map[string]json.RawMessage {
	var c struct {
		Tags map[string]json.RawMessage `json:"tags"`
	}
	json.Unmarshal(content, &c)
	if c.Tags == nil {
		c.Tags = map[string]json.RawMessage{}
	}
	return c.Tags
}

// getTags serves GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags.
func (a *API) getTags(r *http.Request, s *accounts.Session) (any, error) {
	roomID, err := tagTarget(r, s)
	if err != nil {
		return nil, err
	}
	content, err := a.db.AccountData(r.Context(), s.UserID, roomID, tagAccountDataType)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	return map[string]any{"tags": parseTags(content)}, nil
}

// putTag serves PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}.
func (a *API) putTag(r *http.Request, s *accounts.Session) (any, error) {
	roomID, err := tagTarget(r, s)
	if err != nil {
		return nil, err
	}
	tag := pathVar(r, "tag")
	if tag == "" || len(tag) > 255 {
		return nil, httputil.InvalidParam("tag must be 1 to 255 bytes")
	}
	body, err := httputil.ReadBody(r)
	if err != nil {
		return nil, err
	}
	var meta map[string]json.RawMessage
	if err := httputil.Unmarshal(body, &meta); err != nil {
		return nil, err
	}
	if order, ok := meta["order"]; ok {
		var f float64
		if json.Unmarshal(order, &f) != nil {
			return nil, httputil.BadJSON("order must be a number")
		}
		meta["order"], _ = json.Marshal(f) // one spelling of the number
	}
	var compact bytes.Buffer
	raw, _ := json.Marshal(meta)
	json.Compact(&compact, raw)
	return a.updateTags(r, s.UserID, roomID, func(tags map[string]json.RawMessage) bool {
		tags[tag] = compact.Bytes()
		return true
	})
}

// deleteTag serves DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}.
// Removing a tag the room does not have succeeds, as in Synapse.
func (a *API) deleteTag(r *http.Request, s *accounts.Session) (any, error) {
	roomID, err := tagTarget(r, s)
	if err != nil {
		return nil, err
	}
	tag := pathVar(r, "tag")
	return a.updateTags(r, s.UserID, roomID, func(tags map[string]json.RawMessage) bool {
		if _, ok := tags[tag]; !ok {
			return false
		}
		delete(tags, tag)
		return true
	})
}

// updateTags applies change to the room's tags in one write; nothing is
// written (and /sync is not woken) when change reports no change.
func (a *API) updateTags(r *http.Request, userID, roomID string, change func(map[string]json.RawMessage) bool) (any, error) {
	ctx := r.Context()
	err := a.db.Write(ctx, func(tx *storage.Tx) error {
		content, err := tx.AccountData(ctx, userID, roomID, tagAccountDataType)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		tags := parseTags(content)
		if !change(tags) {
			return nil
		}
		// Other top-level keys of the content are kept.
		full := map[string]any{}
		json.Unmarshal(content, &full)
		full["tags"] = tags
		raw, err := json.Marshal(full)
		if err != nil {
			return err
		}
		_, err = tx.PutAccountData(ctx, userID, roomID, tagAccountDataType, raw)
		return err
	})
	if err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}
