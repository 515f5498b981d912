package e2ee

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"matrixhs/storage"
)

// crossSigningFields maps the request fields to cross-signing key types (= usages).
var crossSigningFields = []struct{ field, keyType string }{
	{"master_key", storage.KeyTypeMaster},
	{"self_signing_key", storage.KeyTypeSelfSigning},
	{"user_signing_key", storage.KeyTypeUserSigning},
}

// CrossSigningUpload is the keys of POST /keys/device_signing/upload:
// master_key, self_signing_key and user_signing_key, each optional.
type CrossSigningUpload map[string]json.RawMessage

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
	if !strings.HasPrefix(strings.TrimSpace(string(raw)), "{") {
		return nil, refuse(ErrMalformed, "%s key must be a JSON object", keyType)
	}
	if err := json.Unmarshal(raw, &k); err != nil {
		return nil, refuse(ErrMalformed, "%s key: %v", keyType, err)
	}
	if k.UserID != userID {
		return nil, refuse(ErrInvalid, "%s key is for %q, not %s", keyType, k.UserID, userID)
	}
	if !slices.Contains(k.Usage, keyType) {
		return nil, refuse(ErrInvalid, "%s key must have usage %q", keyType, keyType)
	}
	if len(k.Keys) != 1 {
		return nil, refuse(ErrInvalid, "%s key must hold exactly one key", keyType)
	}
	p := &parsedCrossKey{keyType: keyType, raw: raw}
	for id, v := range k.Keys {
		pub, ok := decodeEd25519(v)
		if id != "ed25519:"+v || !ok {
			return nil, refuse(ErrInvalid, "%s key must be ed25519:<public key> mapped to a valid ed25519 public key", keyType)
		}
		p.pub, p.pubKey = v, pub
	}
	var err error
	if p.canonical, err = canonicalWithout(raw, "unsigned"); err != nil {
		return nil, err
	}
	return p, nil
}

// errCrossSigningRace makes the upload decide again about authorization
// after another upload changed the keys in between.
var errCrossSigningRace = errors.New("cross-signing keys changed concurrently")

// UploadCrossSigningKeys stores a user's cross-signing keys. Replacing an
// existing master key needs the user to prove it is them (MSC3967, spec
// v1.11): then authorize is called, once, and its error ends the upload;
// the first master key, and keys that are all already stored, need no
// proof. Self-signing and user-signing keys must be signed by the master
// key (the one sent, or else the stored one). Signatures of or by a
// replaced key are dropped, and the user's device list changes (for
// everyone, or only for the user's own devices when only the user-signing
// key changed).
func (s *Service) UploadCrossSigningKeys(ctx context.Context, userID string, req CrossSigningUpload, authorize func() error) error {
	var keys []*parsedCrossKey
	for _, f := range crossSigningFields {
		if isJSONNull(req[f.field]) {
			continue
		}
		k, err := parseCrossSigningKey(req[f.field], userID, f.keyType)
		if err != nil {
			return err
		}
		keys = append(keys, k)
	}
	authorized := false
	for attempt := 0; ; attempt++ {
		existing, err := s.db.CrossSigningKeys(ctx, userID)
		if err != nil {
			return err
		}
		var changes []*parsedCrossKey
		for _, k := range keys {
			if string(existing[k.keyType]) != string(k.canonical) {
				changes = append(changes, k)
			}
		}
		if len(changes) == 0 {
			return nil
		}
		if _, hasMaster := existing[storage.KeyTypeMaster]; hasMaster && !authorized {
			if err := authorize(); err != nil {
				return err
			}
			authorized = true
		}
		if err := s.checkCrossSigningKeys(ctx, userID, keys, existing); err != nil {
			return err
		}
		err = s.storeCrossSigningKeys(ctx, userID, changes, existing, authorized)
		if errors.Is(err, errCrossSigningRace) && attempt == 0 {
			continue
		}
		return err
	}
}

