package e2ee

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"sort"
	"strings"

	"matrixhs/storage"
)

// algSignedCurve25519 is the one-time key algorithm clients use today.
const algSignedCurve25519 = "signed_curve25519"

// deviceKeysJSON is a stored device_keys object.
type deviceKeysJSON struct {
	UserID     string                       `json:"user_id"`
	DeviceID   string                       `json:"device_id"`
	Algorithms []string                     `json:"algorithms"`
	Keys       map[string]string            `json:"keys"`
	Signatures map[string]map[string]string `json:"signatures"`
}

// UploadKeysRequest is the body of POST /keys/upload.
type UploadKeysRequest struct {
	DeviceKeys       json.RawMessage            `json:"device_keys"`
	OneTimeKeys      map[string]json.RawMessage `json:"one_time_keys"`
	FallbackKeys     map[string]json.RawMessage `json:"fallback_keys"`
	FallbackUnstable map[string]json.RawMessage `json:"org.matrix.msc2732.fallback_keys"`
}

// parseDeviceKeys validates device_keys for the uploading device and
// returns their canonical JSON (without unsigned) and ed25519 key (nil when
// the key is not a usable ed25519 key). Every problem is ErrMalformed. As on
// Synapse, keys without the device's self-signature are accepted (clients
// ignore such a device); a self-signature that is present must be valid.
func parseDeviceKeys(raw json.RawMessage, d Device) ([]byte, ed25519.PublicKey, error) {
	var dk struct {
		UserID     *string                      `json:"user_id"`
		DeviceID   *string                      `json:"device_id"`
		Algorithms []string                     `json:"algorithms"`
		Keys       map[string]string            `json:"keys"`
		Signatures map[string]map[string]string `json:"signatures"`
	}
	if err := json.Unmarshal(raw, &dk); err != nil {
		return nil, nil, refuse(ErrMalformed, "device_keys: %v", err)
	}
	switch {
	case dk.UserID == nil || dk.DeviceID == nil:
		return nil, nil, refuse(ErrMalformed, "device_keys.user_id and device_keys.device_id are required")
	case *dk.UserID != d.UserID || *dk.DeviceID != d.DeviceID:
		return nil, nil, refuse(ErrMalformed, "device_keys must be for %s device %s, not %s device %s",
			d.UserID, d.DeviceID, *dk.UserID, *dk.DeviceID)
	case dk.Algorithms == nil:
		return nil, nil, refuse(ErrMalformed, "device_keys.algorithms must be a list of strings")
	case len(dk.Keys) == 0:
		return nil, nil, refuse(ErrMalformed, "device_keys.keys must be a non-empty object of strings")
	case dk.Signatures == nil:
		return nil, nil, refuse(ErrMalformed, "device_keys.signatures must be an object")
	}
	for id, key := range dk.Keys {
		alg, dev, ok := strings.Cut(id, ":")
		if !ok || alg == "" || dev != d.DeviceID || key == "" {
			return nil, nil, refuse(ErrMalformed, "device key ID %q must be <algorithm>:%s with a key", id, d.DeviceID)
		}
	}
	signingKeyID := "ed25519:" + d.DeviceID
	pub, pubOK := decodeEd25519(dk.Keys[signingKeyID])
	if _, selfSigned := dk.Signatures[d.UserID][signingKeyID]; selfSigned {
		if !pubOK || !verifySigned(raw, d.UserID, signingKeyID, pub) {
			return nil, nil, refuse(ErrMalformed, "device_keys carry an invalid self-signature by %s", signingKeyID)
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
func parseOneTimeKeys(m map[string]json.RawMessage, d Device, pub ed25519.PublicKey, what string) ([]storage.OneTimeKey, error) {
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
			return nil, refuse(ErrInvalid, "%s: key ID %q is not <algorithm>:<key_id>", what, name)
		}
		trimmed := strings.TrimSpace(string(raw))
		var canonical []byte
		switch {
		case strings.HasPrefix(trimmed, `"`):
			if strings.HasPrefix(alg, "signed_") {
				return nil, refuse(ErrInvalid, "%s: %s must be a signed key object", what, name)
			}
			canonical = []byte(trimmed)
		case strings.HasPrefix(trimmed, "{"):
			var key struct {
				Key string `json:"key"`
			}
			if err := json.Unmarshal(raw, &key); err != nil || key.Key == "" {
				return nil, refuse(ErrInvalid, "%s: %s has no key", what, name)
			}
			if strings.HasPrefix(alg, "signed_") {
				if pub == nil {
					return nil, refuse(ErrInvalid, "%s: signed keys need device keys with a valid ed25519 key", what)
				}
				if !verifySigned(raw, d.UserID, "ed25519:"+d.DeviceID, pub) {
					return nil, refuse(ErrInvalid, "%s: %s is not signed by the device key", what, name)
				}
			}
			var err error
			if canonical, err = canonicalWithout(raw, "unsigned"); err != nil {
				return nil, err
			}
		default:
			return nil, refuse(ErrInvalid, "%s: %s must be a string or an object", what, name)
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

// storedSigningKey is the ed25519 key of the device's stored device keys
// (nil when there are none, or none usable).
func (s *Service) storedSigningKey(ctx context.Context, d Device) (ed25519.PublicKey, error) {
	stored, err := s.db.DeviceKeys(ctx, d.UserID, d.DeviceID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var dk deviceKeysJSON
	if json.Unmarshal(stored, &dk) != nil {
		return nil, nil
	}
	pub, _ := decodeEd25519(dk.Keys["ed25519:"+d.DeviceID])
	return pub, nil
}

// UploadKeys stores a device's identity keys, one-time keys and fallback
// keys, all or nothing, and returns its one-time key counts by algorithm.
// One-time keys signed_* must be signed by the device key (the one sent,
// or else the one stored).
func (s *Service) UploadKeys(ctx context.Context, d Device, req UploadKeysRequest) (map[string]int, error) {
	var deviceKeys []byte
	var pub ed25519.PublicKey
	if !isJSONNull(req.DeviceKeys) {
		var err error
		if deviceKeys, pub, err = parseDeviceKeys(req.DeviceKeys, d); err != nil {
			return nil, err
		}
	} else if len(req.OneTimeKeys) > 0 || len(req.FallbackKeys) > 0 || len(req.FallbackUnstable) > 0 {
		var err error
		if pub, err = s.storedSigningKey(ctx, d); err != nil {
			return nil, err
		}
	}
	otks, err := parseOneTimeKeys(req.OneTimeKeys, d, pub, "one_time_keys")
	if err != nil {
		return nil, err
	}
	fallbackMap := req.FallbackKeys
	if fallbackMap == nil {
		fallbackMap = req.FallbackUnstable
	}
	fallbacks, err := parseOneTimeKeys(fallbackMap, d, pub, "fallback_keys")
	if err != nil {
		return nil, err
	}
	seenAlg := map[string]bool{}
	for _, k := range fallbacks {
		if seenAlg[k.Algorithm] {
			return nil, refuse(ErrInvalid, "fallback_keys: at most one key per algorithm")
		}
		seenAlg[k.Algorithm] = true
	}

	var counts map[string]int
	err = s.db.Write(ctx, func(tx *storage.Tx) error {
		if _, err := tx.Device(ctx, d.UserID, d.DeviceID); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return refuse(ErrDeviceGone, "device was deleted")
			}
			return err
		}
		if deviceKeys != nil {
			if _, err := tx.SetDeviceKeys(ctx, d.UserID, d.DeviceID, deviceKeys); err != nil {
				return err
			}
		}
		if err := tx.AddOneTimeKeys(ctx, d.UserID, d.DeviceID, otks); err != nil {
			var conflict *storage.KeyConflictError
			if errors.As(err, &conflict) {
				return refuse(ErrInvalid, "one-time key %s:%s already exists with different content", conflict.Algorithm, conflict.KeyID)
			}
			return err
		}
		for _, k := range fallbacks {
			if err := tx.SetFallbackKey(ctx, d.UserID, d.DeviceID, k); err != nil {
				return err
			}
		}
		var err error
		counts, err = tx.OneTimeKeyCounts(ctx, d.UserID, d.DeviceID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return withZeroCount(counts), nil
}
