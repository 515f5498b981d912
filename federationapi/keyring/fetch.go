package keyring

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

// fetch asks the notaries, then server itself, for server's keys (unless
// they were asked for lately); want are the key IDs the caller misses.
// Failures are logged: the caller's next check tells the outcome.
func (k *KeyRing) fetch(ctx context.Context, server spec.ServerName, want []gomatrixserverlib.KeyID) {
	if _, _, ok := spec.ParseAndValidateServerName(server); !ok || server == k.own.ServerName {
		return
	}
	k.once(ctx, "keys:"+string(server), func(ctx context.Context) {
		for _, n := range k.notaries {
			if n.ServerName == server || n.ServerName == k.own.ServerName {
				continue
			}
			if err := k.fetchFromNotary(ctx, n, server, want); err != nil {
				k.log.WithError(err).WithFields(map[string]any{"server": server, "notary": n.ServerName}).Info("key notary failed")
				continue
			}
			if k.knowsAll(ctx, server, want) {
				return
			}
		}
		k.fetchDirect(ctx, server)
	})
}

// knowsAll reports whether every key in want is stored for server.
func (k *KeyRing) knowsAll(ctx context.Context, server spec.ServerName, want []gomatrixserverlib.KeyID) bool {
	keys, err := k.serverKeys(ctx, server)
	if err != nil {
		return false
	}
	for _, id := range want {
		if _, ok := keys[id]; !ok {
			return false
		}
	}
	return true
}

// fetchDirect asks server for its keys (GET /_matrix/key/v2/server) and
// stores them with the response, unless it was asked lately.
func (k *KeyRing) fetchDirect(ctx context.Context, server spec.ServerName) {
	k.once(ctx, "direct:"+string(server), func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, k.timeout)
		defer cancel()
		var raw json.RawMessage
		err := k.client.Do(ctx, http.MethodGet, server, "/_matrix/key/v2/server", nil, &raw)
		if err == nil {
			var resp gomatrixserverlib.ServerKeys
			var keys []storage.ServerKey
			if resp, keys, err = parseKeyResponse(server, raw, k.now().UnixMilli()); err == nil {
				err = k.store(ctx, server, keys, &storage.ServerKeyResponse{
					JSON: raw, ValidUntilTS: int64(resp.ValidUntilTS), FetchedTS: k.now().UnixMilli(),
				})
			}
		}
		if err != nil {
			k.log.WithError(err).WithField("server", server).Info("fetching server keys failed")
		}
	})
}

// fetchFromNotary asks notary n for server's keys (POST
// /_matrix/key/v2/query) and stores what checks out.
func (k *KeyRing) fetchFromNotary(ctx context.Context, n Notary, server spec.ServerName, want []gomatrixserverlib.KeyID) error {
	notaryKeys, err := k.notaryKeys(ctx, n)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	criteria := map[gomatrixserverlib.KeyID]gomatrixserverlib.PublicKeyNotaryQueryCriteria{}
	for _, id := range want {
		criteria[id] = gomatrixserverlib.PublicKeyNotaryQueryCriteria{MinimumValidUntilTS: spec.AsTimestamp(k.now())}
	}
	body := gomatrixserverlib.PublicKeyNotaryLookupRequest{
		ServerKeys: map[spec.ServerName]map[gomatrixserverlib.KeyID]gomatrixserverlib.PublicKeyNotaryQueryCriteria{server: criteria},
	}
	var resp struct {
		ServerKeys []json.RawMessage `json:"server_keys"`
	}
	if err := k.client.Do(ctx, http.MethodPost, n.ServerName, "/_matrix/key/v2/query", body, &resp); err != nil {
		return err
	}
	var keys []storage.ServerKey
	for _, raw := range resp.ServerKeys {
		if err := signedBy(n.ServerName, notaryKeys, raw); err != nil {
			return err // a notary that signs badly is not trusted for anything
		}
		_, got, err := parseKeyResponse(server, raw, k.now().UnixMilli())
		if err != nil {
			k.log.WithError(err).WithField("notary", n.ServerName).Info("notary vouched for bad keys")
			continue
		}
		keys = append(keys, got...)
	}
	if len(keys) == 0 {
		return fmt.Errorf("notary %s has no keys for %s", n.ServerName, server)
	}
	return k.store(ctx, server, keys, nil)
}

