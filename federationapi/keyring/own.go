package keyring

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

// OwnKeys are this server's signing keys: the current one (with its
// private half) and the ones it used before, which stay published as
// old_verify_keys so that what they signed keeps verifying.
type OwnKeys struct {
	ServerName spec.ServerName
	KeyID      gomatrixserverlib.KeyID
	PrivateKey ed25519.PrivateKey
	// Old are the past keys, by ID.
	Old map[gomatrixserverlib.KeyID]gomatrixserverlib.OldVerifyKey
}

// LoadOwnKeys records that the server signs with keyID from now on (a
// different key used before becomes an old key, expired now) and returns
// the current and past keys.
func LoadOwnKeys(ctx context.Context, db *storage.DB, serverName spec.ServerName, keyID gomatrixserverlib.KeyID,
	priv ed25519.PrivateKey, now time.Time) (*OwnKeys, error) {
	pub := priv.Public().(ed25519.PublicKey)
	if err := db.Write(ctx, func(tx *storage.Tx) error {
		return tx.UseOwnSigningKey(ctx, string(keyID), pub, now.UnixMilli())
	}); err != nil {
		return nil, err
	}
	all, err := db.OwnSigningKeys(ctx)
	if err != nil {
		return nil, err
	}
	own := &OwnKeys{ServerName: serverName, KeyID: keyID, PrivateKey: priv, Old: map[gomatrixserverlib.KeyID]gomatrixserverlib.OldVerifyKey{}}
	for _, k := range all {
		if k.ExpiredTS != 0 {
			own.Old[gomatrixserverlib.KeyID(k.KeyID)] = gomatrixserverlib.OldVerifyKey{
				VerifyKey: gomatrixserverlib.VerifyKey{Key: k.PublicKey}, ExpiredTS: spec.Timestamp(k.ExpiredTS),
			}
		}
	}
	return own, nil
}

// PublicKey is the current public key.
func (o *OwnKeys) PublicKey() ed25519.PublicKey { return o.PrivateKey.Public().(ed25519.PublicKey) }

// ServerKeysJSON is the server's key response (GET /_matrix/key/v2/server),
// valid until validUntil and signed with the current key.
func (o *OwnKeys) ServerKeysJSON(validUntil time.Time) ([]byte, error) {
	body, err := json.Marshal(gomatrixserverlib.ServerKeyFields{
		ServerName:    o.ServerName,
		VerifyKeys:    map[gomatrixserverlib.KeyID]gomatrixserverlib.VerifyKey{o.KeyID: {Key: spec.Base64Bytes(o.PublicKey())}},
		ValidUntilTS:  spec.AsTimestamp(validUntil),
		OldVerifyKeys: o.Old,
	})
	if err != nil {
		return nil, err
	}
	signed, err := gomatrixserverlib.SignJSON(string(o.ServerName), o.KeyID, o.PrivateKey, body)
	if err != nil {
		return nil, fmt.Errorf("signing server keys: %w", err)
	}
	return signed, nil
}

// lookup is what the key ring knows of one of our own keys: the current
// one is valid whatever the time, old ones until they expired.
func (o *OwnKeys) lookup(keyID gomatrixserverlib.KeyID) (gomatrixserverlib.PublicKeyLookupResult, bool) {
	if keyID == o.KeyID {
		return gomatrixserverlib.PublicKeyLookupResult{
			VerifyKey:    gomatrixserverlib.VerifyKey{Key: spec.Base64Bytes(o.PublicKey())},
			ValidUntilTS: spec.Timestamp(1 << 52), // far in the future
		}, true
	}
	if old, ok := o.Old[keyID]; ok {
		return gomatrixserverlib.PublicKeyLookupResult{VerifyKey: old.VerifyKey, ExpiredTS: old.ExpiredTS}, true
	}
	return gomatrixserverlib.PublicKeyLookupResult{}, false
}
