package clientapi

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// algSignedCurve25519 is the one-time key algorithm clients use today.
const algSignedCurve25519 = "signed_curve25519"

// decodeEd25519 decodes an (unpadded) base64 ed25519 public key.
func decodeEd25519(s string) (ed25519.PublicKey, bool) {
	var b spec.Base64Bytes
	if err := b.Decode(s); err != nil || len(b) != ed25519.PublicKeySize {
		return nil, false
	}
	return ed25519.PublicKey(b), true
}

// verifySigned checks that signer signed obj (canonical JSON without
// signatures and unsigned) with the ed25519 key keyID.
func verifySigned(obj []byte, signer, keyID string, pub ed25519.PublicKey) bool {
	return gomatrixserverlib.VerifyJSON(signer, gomatrixserverlib.KeyID(keyID), pub, obj) == nil
}

// canonicalWithout returns the canonical JSON of an object without the
// named top-level fields.
func canonicalWithout(raw []byte, drop ...string) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return nil, httputil.BadJSON("expected a JSON object")
	}
	for _, f := range drop {
		delete(obj, f)
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, httputil.BadJSON("bad JSON object: %v", err)
	}
	return gomatrixserverlib.CanonicalJSON(b)
}

// sameSignedContent reports whether two signed objects are equal apart from
// their signatures and unsigned data.
func sameSignedContent(a, b []byte) bool {
	ca, err1 := canonicalWithout(a, "signatures", "unsigned")
	cb, err2 := canonicalWithout(b, "signatures", "unsigned")
	return err1 == nil && err2 == nil && string(ca) == string(cb)
}

// isJSONNull reports an absent or null JSON value.
func isJSONNull(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s == "" || s == "null"
}

// serverOf is the server name of a user ID ("" if it is not one).
func serverOf(userID string) string {
	if !strings.HasPrefix(userID, "@") {
		return ""
	}
	_, server, ok := strings.Cut(userID, ":")
	if !ok {
		return ""
	}
	return server
}

func (a *API) isLocalUser(userID string) bool {
	return serverOf(userID) == a.cfg.Server.Name
}

// remoteFailure is the failures entry for a server we cannot reach: there
// is no federation yet.
var remoteFailure = map[string]any{"status": http.StatusServiceUnavailable, "message": "federation is not supported by this server"}

// ---- POST /keys/upload ----

type deviceKeysJSON struct {
	UserID     string                       `json:"user_id"`
	DeviceID   string                       `json:"device_id"`
	Algorithms []string                     `json:"algorithms"`
	Keys       map[string]string            `json:"keys"`
	Signatures map[string]map[string]string `json:"signatures"`
}

// parseDeviceKeys validates device_keys for the session's device and
// returns their canonical JSON (without unsigned) and ed25519 key (nil when
// the key is not a usable ed25519 key). Every problem is M_BAD_JSON. As on
// Synapse, keys without the device's self-signature are accepted (clients
// ignore such a device); a self-signature that is present must be valid.
func parseDeviceKeys(raw json.RawMessage, s *accounts.Session) ([]byte, ed25519.PublicKey, error) {
	var dk struct {
		UserID     *string                      `json:"user_id"`
		DeviceID   *string                      `json:"device_id"`
		Algorithms []string                     `json:"algorithms"`
		Keys       map[string]string            `json:"keys"`
		Signatures map[string]map[string]string `json:"signatures"`
	}
	if err := json.Unmarshal(raw, &dk); err != nil {
		return nil, nil, httputil.BadJSON("device_keys: %v", err)
	}
	switch {
	case dk.UserID == nil || dk.DeviceID == nil:
		return nil, nil, httputil.BadJSON("device_keys.user_id and device_keys.device_id are required")
	case *dk.UserID != s.UserID || *dk.DeviceID != s.DeviceID:
		return nil, nil, httputil.BadJSON("device_keys must be for %s device %s, not %s device %s",
			s.UserID, s.DeviceID, *dk.UserID, *dk.DeviceID)
	case dk.Algorithms == nil:
		return nil, nil, httputil.BadJSON("device_keys.algorithms must be a list of strings")
	case len(dk.Keys) == 0:
		return nil, nil, httputil.BadJSON("device_keys.keys must be a non-empty object of strings")
	case dk.Signatures == nil:
		return nil, nil, httputil.BadJSON("device_keys.signatures must be an object")
	}
	for id, key := range dk.Keys {
		alg, dev, ok := strings.Cut(id, ":")
		if !ok || alg == "" || dev != s.DeviceID || key == "" {
			return nil, nil, httputil.BadJSON("device key ID %q must be <algorithm>:%s with a key", id, s.DeviceID)
		}
	}
	signingKeyID := "ed25519:" + s.DeviceID
	pub, pubOK := decodeEd25519(dk.Keys[signingKeyID])
	if _, selfSigned := dk.Signatures[s.UserID][signingKeyID]; selfSigned {
		if !pubOK || !verifySigned(raw, s.UserID, signingKeyID, pub) {
			return nil, nil, httputil.BadJSON("device_keys carry an invalid self-signature by %s", signingKeyID)
		}
	}
	canonical, err := canonicalWithout(raw, "unsigned")
	if err != nil {
		return nil, nil, err
	}
	if !pubOK {
		pub = nil
	}
	return canonical, pub, nil
}

