// Package keyring knows other servers' signing keys and checks signatures
// with them. Keys come from the configured notaries (asked first, as
// Synapse does) or from each server itself (GET /_matrix/key/v2/server),
// are stored with their validity in SQLite and cached in memory. A key
// verifies what was signed while it was valid: up to the valid_until_ts of
// the latest response listing it, or, once the server lists it among its
// old_verify_keys, up to its expired_ts.
//
// KeyRing implements gomatrixserverlib.JSONVerifier, which is what event
// signature checks (gomatrixserverlib.VerifyEventSignatures, the
// roomserver's Options.Verifier) and request authentication (fedauth) use.
package keyring

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/sirupsen/logrus"

	"matrixhs/internal/lru"
	"matrixhs/storage"
)

// Defaults of Options.
const (
	DefaultRefetchInterval = 10 * time.Second
	DefaultFetchTimeout    = 15 * time.Second
	defaultCacheSize       = 4096
)

// Requester sends signed federation requests (fedclient.Client).
type Requester interface {
	Do(ctx context.Context, method string, destination spec.ServerName, path string, body, out any) error
}

// Notary is a server trusted to vouch for other servers' keys.
type Notary struct {
	ServerName spec.ServerName
	// Keys are the notary's own public keys, which its answers must be
	// signed with. Empty: they are fetched from the notary itself (and
	// trusted on the strength of its TLS certificate).
	Keys map[gomatrixserverlib.KeyID]ed25519.PublicKey
}

// Options configure a KeyRing.
type Options struct {
	// Own are this server's keys (required): our own signatures are
	// checked with them, never fetched.
	Own    *OwnKeys
	DB     *storage.DB
	Client Requester
	// Notaries are asked for keys, in order, before the server itself.
	Notaries []Notary
	// RefetchInterval is how soon a server's keys may be fetched again
	// (DefaultRefetchInterval): signatures by keys nobody has heard of
	// must not turn the server into a request amplifier.
	RefetchInterval time.Duration
	// FetchTimeout bounds one fetch from one server (DefaultFetchTimeout).
	FetchTimeout time.Duration
	// CacheSize is how many servers' keys are kept in memory.
	CacheSize int
	Log       logrus.FieldLogger
	Now       func() time.Time
}

// KeyRing checks signatures of other servers.
type KeyRing struct {
	own      *OwnKeys
	db       *storage.DB
	client   Requester
	notaries []Notary
	refetch  time.Duration
	timeout  time.Duration
	log      logrus.FieldLogger
	now      func() time.Time

	// keys caches the stored keys of each server (maps are replaced, never
	// changed in place).
	keys *lru.Cache[spec.ServerName, serverKeys]
	// cacheMu orders loading keys into the cache after the writes that
	// invalidate them, so a stale load never outlives a store.
	cacheMu sync.Mutex
	// lastFetch is when a server's keys were last asked for.
	lastFetch *lru.Cache[string, time.Time]

	mu       sync.Mutex
	inflight map[string]*flight
}

var _ gomatrixserverlib.JSONVerifier = (*KeyRing)(nil)

type serverKeys map[gomatrixserverlib.KeyID]storage.ServerKey

type flight struct {
	done chan struct{}
}

// New builds a key ring.
func New(opts Options) *KeyRing {
	if opts.RefetchInterval <= 0 {
		opts.RefetchInterval = DefaultRefetchInterval
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = DefaultFetchTimeout
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = defaultCacheSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		l := logrus.New()
		l.Out = nopWriter{}
		opts.Log = l
	}
	return &KeyRing{
		own: opts.Own, db: opts.DB, client: opts.Client, notaries: opts.Notaries,
		refetch: opts.RefetchInterval, timeout: opts.FetchTimeout, log: opts.Log, now: opts.Now,
		keys:      lru.New[spec.ServerName, serverKeys](opts.CacheSize),
		lastFetch: lru.New[string, time.Time](opts.CacheSize),
		inflight:  map[string]*flight{},
	}
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

// Own is this server's keys.
func (k *KeyRing) Own() *OwnKeys { return k.own }

// VerifyJSONs implements gomatrixserverlib.JSONVerifier: each message must
// carry a valid signature of its server by a key valid at AtTS (checked
// with ValidityCheckingFunc; StrictValiditySignatureCheck when nil). Keys
// not known, or not known to be valid that late, are fetched first. The
// error is for storage failures only; a bad signature is a result's Error.
func (k *KeyRing) VerifyJSONs(ctx context.Context, reqs []gomatrixserverlib.VerifyJSONRequest) ([]gomatrixserverlib.VerifyJSONResult, error) {
	results := make([]gomatrixserverlib.VerifyJSONResult, len(reqs))
	pending := map[int][]gomatrixserverlib.KeyID{}
	fetch := map[spec.ServerName][]gomatrixserverlib.KeyID{}
	for i, req := range reqs {
		ids, err := signingKeyIDs(req)
		if err != nil {
			results[i].Error = err
			continue
		}
		needFetch, err := k.check(ctx, req, ids, &results[i])
		if err != nil {
			return nil, err
		}
		if needFetch {
			pending[i] = ids
			fetch[req.ServerName] = append(fetch[req.ServerName], ids...)
		}
	}
	if len(fetch) == 0 {
		return results, nil
	}
	var wg sync.WaitGroup
	for server, ids := range fetch {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k.fetch(ctx, server, ids)
		}()
	}
	wg.Wait()
	for i, ids := range pending {
		if _, err := k.check(ctx, reqs[i], ids, &results[i]); err != nil {
			return nil, err
		}
	}
	return results, nil
}

// signingKeyIDs lists the ed25519 keys of req's server that signed it.
func signingKeyIDs(req gomatrixserverlib.VerifyJSONRequest) ([]gomatrixserverlib.KeyID, error) {
	all, err := gomatrixserverlib.ListKeyIDs(string(req.ServerName), req.Message)
	if err != nil {
		return nil, fmt.Errorf("reading signatures: %w", err)
	}
	var ids []gomatrixserverlib.KeyID
	for _, id := range all {
		if strings.HasPrefix(string(id), "ed25519:") {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("not signed by %s with an ed25519 key", req.ServerName)
	}
	return ids, nil
}

// check verifies req with the keys known now. It sets res.Error (nil on
// success) and reports whether fetching keys could change the outcome.
func (k *KeyRing) check(ctx context.Context, req gomatrixserverlib.VerifyJSONRequest, ids []gomatrixserverlib.KeyID,
	res *gomatrixserverlib.VerifyJSONResult) (needFetch bool, err error) {
	validity := req.ValidityCheckingFunc
	if validity == nil {
		validity = gomatrixserverlib.StrictValiditySignatureCheck
	}
	var errs []error
	for _, id := range ids {
		key, found, err := k.lookup(ctx, req.ServerName, id)
		if err != nil {
			return false, err
		}
		switch {
		case !found:
			needFetch = true
			errs = append(errs, fmt.Errorf("key %s of %s is unknown", id, req.ServerName))
		case !key.WasValidAt(req.AtTS, validity):
			// An expired key stays expired; a current one may have been
			// renewed since we last asked.
			needFetch = needFetch || key.ExpiredTS == gomatrixserverlib.PublicKeyNotExpired
			errs = append(errs, fmt.Errorf("key %s of %s was not valid at %d", id, req.ServerName, req.AtTS))
		default:
			if err := gomatrixserverlib.VerifyJSON(string(req.ServerName), id, ed25519.PublicKey(key.Key), req.Message); err != nil {
				errs = append(errs, fmt.Errorf("signature of %s by %s: %w", req.ServerName, id, err))
				continue
			}
			res.Error = nil
			return false, nil
		}
	}
	res.Error = errors.Join(errs...)
	return needFetch && req.ServerName != k.own.ServerName, nil
}

// lookup is what is known of one key, from memory or the database.
func (k *KeyRing) lookup(ctx context.Context, server spec.ServerName, id gomatrixserverlib.KeyID) (gomatrixserverlib.PublicKeyLookupResult, bool, error) {
	if server == k.own.ServerName {
		r, ok := k.own.lookup(id)
		return r, ok, nil
	}
	keys, err := k.serverKeys(ctx, server)
	if err != nil {
		return gomatrixserverlib.PublicKeyLookupResult{}, false, err
	}
	sk, ok := keys[id]
	if !ok {
		return gomatrixserverlib.PublicKeyLookupResult{}, false, nil
	}
	return lookupResult(sk), true, nil
}

func lookupResult(sk storage.ServerKey) gomatrixserverlib.PublicKeyLookupResult {
	r := gomatrixserverlib.PublicKeyLookupResult{VerifyKey: gomatrixserverlib.VerifyKey{Key: sk.PublicKey}}
	if sk.ExpiredTS != 0 {
		r.ExpiredTS = spec.Timestamp(sk.ExpiredTS)
	} else {
		r.ValidUntilTS = spec.Timestamp(sk.ValidUntilTS)
	}
	return r
}

// serverKeys is every stored key of server.
func (k *KeyRing) serverKeys(ctx context.Context, server spec.ServerName) (serverKeys, error) {
	if keys, ok := k.keys.Get(server); ok {
		return keys, nil
	}
	k.cacheMu.Lock()
	defer k.cacheMu.Unlock()
	if keys, ok := k.keys.Get(server); ok {
		return keys, nil
	}
	list, err := k.db.ServerKeys(ctx, string(server))
	if err != nil {
		return nil, err
	}
	keys := make(serverKeys, len(list))
	for _, sk := range list {
		keys[gomatrixserverlib.KeyID(sk.KeyID)] = sk
	}
	k.keys.Add(server, keys)
	return keys, nil
}

// PublicKey returns server's key id if it was valid at ts (strict
// validity), fetching it when needed: for callers that check signatures
// themselves.
func (k *KeyRing) PublicKey(ctx context.Context, server spec.ServerName, id gomatrixserverlib.KeyID, ts spec.Timestamp) (ed25519.PublicKey, error) {
	for attempt := 0; ; attempt++ {
		key, found, err := k.lookup(ctx, server, id)
		if err != nil {
			return nil, err
		}
		if found && key.WasValidAt(ts, gomatrixserverlib.StrictValiditySignatureCheck) {
			return ed25519.PublicKey(key.Key), nil
		}
		if attempt > 0 || server == k.own.ServerName || (found && key.ExpiredTS != gomatrixserverlib.PublicKeyNotExpired) {
			return nil, fmt.Errorf("no key %s of %s valid at %d", id, server, ts)
		}
		k.fetch(ctx, server, []gomatrixserverlib.KeyID{id})
	}
}