// notaryKeys are the keys a notary's answers must be signed with: as
// configured, else its current keys as it serves them itself.
func (k *KeyRing) notaryKeys(ctx context.Context, n Notary) (map[gomatrixserverlib.KeyID]ed25519.PublicKey, error) {
	if len(n.Keys) > 0 {
		return n.Keys, nil
	}
	current := func() map[gomatrixserverlib.KeyID]ed25519.PublicKey {
		keys, err := k.serverKeys(ctx, n.ServerName)
		if err != nil {
			return nil
		}
		out := map[gomatrixserverlib.KeyID]ed25519.PublicKey{}
		for id, sk := range keys {
			if sk.ExpiredTS == 0 && sk.ValidUntilTS > k.now().UnixMilli() {
				out[id] = ed25519.PublicKey(sk.PublicKey)
			}
		}
		return out
	}
	if keys := current(); len(keys) > 0 {
		return keys, nil
	}
	k.fetchDirect(ctx, n.ServerName)
	if keys := current(); len(keys) > 0 {
		return keys, nil
	}
	return nil, fmt.Errorf("no current keys of notary %s", n.ServerName)
}

// signedBy checks that raw carries a signature of server by one of keys,
// and that every signature of server by one of keys verifies.
func signedBy(server spec.ServerName, keys map[gomatrixserverlib.KeyID]ed25519.PublicKey, raw []byte) error {
	ids, err := gomatrixserverlib.ListKeyIDs(string(server), raw)
	if err != nil {
		return fmt.Errorf("reading signatures of %s: %w", server, err)
	}
	signed := false
	for _, id := range ids {
		key, ok := keys[id]
		if !ok {
			continue
		}
		if err := gomatrixserverlib.VerifyJSON(string(server), id, key, raw); err != nil {
			return fmt.Errorf("signature of %s by %s: %w", server, id, err)
		}
		signed = true
	}
	if !signed {
		return fmt.Errorf("not signed by %s with a key we know", server)
	}
	return nil
}

// parseKeyResponse checks a key response of server (as served by the
// server or vouched for by a notary): its name, its validity, and that it
// is signed by the current keys it lists. It returns the keys to store.
func parseKeyResponse(server spec.ServerName, raw []byte, nowMS int64) (gomatrixserverlib.ServerKeys, []storage.ServerKey, error) {
	var resp gomatrixserverlib.ServerKeys
	if err := json.Unmarshal(raw, &resp); err != nil {
		return resp, nil, fmt.Errorf("key response of %s: %w", server, err)
	}
	if resp.ServerName != server {
		return resp, nil, fmt.Errorf("key response for %q, asked for %q", resp.ServerName, server)
	}
	if resp.ValidUntilTS == 0 {
		return resp, nil, fmt.Errorf("key response of %s has no valid_until_ts", server)
	}
	if err := signedBy(server, currentKeys(resp), raw); err != nil {
		return resp, nil, err
	}
	var keys []storage.ServerKey
	for id, vk := range resp.VerifyKeys {
		if isEd25519(id, vk.Key) {
			keys = append(keys, storage.ServerKey{ServerName: string(server), KeyID: string(id), PublicKey: vk.Key,
				ValidUntilTS: int64(resp.ValidUntilTS), FetchedTS: nowMS})
		}
	}
	for id, old := range resp.OldVerifyKeys {
		if isEd25519(id, old.Key) && old.ExpiredTS != 0 {
			keys = append(keys, storage.ServerKey{ServerName: string(server), KeyID: string(id), PublicKey: old.Key,
				ExpiredTS: int64(old.ExpiredTS), FetchedTS: nowMS})
		}
	}
	return resp, keys, nil
}

