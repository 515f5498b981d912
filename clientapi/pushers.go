package clientapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/internal/pushgateway"
	"matrixhs/storage"
)

// Spec limits on pusher identifiers.
const (
	maxPushKeyBytes = 512
	maxAppIDChars   = 64
)

type pusherJSON struct {
	PushKey           string          `json:"pushkey"`
	Kind              string          `json:"kind"`
	AppID             string          `json:"app_id"`
	AppDisplayName    string          `json:"app_display_name"`
	DeviceDisplayName string          `json:"device_display_name"`
	ProfileTag        string          `json:"profile_tag,omitempty"`
	Lang              string          `json:"lang"`
	Data              json.RawMessage `json:"data"`
}

// getPushers serves GET /_matrix/client/v3/pushers.
func (a *API) getPushers(r *http.Request, s *accounts.Session) (any, error) {
	list, err := a.db.Pushers(r.Context(), s.UserID)
	if err != nil {
		return nil, err
	}
	out := make([]pusherJSON, 0, len(list))
	for _, p := range list {
		out = append(out, pusherJSON{
			PushKey: p.PushKey, Kind: p.Kind, AppID: p.AppID, AppDisplayName: p.AppDisplayName,
			DeviceDisplayName: p.DeviceDisplayName, ProfileTag: p.ProfileTag, Lang: p.Lang, Data: p.Data,
		})
	}
	return map[string]any{"pushers": out}, nil
}

// setPusher serves POST /_matrix/client/v3/pushers/set: kind "http" creates
// or updates the pusher of this app ID and pushkey (tied to the requesting
// device), kind null deletes it. Email pushers are not supported.
func (a *API) setPusher(r *http.Request, s *accounts.Session) (any, error) {
	var body map[string]json.RawMessage
	if err := httputil.DecodeJSON(r, &body); err != nil {
		return nil, err
	}
	kindRaw, hasKind := body["kind"]
	if !hasKind {
		return nil, httputil.MissingParam("Missing parameters: kind")
	}
	deleting := isNull(kindRaw)
	required := []string{"app_id", "pushkey"}
	if !deleting {
		required = append(required, "app_display_name", "device_display_name", "lang", "data")
	}
	var missing []string
	for _, f := range required {
		if v, ok := body[f]; !ok || isNull(v) {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return nil, httputil.MissingParam("Missing parameters: %s", strings.Join(missing, ", "))
	}
	var p storage.Pusher
	p.UserID, p.DeviceID = s.UserID, s.DeviceID
	fields := map[string]*string{
		"app_id": &p.AppID, "pushkey": &p.PushKey, "app_display_name": &p.AppDisplayName,
		"device_display_name": &p.DeviceDisplayName, "profile_tag": &p.ProfileTag, "lang": &p.Lang,
	}
	for name, dst := range fields {
		if v, ok := body[name]; ok && !isNull(v) {
			if err := json.Unmarshal(v, dst); err != nil {
				return nil, httputil.BadJSON("%s must be a string", name)
			}
		}
	}
	if p.AppID == "" || utf8.RuneCountInString(p.AppID) > maxAppIDChars {
		return nil, httputil.InvalidParam("app_id must be 1 to %d characters", maxAppIDChars)
	}
	if p.PushKey == "" || len(p.PushKey) > maxPushKeyBytes {
		return nil, httputil.InvalidParam("pushkey must be 1 to %d bytes", maxPushKeyBytes)
	}
	key := p.PusherKey
	if deleting {
		err := a.db.Write(r.Context(), func(tx *storage.Tx) error {
			_, err := tx.DeletePusher(r.Context(), key)
			return err
		})
		if err != nil {
			return nil, err
		}
		return httputil.Empty, nil
	}
	if err := json.Unmarshal(kindRaw, &p.Kind); err != nil {
		return nil, httputil.BadJSON("kind must be a string or null")
	}
	switch p.Kind {
	case "http":
	case "email":
		return nil, httputil.InvalidParam("email pushers are not supported by this server")
	default:
		return nil, httputil.InvalidParam("unknown pusher kind %q", p.Kind)
	}
	appendOthers := false
	if v, ok := body["append"]; ok && !isNull(v) {
		if err := json.Unmarshal(v, &appendOthers); err != nil {
			return nil, httputil.BadJSON("append must be a boolean")
		}
	}
	data, err := validatePusherData(body["data"])
	if err != nil {
		return nil, err
	}
	p.Data = data
	p.PushKeyTS = time.Now().UnixMilli()
	if err := a.db.Write(r.Context(), func(tx *storage.Tx) error { return tx.SetPusher(r.Context(), p, appendOthers) }); err != nil {
		return nil, err
	}
	return httputil.Empty, nil
}

// validatePusherData checks an http pusher's data object: a url the push
// gateway API allows and an optional format (only event_id_only exists).
// It returns the object compacted for storage.
func validatePusherData(raw json.RawMessage) ([]byte, error) {
	var data map[string]json.RawMessage
	if err := json.Unmarshal(raw, &data); err != nil || data == nil {
		return nil, httputil.BadJSON("data must be an object")
	}
	urlRaw, ok := data["url"]
	if !ok || isNull(urlRaw) {
		return nil, httputil.MissingParam("Missing parameters: data.url (required for http pushers)")
	}
	var u string
	if err := json.Unmarshal(urlRaw, &u); err != nil {
		return nil, httputil.InvalidParam("data.url must be a string")
	}
	if err := pushgateway.ValidateURL(u); err != nil {
		return nil, httputil.InvalidParam("%v", err)
	}
	if f, ok := data["format"]; ok && !isNull(f) {
		var format string
		if err := json.Unmarshal(f, &format); err != nil || format != pushgateway.FormatEventIDOnly {
			return nil, httputil.InvalidParam("data.format must be %q or absent", pushgateway.FormatEventIDOnly)
		}
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, httputil.BadJSON("data must be an object")
	}
	return buf.Bytes(), nil
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }
