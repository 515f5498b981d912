package storage

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ServerKey is a signing key of another server, as last learned.
type ServerKey struct {
	ServerName string
	KeyID      string
	PublicKey  []byte
	// ValidUntilTS (ms) is how long the latest response listing the key as
	// current vouched for it. ExpiredTS, when not 0, is when the server
	// stopped using the key (it listed it in old_verify_keys): it then
	// bounds what the key may verify instead.
	ValidUntilTS int64
	ExpiredTS    int64
	// FetchedTS is when we last heard of the key.
	FetchedTS int64
}

// ServerKeys lists what is stored of a server's signing keys.
func (db *DB) ServerKeys(ctx context.Context, serverName string) ([]ServerKey, error) {
	return serverKeys(ctx, db.q(), serverName)
}

func serverKeys(ctx context.Context, q querier, serverName string) ([]ServerKey, error) {
	rows, err := q.QueryContext(ctx, `SELECT key_id, public_key, valid_until_ts, expired_ts, fetched_ts
		FROM server_keys WHERE server_name = $1`, serverName)
	if err != nil {
		return nil, fmt.Errorf("reading keys of %s: %w", serverName, err)
	}
	defer rows.Close()
	var out []ServerKey
	for rows.Next() {
		k := ServerKey{ServerName: serverName}
		if err := rows.Scan(&k.KeyID, &k.PublicKey, &k.ValidUntilTS, &k.ExpiredTS, &k.FetchedTS); err != nil {
			return nil, fmt.Errorf("reading keys of %s: %w", serverName, err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// StoreServerKeys merges freshly learned keys into what is stored: a key
// with a new public key replaces the old entry; for the same public key the
// validity only grows (responses arrive out of order through notaries) and
// an expiry, once known, stays.
func (tx *Tx) StoreServerKeys(ctx context.Context, keys []ServerKey) error {
	stored := map[string]map[string]ServerKey{}
	for _, k := range keys {
		byID, ok := stored[k.ServerName]
		if !ok {
			list, err := serverKeys(ctx, tx.q(), k.ServerName)
			if err != nil {
				return err
			}
			byID = make(map[string]ServerKey, len(list))
			for _, s := range list {
				byID[s.KeyID] = s
			}
			stored[k.ServerName] = byID
		}
		merged := MergeServerKey(byID[k.KeyID], k)
		byID[k.KeyID] = merged
		if _, err := tx.exec(ctx, `INSERT INTO server_keys
			(server_name, key_id, public_key, valid_until_ts, expired_ts, fetched_ts) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (server_name, key_id) DO UPDATE SET public_key = excluded.public_key,
				valid_until_ts = excluded.valid_until_ts, expired_ts = excluded.expired_ts, fetched_ts = excluded.fetched_ts`,
			merged.ServerName, merged.KeyID, merged.PublicKey, merged.ValidUntilTS, merged.ExpiredTS, merged.FetchedTS); err != nil {
			return fmt.Errorf("storing key %s of %s: %w", k.KeyID, k.ServerName, err)
		}
	}
	return nil
}

// MergeServerKey is what StoreServerKeys keeps of a stored key (the zero
// value when there is none) and a newly learned one; in-memory caches use
// it to stay in step with the table.
func MergeServerKey(old, k ServerKey) ServerKey {
	if old.KeyID == "" || !bytes.Equal(old.PublicKey, k.PublicKey) {
		return k
	}
	merged := old
	merged.ValidUntilTS = max(old.ValidUntilTS, k.ValidUntilTS)
	if merged.ExpiredTS == 0 {
		merged.ExpiredTS = k.ExpiredTS
	}
	merged.FetchedTS = max(old.FetchedTS, k.FetchedTS)
	return merged
}

// ServerKeyResponse is a key response as a server served it, signatures
// included.
type ServerKeyResponse struct {
	JSON         []byte
	ValidUntilTS int64
	FetchedTS    int64
}

// ServerKeyResponse is the latest response stored for a server
// (ErrNotFound when there is none).
func (db *DB) ServerKeyResponse(ctx context.Context, serverName string) (ServerKeyResponse, error) {
	var r ServerKeyResponse
	var js string
	err := db.q().QueryRowContext(ctx, `SELECT response_json, valid_until_ts, fetched_ts
		FROM server_key_responses WHERE server_name = $1`, serverName).Scan(&js, &r.ValidUntilTS, &r.FetchedTS)
	if errors.Is(err, sql.ErrNoRows) {
		return r, ErrNotFound
	}
	if err != nil {
		return r, fmt.Errorf("reading key response of %s: %w", serverName, err)
	}
	r.JSON = []byte(js)
	return r, nil
}

// StoreServerKeyResponse keeps a server's key response, replacing an older
// one.
func (tx *Tx) StoreServerKeyResponse(ctx context.Context, serverName string, r ServerKeyResponse) error {
	if _, err := tx.exec(ctx, `INSERT INTO server_key_responses (server_name, response_json, valid_until_ts, fetched_ts)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT (server_name) DO UPDATE SET response_json = excluded.response_json,
			valid_until_ts = excluded.valid_until_ts, fetched_ts = excluded.fetched_ts
		WHERE excluded.fetched_ts >= server_key_responses.fetched_ts`,
		serverName, string(r.JSON), r.ValidUntilTS, r.FetchedTS); err != nil {
		return fmt.Errorf("storing key response of %s: %w", serverName, err)
	}
	return nil
}

// OwnSigningKey is one of this server's signing keys.
type OwnSigningKey struct {
	KeyID       string
	PublicKey   []byte
	FirstUsedTS int64
	// ExpiredTS is when the server stopped using the key (0: current).
	ExpiredTS int64
}

// UseOwnSigningKey records the key the server signs with from nowTS on:
// any other key still marked current expires at nowTS.
func (tx *Tx) UseOwnSigningKey(ctx context.Context, keyID string, publicKey []byte, nowTS int64) error {
	if _, err := tx.exec(ctx, `UPDATE own_signing_keys SET expired_ts = $1 WHERE expired_ts = 0 AND key_id <> $2`,
		nowTS, keyID); err != nil {
		return fmt.Errorf("retiring old signing keys: %w", err)
	}
	// A key used again (an admin went back to it) is current again; a new
	// public key under a known ID replaces the old one, which can no longer
	// be published under that ID.
	if _, err := tx.exec(ctx, `INSERT INTO own_signing_keys (key_id, public_key, first_used_ts, expired_ts)
		VALUES ($1, $2, $3, 0)
		ON CONFLICT (key_id) DO UPDATE SET expired_ts = 0,
			first_used_ts = CASE WHEN own_signing_keys.public_key = excluded.public_key
				THEN own_signing_keys.first_used_ts ELSE excluded.first_used_ts END,
			public_key = excluded.public_key`,
		keyID, publicKey, nowTS); err != nil {
		return fmt.Errorf("recording signing key: %w", err)
	}
	return nil
}

// OwnSigningKeys lists this server's signing keys, current and past.
func (db *DB) OwnSigningKeys(ctx context.Context) ([]OwnSigningKey, error) {
	rows, err := db.q().QueryContext(ctx, `SELECT key_id, public_key, first_used_ts, expired_ts
		FROM own_signing_keys ORDER BY first_used_ts, key_id`)
	if err != nil {
		return nil, fmt.Errorf("reading own signing keys: %w", err)
	}
	defer rows.Close()
	var out []OwnSigningKey
	for rows.Next() {
		var k OwnSigningKey
		if err := rows.Scan(&k.KeyID, &k.PublicKey, &k.FirstUsedTS, &k.ExpiredTS); err != nil {
			return nil, fmt.Errorf("reading own signing keys: %w", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}