func currentKeys(resp gomatrixserverlib.ServerKeys) map[gomatrixserverlib.KeyID]ed25519.PublicKey {
	out := map[gomatrixserverlib.KeyID]ed25519.PublicKey{}
	for id, vk := range resp.VerifyKeys {
		if isEd25519(id, vk.Key) {
			out[id] = ed25519.PublicKey(vk.Key)
		}
	}
	return out
}

func isEd25519(id gomatrixserverlib.KeyID, key []byte) bool {
	return strings.HasPrefix(string(id), "ed25519:") && len(key) == ed25519.PublicKeySize
}

// store writes keys (and the server's own response, when given) and drops
// the cached keys of server so the next lookup reads the merged result.
func (k *KeyRing) store(ctx context.Context, server spec.ServerName, keys []storage.ServerKey, resp *storage.ServerKeyResponse) error {
	err := k.db.Write(ctx, func(tx *storage.Tx) error {
		if err := tx.StoreServerKeys(ctx, keys); err != nil {
			return err
		}
		if resp != nil {
			return tx.StoreServerKeyResponse(ctx, string(server), *resp)
		}
		return nil
	})
	k.cacheMu.Lock()
	k.keys.Remove(server, nil)
	k.cacheMu.Unlock()
	return err
}

// once runs fn for key unless it ran within the refetch interval; callers
// arriving while it runs wait for it. fn outlives the caller that started
// it (it serves every waiter) but each of its requests has a timeout.
func (k *KeyRing) once(ctx context.Context, key string, fn func(context.Context)) {
	k.mu.Lock()
	if f, ok := k.inflight[key]; ok {
		k.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
		}
		return
	}
	if last, ok := k.lastFetch.Get(key); ok && k.now().Sub(last) < k.refetch {
		k.mu.Unlock()
		return
	}
	f := &flight{done: make(chan struct{})}
	k.inflight[key] = f
	k.lastFetch.Add(key, k.now())
	k.mu.Unlock()
	go func() {
		defer func() {
			k.mu.Lock()
			delete(k.inflight, key)
			k.mu.Unlock()
			close(f.done)
		}()
		fn(context.WithoutCancel(ctx))
	}()
	select {
	case <-f.done:
	case <-ctx.Done():
	}
}

// NotaryKeys is server's key response as the notary endpoints serve it
// (before countersigning): the one stored from the server itself, fetched
// again first when there is none, when it is valid for less long than
// minValidUntil, or when it lacks one of keyIDs. found is false when no
// response can be had. Our own keys are not served from here.
func (k *KeyRing) NotaryKeys(ctx context.Context, server spec.ServerName, minValidUntil spec.Timestamp,
	keyIDs []gomatrixserverlib.KeyID) (raw []byte, found bool, err error) {
	stored, err := k.db.ServerKeyResponse(ctx, string(server))
	found = err == nil
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, false, err
	}
	if !found || stale(stored, minValidUntil, keyIDs) {
		if _, _, valid := spec.ParseAndValidateServerName(server); !valid || server == k.own.ServerName {
			return nil, false, nil
		}
		k.fetchDirect(ctx, server)
		if stored, err = k.db.ServerKeyResponse(ctx, string(server)); err == nil {
			found = true
		} else if !errors.Is(err, storage.ErrNotFound) {
			return nil, false, err
		}
	}
	if !found {
		return nil, false, nil
	}
	return stored.JSON, true, nil
}

// stale reports whether a stored response falls short of a notary query.
func stale(r storage.ServerKeyResponse, minValidUntil spec.Timestamp, keyIDs []gomatrixserverlib.KeyID) bool {
	if r.ValidUntilTS < int64(minValidUntil) {
		return true
	}
	if len(keyIDs) == 0 {
		return false
	}
	var resp gomatrixserverlib.ServerKeys
	if json.Unmarshal(r.JSON, &resp) != nil {
		return true
	}
	for _, id := range keyIDs {
		_, current := resp.VerifyKeys[id]
		_, old := resp.OldVerifyKeys[id]
		if !current && !old {
			return true
		}
	}
	return false
}