// storeCrossSigningKeys writes the changed keys, unless the master key
// changed since existing was read and the upload was not authorized
// (errCrossSigningRace: decide again).
func (s *Service) storeCrossSigningKeys(ctx context.Context, userID string, changes []*parsedCrossKey, existing map[string][]byte, authorized bool) error {
	return s.db.Write(ctx, func(tx *storage.Tx) error {
		now, err := tx.CrossSigningKeys(ctx, userID)
		if err != nil {
			return err
		}
		if !authorized && string(now[storage.KeyTypeMaster]) != string(existing[storage.KeyTypeMaster]) {
			return errCrossSigningRace
		}
		public := false
		for _, k := range changes {
			if old, ok := now[k.keyType]; ok {
				if oldPub := crossSigningPub(old); oldPub != k.pub {
					// Signatures of or by the replaced key mean nothing any more.
					if k.keyType == storage.KeyTypeMaster {
						err = tx.DeleteSignaturesOf(ctx, userID, oldPub)
					} else {
						err = tx.DeleteSignaturesBy(ctx, userID, "ed25519:"+oldPub)
					}
					if err != nil {
						return err
					}
				}
			}
			if err := tx.SetCrossSigningKey(ctx, userID, k.keyType, k.canonical); err != nil {
				return err
			}
			public = public || k.keyType != storage.KeyTypeUserSigning
		}
		if public {
			// Other servers hear of it too (m.signing_key_update).
			_, err = tx.MarkDevicesChanged(ctx, userID, "")
		} else {
			// A new user-signing key concerns only its owner's devices.
			_, err = tx.MarkDeviceListChanged(ctx, userID, userID)
		}
		return err
	})
}

// checkCrossSigningKeys verifies that self-signing and user-signing keys
// are signed by the master key (the one sent, or else the stored one) and
// that no public key collides with a device ID.
func (s *Service) checkCrossSigningKeys(ctx context.Context, userID string, keys []*parsedCrossKey, existing map[string][]byte) error {
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
		if _, err := s.db.Device(ctx, userID, k.pub); err == nil {
			return refuse(ErrKeyIDTaken, "%s public key is already used as a device ID", k.keyType)
		} else if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		if k.keyType == storage.KeyTypeMaster {
			continue
		}
		if masterPub == "" {
			return refuse(ErrMissing, "no master key is available to check the %s key", k.keyType)
		}
		pub, _ := decodeEd25519(masterPub)
		if !verifySigned(k.raw, userID, "ed25519:"+masterPub, pub) {
			return refuse(ErrBadSignature, "%s key is not signed by the master key", k.keyType)
		}
	}
	return nil
}

// SignatureFailure is one entry of the failures of a signature upload.
type SignatureFailure struct {
	ErrCode string `json:"errcode"`
	Error   string `json:"error"`
}

// sigFailure is one entry of the failures map.
func sigFailure(code, format string, args ...any) *SignatureFailure {
	return &SignatureFailure{ErrCode: code, Error: fmt.Sprintf(format, args...)}
}

// SignatureFailures are the signatures that were refused: user → key ID → why.
type SignatureFailures map[string]map[string]*SignatureFailure