// parseOneTimeKeys validates a one_time_keys or fallback_keys map: IDs are
// <algorithm>:<key_id>, signed_* keys are objects signed by the device.
func parseOneTimeKeys(m map[string]json.RawMessage, s *accounts.Session, pub ed25519.PublicKey, what string) ([]storage.OneTimeKey, error) {
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	sort.Strings(names)
	out := make([]storage.OneTimeKey, 0, len(m))
	for _, name := range names {
		raw := m[name]
		alg, id, ok := strings.Cut(name, ":")
		if !ok || alg == "" || id == "" || len(name) > 255 {
			return nil, httputil.InvalidParam("%s: key ID %q is not <algorithm>:<key_id>", what, name)
		}
		trimmed := strings.TrimSpace(string(raw))
		var canonical []byte
		switch {
		case strings.HasPrefix(trimmed, `"`):
			if strings.HasPrefix(alg, "signed_") {
				return nil, httputil.InvalidParam("%s: %s must be a signed key object", what, name)
			}
			canonical = []byte(trimmed)
		case strings.HasPrefix(trimmed, "{"):
			var key struct {
				Key string `json:"key"`
			}
			if err := json.Unmarshal(raw, &key); err != nil || key.Key == "" {
				return nil, httputil.InvalidParam("%s: %s has no key", what, name)
			}
			if strings.HasPrefix(alg, "signed_") {
				if pub == nil {
					return nil, httputil.InvalidParam("%s: signed keys need device keys with a valid ed25519 key", what)
				}
				if !verifySigned(raw, s.UserID, "ed25519:"+s.DeviceID, pub) {
					return nil, httputil.InvalidParam("%s: %s is not signed by the device key", what, name)
				}
			}
			var err error
			if canonical, err = canonicalWithout(raw, "unsigned"); err != nil {
				return nil, err
			}
		default:
			return nil, httputil.InvalidParam("%s: %s must be a string or an object", what, name)
		}
		out = append(out, storage.OneTimeKey{Algorithm: alg, KeyID: id, KeyJSON: canonical})
	}
	return out, nil
}

// withZeroCount adds signed_curve25519: 0 when absent: clients treat a
// missing count as "unsupported".
func withZeroCount(counts map[string]int) map[string]int {
	if counts == nil {
		counts = map[string]int{}
	}
	if _, ok := counts[algSignedCurve25519]; !ok {
		counts[algSignedCurve25519] = 0
	}
	return counts
}