// UploadSignatures stores the signatures a user made of keys: their own
// devices signed by their self-signing key, their own master key signed
// by their devices, and other users' master keys signed by their
// user-signing key. Each signature is verified; the refused ones are
// reported per user and key, the others stored together.
func (s *Service) UploadSignatures(ctx context.Context, userID string, signed map[string]map[string]json.RawMessage) (SignatureFailures, error) {
	own, err := s.db.CrossSigningKeys(ctx, userID)
	if err != nil {
		return nil, err
	}
	failures := SignatureFailures{}
	fail := func(user, key string, f *SignatureFailure) {
		if failures[user] == nil {
			failures[user] = map[string]*SignatureFailure{}
		}
		failures[user][key] = f
	}
	var sigs []storage.CrossSignature
	ownChanged := false
	var othersSigned []string
	for targetUser, objs := range signed {
		var verified []storage.CrossSignature
		for keyID, raw := range objs {
			var got []storage.CrossSignature
			var f *SignatureFailure
			if targetUser == userID {
				got, f = s.checkOwnSignature(ctx, userID, keyID, raw, own)
			} else {
				got, f = s.checkOtherSignature(ctx, userID, targetUser, keyID, raw, own)
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
		if targetUser == userID {
			ownChanged = true
		} else {
			othersSigned = append(othersSigned, targetUser)
		}
	}
	if len(sigs) == 0 {
		return failures, nil
	}
	err = s.db.Write(ctx, func(tx *storage.Tx) error {
		for _, sig := range sigs {
			if err := tx.AddCrossSignature(ctx, sig); err != nil {
				return err
			}
		}
		if ownChanged {
			if _, err := tx.MarkDevicesChanged(ctx, userID, ownTargets(sigs, userID, own)...); err != nil {
				return err
			}
		}
		for _, u := range othersSigned {
			if _, err := tx.MarkDeviceListChanged(ctx, u, userID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return failures, nil
}

// ownTargets lists the devices of userID whose keys gained signatures
// ("" for the master key: m.signing_key_update carries it).
func ownTargets(sigs []storage.CrossSignature, userID string, own map[string][]byte) []string {
	masterPub := crossSigningPub(own[storage.KeyTypeMaster])
	var out []string
	for _, sig := range sigs {
		if sig.TargetUserID != userID {
			continue
		}
		target := sig.TargetKeyID
		if target == masterPub {
			target = ""
		}
		if !slices.Contains(out, target) {
			out = append(out, target)
		}
	}
	return out
}

// signaturesBy returns the signatures signer made in a signed object.
func signaturesBy(raw []byte, signer string) (map[string]string, *SignatureFailure) {
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
func (s *Service) checkOwnSignature(ctx context.Context, userID, keyID string, raw []byte, own map[string][]byte) ([]storage.CrossSignature, *SignatureFailure) {
	mine, f := signaturesBy(raw, userID)
	if f != nil {
		return nil, f
	}
	if masterRaw, ok := own[storage.KeyTypeMaster]; ok && keyID == crossSigningPub(masterRaw) {
		return s.checkMasterSignedByDevices(ctx, userID, keyID, raw, masterRaw, mine)
	}
	stored, err := s.db.DeviceKeys(ctx, userID, keyID)
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

// checkMasterSignedByDevices handles the user's master key signed by their
// own devices.
func (s *Service) checkMasterSignedByDevices(ctx context.Context, userID, keyID string, raw, masterRaw []byte, mine map[string]string) ([]storage.CrossSignature, *SignatureFailure) {
	if !sameSignedContent(raw, masterRaw) {
		return nil, sigFailure("M_INVALID_PARAM", "the signed object does not match the master key")
	}
	var out []storage.CrossSignature
	for sigKeyID, sig := range mine {
		deviceID, ok := strings.CutPrefix(sigKeyID, "ed25519:")
		if !ok || deviceID == keyID {
			continue // the master key's self-signature is part of the key
		}
		dk, err := s.db.DeviceKeys(ctx, userID, deviceID)
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

// checkOtherSignature handles another user's master key signed by the
// user's user-signing key.
func (s *Service) checkOtherSignature(ctx context.Context, userID, targetUser, keyID string, raw []byte, own map[string][]byte) ([]storage.CrossSignature, *SignatureFailure) {
	var masterRaw []byte
	if s.isLocalUser(targetUser) {
		theirs, err := s.db.CrossSigningKeys(ctx, targetUser)
		if err != nil {
			return nil, sigFailure("M_UNKNOWN", "internal error")
		}
		masterRaw = theirs[storage.KeyTypeMaster]
	} else if serverOf(targetUser) != "" {
		masterRaw = s.remoteMasterKey(ctx, targetUser)
	}
	if masterRaw == nil {
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

// remoteMasterKey is a remote user's master key: from the cache when it is
// up to date, else from their server (nil when it cannot be had).
func (s *Service) remoteMasterKey(ctx context.Context, userID string) []byte {
	out := newServerKeys()
	if served, err := s.fromCache(ctx, "", userID, nil, out); err == nil && served {
		return out.master[userID]
	}
	if s.remote == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultRemoteTimeout)
	defer cancel()
	return s.queryServer(ctx, "", serverOf(userID), map[string][]string{userID: nil}).master[userID]
}