// uploadKeys serves POST /_matrix/client/v3/keys/upload.
func (a *API) uploadKeys(r *http.Request, s *accounts.Session) (any, error) {
	var req struct {
		DeviceKeys       json.RawMessage            `json:"device_keys"`
		OneTimeKeys      map[string]json.RawMessage `json:"one_time_keys"`
		FallbackKeys     map[string]json.RawMessage `json:"fallback_keys"`
		FallbackUnstable map[string]json.RawMessage `json:"org.matrix.msc2732.fallback_keys"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	ctx := r.Context()
	var deviceKeys []byte
	var pub ed25519.PublicKey
	if !isJSONNull(req.DeviceKeys) {
		var err error
		if deviceKeys, pub, err = parseDeviceKeys(req.DeviceKeys, s); err != nil {
			return nil, err
		}
	} else if len(req.OneTimeKeys) > 0 || len(req.FallbackKeys) > 0 || len(req.FallbackUnstable) > 0 {
		stored, err := a.db.DeviceKeys(ctx, s.UserID, s.DeviceID)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return nil, err
		}
		if err == nil {
			var dk deviceKeysJSON
			if json.Unmarshal(stored, &dk) == nil {
				pub, _ = decodeEd25519(dk.Keys["ed25519:"+s.DeviceID])
			}
		}
	}
	otks, err := parseOneTimeKeys(req.OneTimeKeys, s, pub, "one_time_keys")
	if err != nil {
		return nil, err
	}
	fallbackMap := req.FallbackKeys
	if fallbackMap == nil {
		fallbackMap = req.FallbackUnstable
	}
	fallbacks, err := parseOneTimeKeys(fallbackMap, s, pub, "fallback_keys")
	if err != nil {
		return nil, err
	}
	seenAlg := map[string]bool{}
	for _, k := range fallbacks {
		if seenAlg[k.Algorithm] {
			return nil, httputil.InvalidParam("fallback_keys: at most one key per algorithm")
		}
		seenAlg[k.Algorithm] = true
	}

	var counts map[string]int
	err = a.db.Write(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Device(ctx, s.UserID, s.DeviceID); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return httputil.UnknownToken(false, "device was deleted")
			}
			return err
		}
		if deviceKeys != nil {
			if _, err := tx.SetDeviceKeys(ctx, s.UserID, s.DeviceID, deviceKeys); err != nil {
				return err
			}
		}
		if err := tx.AddOneTimeKeys(ctx, s.UserID, s.DeviceID, otks); err != nil {
			var conflict *storage.KeyConflictError
			if errors.As(err, &conflict) {
				return httputil.InvalidParam("one-time key %s:%s already exists with different content", conflict.Algorithm, conflict.KeyID)
			}
			return err
		}
		for _, k := range fallbacks {
			if err := tx.SetFallbackKey(ctx, s.UserID, s.DeviceID, k); err != nil {
				return err
			}
		}
		var err error
		counts, err = tx.OneTimeKeyCounts(ctx, s.UserID, s.DeviceID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return map[string]any{"one_time_key_counts": withZeroCount(counts)}, nil
}

// ---- POST /keys/query ----

// signedJSON decodes a stored key object for adding signatures and unsigned data.
type signedJSON struct {
	fields map[string]json.RawMessage
	sigs   map[string]map[string]string
}

func decodeSigned(raw []byte) (*signedJSON, error) {
	o := &signedJSON{}
	if err := json.Unmarshal(raw, &o.fields); err != nil {
		return nil, err
	}
	if s, ok := o.fields["signatures"]; ok {
		if err := json.Unmarshal(s, &o.sigs); err != nil {
			return nil, err
		}
	}
	if o.sigs == nil {
		o.sigs = map[string]map[string]string{}
	}
	return o, nil
}

func (o *signedJSON) addSignature(signer, keyID, sig string) {
	if o.sigs[signer] == nil {
		o.sigs[signer] = map[string]string{}
	}
	o.sigs[signer][keyID] = sig
}

func (o *signedJSON) marshal(unsigned map[string]any) json.RawMessage {
	if len(o.sigs) > 0 {
		o.fields["signatures"], _ = json.Marshal(o.sigs)
	}
	if unsigned != nil {
		o.fields["unsigned"], _ = json.Marshal(unsigned)
	}
	b, _ := json.Marshal(o.fields)
	return b
}

// crossSigningPub is the public key of a stored cross-signing key.
func crossSigningPub(raw []byte) string {
	var k struct {
		Keys map[string]string `json:"keys"`
	}
	if json.Unmarshal(raw, &k) != nil {
		return ""
	}
	for _, v := range k.Keys {
		return v
	}
	return ""
}

// queryKeys serves POST /_matrix/client/v3/keys/query.
func (a *API) queryKeys(r *http.Request, s *accounts.Session) (any, error) {
	var req struct {
		DeviceKeys map[string][]string `json:"device_keys"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.DeviceKeys == nil {
		return nil, httputil.MissingParam("device_keys is required")
	}
	ctx := r.Context()
	deviceKeys := map[string]map[string]json.RawMessage{}
	master := map[string]json.RawMessage{}
	selfSigning := map[string]json.RawMessage{}
	userSigning := map[string]json.RawMessage{}
	failures := map[string]any{}
	for userID, devices := range req.DeviceKeys {
		if !a.isLocalUser(userID) {
			if server := serverOf(userID); server != "" {
				failures[server] = remoteFailure
			}
			continue
		}
		out, err := a.userKeys(ctx, s.UserID, userID, devices)
		if err != nil {
			return nil, err
		}
		deviceKeys[userID] = out.devices
		if out.master != nil {
			master[userID] = out.master
		}
		if out.selfSigning != nil {
			selfSigning[userID] = out.selfSigning
		}
		if out.userSigning != nil && userID == s.UserID {
			userSigning[userID] = out.userSigning
		}
	}
	return map[string]any{
		"device_keys":       deviceKeys,
		"master_keys":       master,
		"self_signing_keys": selfSigning,
		"user_signing_keys": userSigning,
		"failures":          failures,
	}, nil
}

type userKeysResult struct {
	devices                          map[string]json.RawMessage
	master, selfSigning, userSigning json.RawMessage
}

// userKeys collects one local user's device and cross-signing keys as
// requester may see them: device keys with the owner's cross-signatures and
// display names; the master key with the signatures of its owner and of the
// requester.
func (a *API) userKeys(ctx context.Context, requester, userID string, devices []string) (*userKeysResult, error) {
	keys, err := a.db.QueryDeviceKeys(ctx, userID, devices)
	if err != nil {
		return nil, err
	}
	signers := []string{userID}
	if requester != userID {
		signers = append(signers, requester)
	}
	sigs, err := a.db.CrossSignatures(ctx, userID, signers)
	if err != nil {
		return nil, err
	}
	byTarget := map[string][]storage.CrossSignature{}
	for _, sig := range sigs {
		byTarget[sig.TargetKeyID] = append(byTarget[sig.TargetKeyID], sig)
	}
	out := &userKeysResult{devices: map[string]json.RawMessage{}}
	for _, k := range keys {
		obj, err := decodeSigned(k.KeyJSON)
		if err != nil {
			return nil, err
		}
		for _, sig := range byTarget[k.DeviceID] {
			if sig.SignerUserID == userID {
				obj.addSignature(sig.SignerUserID, sig.SignerKeyID, sig.Signature)
			}
		}
		unsigned := map[string]any{}
		if k.DisplayName != "" {
			unsigned["device_display_name"] = k.DisplayName
		}
		out.devices[k.DeviceID] = obj.marshal(unsigned)
	}
	cs, err := a.db.CrossSigningKeys(ctx, userID)
	if err != nil {
		return nil, err
	}
	if raw, ok := cs[storage.KeyTypeMaster]; ok {
		obj, err := decodeSigned(raw)
		if err != nil {
			return nil, err
		}
		for _, sig := range byTarget[crossSigningPub(raw)] {
			obj.addSignature(sig.SignerUserID, sig.SignerKeyID, sig.Signature)
		}
		out.master = obj.marshal(nil)
	}
	if raw, ok := cs[storage.KeyTypeSelfSigning]; ok {
		out.selfSigning = raw
	}
	if raw, ok := cs[storage.KeyTypeUserSigning]; ok {
		out.userSigning = raw
	}
	return out, nil
}

// ---- POST /keys/claim ----

// claimKeys serves POST /_matrix/client/v3/keys/claim.
func (a *API) claimKeys(r *http.Request, s *accounts.Session) (any, error) {
	var req struct {
		OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.OneTimeKeys == nil {
		return nil, httputil.MissingParam("one_time_keys is required")
	}
	failures := map[string]any{}
	type claim struct{ user, device, alg string }
	var claims []claim
	for userID, devices := range req.OneTimeKeys {
		if !a.isLocalUser(userID) {
			if server := serverOf(userID); server != "" {
				failures[server] = remoteFailure
			}
			continue
		}
		for deviceID, alg := range devices {
			claims = append(claims, claim{userID, deviceID, alg})
		}
	}
	sort.Slice(claims, func(i, j int) bool {
		if claims[i].user != claims[j].user {
			return claims[i].user < claims[j].user
		}
		return claims[i].device < claims[j].device
	})
	ctx := r.Context()
	result := map[string]map[string]map[string]json.RawMessage{}
	err := a.db.Write(ctx, func(tx *storage.Tx) error {
		clear(result)
		var pos int64
		for _, c := range claims {
			k, _, err := tx.ClaimKey(ctx, c.user, c.device, c.alg)
			if errors.Is(err, storage.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if result[c.user] == nil {
				result[c.user] = map[string]map[string]json.RawMessage{}
			}
			result[c.user][c.device] = map[string]json.RawMessage{k.Algorithm + ":" + k.KeyID: k.KeyJSON}
			// The claimed device's sync wakes with its new counts; the
			// stream moving on also gives every sync a new next_batch,
			// which matrix-nio waits for before answering a key request.
			if pos == 0 {
				pos = tx.NextStreamPos()
			}
			if err := tx.MarkKeyCountsChanged(ctx, pos, c.user, c.device); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return map[string]any{"one_time_keys": result, "failures": failures}, nil
}

// ---- GET /keys/changes ----

// keyChanges serves GET /_matrix/client/v3/keys/changes.
func (a *API) keyChanges(r *http.Request, s *accounts.Session) (any, error) {
	q := r.URL.Query()
	if q.Get("from") == "" {
		return nil, httputil.MissingParam("from is required")
	}
	from, err := parseToken(q.Get("from"))
	if err != nil {
		return nil, err
	}
	to := a.db.StreamPosition()
	if t := q.Get("to"); t != "" {
		pos, err := parseToken(t)
		if err != nil {
			return nil, err
		}
		to = min(pos, to)
	}
	changed, left, err := a.db.DeviceListChanges(r.Context(), s.UserID, from, to)
	if err != nil {
		return nil, err
	}
	return map[string]any{"changed": changed, "left": left}, nil
}

// ---- POST /keys/device_signing/upload ----

// crossSigningFields maps the request fields to cross-signing key types (= usages).
var crossSigningFields = []struct{ field, keyType string }{
	{"master_key", storage.KeyTypeMaster},
	{"self_signing_key", storage.KeyTypeSelfSigning},
	{"user_signing_key", storage.KeyTypeUserSigning},
}

// parsedCrossKey is a validated cross-signing key of the request.
type parsedCrossKey struct {
	keyType   string
	raw       []byte // as sent (for signature checks)
	canonical []byte // canonical JSON without unsigned (as stored)
	pub       string
	pubKey    ed25519.PublicKey
}

// parseCrossSigningKey checks a key's user, usage and single ed25519 key.
func parseCrossSigningKey(raw json.RawMessage, userID, keyType string) (*parsedCrossKey, error) {
	var k struct {
		UserID string            `json:"user_id"`
		Usage  []string          `json:"usage"`
		Keys   map[string]string `json:"keys"`
	}
	if err := httputil.Unmarshal(raw, &k); err != nil {
		return nil, err
	}
	if k.UserID != userID {
		return nil, httputil.InvalidParam("%s key is for %q, not %s", keyType, k.UserID, userID)
	}
	if !slices.Contains(k.Usage, keyType) {
		return nil, httputil.InvalidParam("%s key must have usage %q", keyType, keyType)
	}
	if len(k.Keys) != 1 {
		return nil, httputil.InvalidParam("%s key must hold exactly one key", keyType)
	}
	p := &parsedCrossKey{keyType: keyType, raw: raw}
	for id, v := range k.Keys {
		pub, ok := decodeEd25519(v)
		if id != "ed25519:"+v || !ok {
			return nil, httputil.InvalidParam("%s key must be ed25519:<public key> mapped to a valid ed25519 public key", keyType)
		}
		p.pub, p.pubKey = v, pub
	}
	var err error
	if p.canonical, err = canonicalWithout(raw, "unsigned"); err != nil {
		return nil, err
	}
	return p, nil
}

// errCrossSigningRace makes the upload decide again about UIA after another
// upload changed the keys in between.
var errCrossSigningRace = errors.New("cross-signing keys changed concurrently")

// uploadCrossSigningKeys serves POST /_matrix/client/v3/keys/device_signing/upload.
// UIA is needed only to replace existing keys (MSC3967, spec v1.11): not for
// the first master key, nor when every key sent is already stored.
func (a *API) uploadCrossSigningKeys(r *http.Request, s *accounts.Session) (any, error) {
	body, err := httputil.ReadBody(r)
	if err != nil {
		return nil, err
	}
	var req map[string]json.RawMessage
	if err := httputil.Unmarshal(body, &req); err != nil {
		return nil, err
	}
	var auth *uiaAuth
	if !isJSONNull(req["auth"]) {
		auth = &uiaAuth{}
		if err := json.Unmarshal(req["auth"], auth); err != nil {
			return nil, httputil.BadJSON("auth must be an object")
		}
	}
	var keys []*parsedCrossKey
	for _, f := range crossSigningFields {
		if isJSONNull(req[f.field]) {
			continue
		}
		k, err := parseCrossSigningKey(req[f.field], s.UserID, f.keyType)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	ctx := r.Context()
	uiaDone := false
	for attempt := 0; ; attempt++ {
		existing, err := a.db.CrossSigningKeys(ctx, s.UserID)
		if err != nil {
			return nil, err
		}
		var changes []*parsedCrossKey
		for _, k := range keys {
			if string(existing[k.keyType]) != string(k.canonical) {
				changes = append(changes, k)
			}
		}
		if len(changes) == 0 {
			return httputil.Empty, nil
		}
		if _, hasMaster := existing[storage.KeyTypeMaster]; hasMaster && !uiaDone {
			if err := a.passwordUIA(r, s, auth); err != nil {
				return nil, err
			}
			uiaDone = true
		}
		if err := a.checkCrossSigningKeys(ctx, s.UserID, keys, existing); err != nil {
			return nil, err
		}
		err = a.db.Write(ctx, func(tx *storage.Tx) error {
			now, err := tx.CrossSigningKeys(ctx, s.UserID)
			if err != nil {
				return err
			}
			if !uiaDone && string(now[storage.KeyTypeMaster]) != string(existing[storage.KeyTypeMaster]) {
				return errCrossSigningRace
			}
			public := false
			for _, k := range changes {
				if old, ok := now[k.keyType]; ok {
					if oldPub := crossSigningPub(old); oldPub != k.pub {
						// Signatures of or by the replaced key mean nothing any more.
						if k.keyType == storage.KeyTypeMaster {
							err = tx.DeleteSignaturesOf(ctx, s.UserID, oldPub)
						} else {
							err = tx.DeleteSignaturesBy(ctx, s.UserID, "ed25519:"+oldPub)
						}
						if err != nil {
							return err
						}
					}
				}
				if err := tx.SetCrossSigningKey(ctx, s.UserID, k.keyType, k.canonical); err != nil {
					return err
				}
				public = public || k.keyType != storage.KeyTypeUserSigning
			}
			// A new user-signing key concerns only its owner's devices.
			onlyFor := s.UserID
			if public {
				onlyFor = ""
			}
			_, err = tx.MarkDeviceListChanged(ctx, s.UserID, onlyFor)
			return err
		})
		if errors.Is(err, errCrossSigningRace) && attempt == 0 {
			continue
		}
		if err != nil {
			return nil, err
		}
		return httputil.Empty, nil
	}
}

// checkCrossSigningKeys verifies that self-signing and user-signing keys
// are signed by the master key (the one sent, or else the stored one) and
// that no public key collides with a device ID.
func (a *API) checkCrossSigningKeys(ctx context.Context, userID string, keys []*parsedCrossKey, existing map[string][]byte) error {
	var masterPub string
	for _, k := range keys {
		if k.keyType == storage.KeyTypeMaster {
			masterPub = k.pub
		}
	}
	if masterPub == "" {
		masterPub = crossSigningPub(existing[storage.KeyTypeMaster])
	}
	for _, k := range keys {
		if _, err := a.db.Device(ctx, userID, k.pub); err == nil {
			return httputil.Forbidden("%s public key is already used as a device ID", k.keyType)
		} else if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		if k.keyType == storage.KeyTypeMaster {
			continue
		}
		if masterPub == "" {
			return httputil.MissingParam("no master key is available to check the %s key", k.keyType)
		}
		pub, _ := decodeEd25519(masterPub)
		if !verifySigned(k.raw, userID, "ed25519:"+masterPub, pub) {
			return &httputil.Error{Status: http.StatusBadRequest, Code: "M_INVALID_SIGNATURE",
				Msg: k.keyType + " key is not signed by the master key"}
		}
	}
	return nil
}

// ---- POST /keys/signatures/upload ----

// sigFailure is one entry of the failures map.
func sigFailure(code, format string, args ...any) map[string]any {
	return map[string]any{"errcode": code, "error": fmt.Sprintf(format, args...)}
}

// uploadSignatures serves POST /_matrix/client/v3/keys/signatures/upload:
// the user's own devices signed by their self-signing key, their own master
// key signed by their devices, and other users' master keys signed by their
// user-signing key. Each signature is verified; failures are reported per
// user and key.
func (a *API) uploadSignatures(r *http.Request, s *accounts.Session) (any, error) {
	var req map[string]map[string]json.RawMessage
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	ctx := r.Context()
	own, err := a.db.CrossSigningKeys(ctx, s.UserID)
	if err != nil {
		return nil, err
	}
	failures := map[string]map[string]any{}
	fail := func(user, key string, f map[string]any) {
		if failures[user] == nil {
			failures[user] = map[string]any{}
		}
		failures[user][key] = f
	}
	var sigs []storage.CrossSignature
	ownChanged := false
	var othersSigned []string
	for targetUser, objs := range req {
		var verified []storage.CrossSignature
		for keyID, raw := range objs {
			var got []storage.CrossSignature
			var f map[string]any
			if targetUser == s.UserID {
				got, f = a.checkOwnSignature(ctx, s.UserID, keyID, raw, own)
			} else {
				got, f = a.checkOtherSignature(ctx, s.UserID, targetUser, keyID, raw, own)
			}
			if f != nil {
				fail(targetUser, keyID, f)
				continue
			}
			verified = append(verified, got...)
		}
		if len(verified) == 0 {
			continue
		}
		sigs = append(sigs, verified...)
		if targetUser == s.UserID {
			ownChanged = true
		} else {
			othersSigned = append(othersSigned, targetUser)
		}
	}
	if len(sigs) > 0 {
		err := a.db.Write(ctx, func(tx *storage.Tx) error {
			for _, sig := range sigs {
				if err := tx.AddCrossSignature(ctx, sig); err != nil {
					return err
				}
			}
			if ownChanged {
				if _, err := tx.MarkDeviceListChanged(ctx, s.UserID, ""); err != nil {
					return err
				}
			}
			for _, u := range othersSigned {
				if _, err := tx.MarkDeviceListChanged(ctx, u, s.UserID); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return map[string]any{"failures": failures}, nil
}

// signaturesBy returns the signatures signer made in a signed object.
func signaturesBy(raw []byte, signer string) (map[string]string, map[string]any) {
	var obj struct {
		Signatures map[string]map[string]string `json:"signatures"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, sigFailure("M_BAD_JSON", "not a signed JSON object")
	}
	if len(obj.Signatures[signer]) == 0 {
		return nil, sigFailure("M_INVALID_SIGNATURE", "no signature by %s", signer)
	}
	return obj.Signatures[signer], nil
}

// checkOwnSignature handles a signature of one of the user's own keys: a
// device signed by the self-signing key, or the master key signed by devices.
func (a *API) checkOwnSignature(ctx context.Context, userID, keyID string, raw []byte, own map[string][]byte) ([]storage.CrossSignature, map[string]any) {
	mine, f := signaturesBy(raw, userID)
	if f != nil {
		return nil, f
	}
	if masterRaw, ok := own[storage.KeyTypeMaster]; ok && keyID == crossSigningPub(masterRaw) {
		if !sameSignedContent(raw, masterRaw) {
			return nil, sigFailure("M_INVALID_PARAM", "the signed object does not match the master key")
		}
		var out []storage.CrossSignature
		for sigKeyID, sig := range mine {
			deviceID, ok := strings.CutPrefix(sigKeyID, "ed25519:")
			if !ok || deviceID == keyID {
				continue // the master key's self-signature is part of the key
			}
			dk, err := a.db.DeviceKeys(ctx, userID, deviceID)
			if err != nil {
				return nil, sigFailure("M_NOT_FOUND", "unknown signing device %s", deviceID)
			}
			var keys deviceKeysJSON
			_ = json.Unmarshal(dk, &keys)
			pub, ok := decodeEd25519(keys.Keys[sigKeyID])
			if !ok || !verifySigned(raw, userID, sigKeyID, pub) {
				return nil, sigFailure("M_INVALID_SIGNATURE", "invalid signature by %s", sigKeyID)
			}
			out = append(out, storage.CrossSignature{TargetUserID: userID, TargetKeyID: keyID,
				SignerUserID: userID, SignerKeyID: sigKeyID, Signature: sig})
		}
		if len(out) == 0 {
			return nil, sigFailure("M_INVALID_SIGNATURE", "no device signature of the master key")
		}
		return out, nil
	}
	stored, err := a.db.DeviceKeys(ctx, userID, keyID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, sigFailure("M_NOT_FOUND", "unknown device or key %s", keyID)
	}
	if err != nil {
		return nil, sigFailure("M_UNKNOWN", "internal error")
	}
	sskRaw, ok := own[storage.KeyTypeSelfSigning]
	if !ok {
		return nil, sigFailure("M_NOT_FOUND", "no self-signing key to check the signature with")
	}
	if !sameSignedContent(raw, stored) {
		return nil, sigFailure("M_INVALID_PARAM", "the signed object does not match the device keys")
	}
	sskPub := crossSigningPub(sskRaw)
	sskKeyID := "ed25519:" + sskPub
	sig, ok := mine[sskKeyID]
	if !ok {
		return nil, sigFailure("M_INVALID_SIGNATURE", "no signature by the self-signing key")
	}
	pub, _ := decodeEd25519(sskPub)
	if !verifySigned(raw, userID, sskKeyID, pub) {
		return nil, sigFailure("M_INVALID_SIGNATURE", "invalid signature by the self-signing key")
	}
	return []storage.CrossSignature{{TargetUserID: userID, TargetKeyID: keyID,
		SignerUserID: userID, SignerKeyID: sskKeyID, Signature: sig}}, nil
}

// checkOtherSignature handles another user's master key signed by the
// user's user-signing key.
func (a *API) checkOtherSignature(ctx context.Context, userID, targetUser, keyID string, raw []byte, own map[string][]byte) ([]storage.CrossSignature, map[string]any) {
	if !a.isLocalUser(targetUser) {
		return nil, sigFailure("M_NOT_FOUND", "keys of remote users are unknown to this server")
	}
	theirs, err := a.db.CrossSigningKeys(ctx, targetUser)
	if err != nil {
		return nil, sigFailure("M_UNKNOWN", "internal error")
	}
	masterRaw, ok := theirs[storage.KeyTypeMaster]
	if !ok {
		return nil, sigFailure("M_NOT_FOUND", "%s has no master key", targetUser)
	}
	if keyID != crossSigningPub(masterRaw) {
		return nil, sigFailure("M_INVALID_PARAM", "only the master key of another user can be signed")
	}
	if !sameSignedContent(raw, masterRaw) {
		return nil, sigFailure("M_INVALID_PARAM", "the signed object does not match the master key")
	}
	uskRaw, ok := own[storage.KeyTypeUserSigning]
	if !ok {
		return nil, sigFailure("M_NOT_FOUND", "no user-signing key to check the signature with")
	}
	mine, f := signaturesBy(raw, userID)
	if f != nil {
		return nil, f
	}
	uskPub := crossSigningPub(uskRaw)
	uskKeyID := "ed25519:" + uskPub
	sig, ok := mine[uskKeyID]
	if !ok {
		return nil, sigFailure("M_INVALID_SIGNATURE", "no signature by the user-signing key")
	}
	pub, _ := decodeEd25519(uskPub)
	if !verifySigned(raw, userID, uskKeyID, pub) {
		return nil, sigFailure("M_INVALID_SIGNATURE", "invalid signature by the user-signing key")
	}
	return []storage.CrossSignature{{TargetUserID: targetUser, TargetKeyID: keyID,
		SignerUserID: userID, SignerKeyID: uskKeyID, Signature: sig}}, nil
}
