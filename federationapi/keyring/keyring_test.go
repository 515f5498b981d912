package keyring

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"matrixhs/internal/dbtest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/storage"
)

// signer is a server of the fake network with signing keys.
type signer struct {
	name       spec.ServerName
	id         gomatrixserverlib.KeyID
	priv       ed25519.PrivateKey
	validUntil time.Time
	old        map[gomatrixserverlib.KeyID]gomatrixserverlib.OldVerifyKey
}

func newSigner(name spec.ServerName, id gomatrixserverlib.KeyID, validUntil time.Time) *signer {
	_, priv, _ := ed25519.GenerateKey(nil)
	return &signer{name: name, id: id, priv: priv, validUntil: validUntil, old: map[gomatrixserverlib.KeyID]gomatrixserverlib.OldVerifyKey{}}
}

// rotate makes a new current key, the old one expiring at expired.
func (s *signer) rotate(id gomatrixserverlib.KeyID, expired time.Time) ed25519.PrivateKey {
	s.old[s.id] = gomatrixserverlib.OldVerifyKey{VerifyKey: gomatrixserverlib.VerifyKey{Key: spec.Base64Bytes(s.priv.Public().(ed25519.PublicKey))}, ExpiredTS: spec.AsTimestamp(expired)}
	oldPriv := s.priv
	_, s.priv, _ = ed25519.GenerateKey(nil)
	s.id = id
	return oldPriv
}

func (s *signer) keysJSON(t *testing.T) []byte {
	t.Helper()
	own := &OwnKeys{ServerName: s.name, KeyID: s.id, PrivateKey: s.priv, Old: s.old}
	raw, err := own.ServerKeysJSON(s.validUntil)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func (s *signer) sign(t *testing.T, msg string) []byte {
	t.Helper()
	return signWith(t, s.name, s.id, s.priv, msg)
}

func signWith(t *testing.T, name spec.ServerName, id gomatrixserverlib.KeyID, priv ed25519.PrivateKey, msg string) []byte {
	t.Helper()
	signed, err := gomatrixserverlib.SignJSON(string(name), id, priv, []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// fakeNet routes requests to handlers by destination and records them.
type fakeNet struct {
	mu       sync.Mutex
	handlers map[spec.ServerName]func(method, path string, body []byte) ([]byte, error)
	calls    []string
}

func newFakeNet() *fakeNet {
	return &fakeNet{handlers: map[spec.ServerName]func(string, string, []byte) ([]byte, error){}}
}

func (f *fakeNet) serve(name spec.ServerName, h func(method, path string, body []byte) ([]byte, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handlers[name] = h
}

// serveKeys answers GET /_matrix/key/v2/server with s's current keys.
func (f *fakeNet) serveKeys(t *testing.T, s *signer) {
	f.serve(s.name, func(method, path string, _ []byte) ([]byte, error) {
		if method != "GET" || path != "/_matrix/key/v2/server" {
			return nil, fmt.Errorf("unexpected %s %s", method, path)
		}
		return s.keysJSON(t), nil
	})
}

func (f *fakeNet) Do(_ context.Context, method string, dest spec.ServerName, path string, body, out any) error {
	f.mu.Lock()
	f.calls = append(f.calls, fmt.Sprintf("%s %s %s", method, dest, path))
	h := f.handlers[dest]
	f.mu.Unlock()
	if h == nil {
		return fmt.Errorf("%s unreachable", dest)
	}
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
	}
	resp, err := h(method, path, raw)
	if err != nil {
		return err
	}
	return json.Unmarshal(resp, out)
}

func (f *fakeNet) callCount(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type fixture struct {
	db    *storage.DB
	net   *fakeNet
	clock *testClock
	own   *OwnKeys
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db, err := dbtest.Open(t, context.Background(), filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	_, priv, _ := ed25519.GenerateKey(nil)
	own, err := LoadOwnKeys(context.Background(), db, "me.test", "ed25519:me", priv, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{db: db, net: newFakeNet(), clock: &testClock{now: time.Now()}, own: own}
}

func (f *fixture) ring(notaries ...Notary) *KeyRing {
	return New(Options{Own: f.own, DB: f.db, Client: f.net, Notaries: notaries, Now: f.clock.Now})
}

// verify checks one message signed by server at ts (strict validity).
func verify(t *testing.T, k *KeyRing, server spec.ServerName, msg []byte, ts time.Time) error {
	t.Helper()
	res, err := k.VerifyJSONs(context.Background(), []gomatrixserverlib.VerifyJSONRequest{{
		ServerName: server, Message: msg, AtTS: spec.AsTimestamp(ts), ValidityCheckingFunc: gomatrixserverlib.StrictValiditySignatureCheck,
	}})
	if err != nil {
		t.Fatal(err)
	}
	return res[0].Error
}

func TestKeysFetchedDirectlyStoredAndCached(t *testing.T) {
	f := newFixture(t)
	b := newSigner("b.test", "ed25519:b1", time.Now().Add(time.Hour))
	f.net.serveKeys(t, b)
	k := f.ring()
	msg := b.sign(t, `{"hello":"world"}`)
	if err := verify(t, k, "b.test", msg, time.Now()); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if err := verify(t, k, "b.test", msg, time.Now()); err != nil || f.net.callCount("GET b.test") != 1 {
		t.Fatalf("second verify: %v, %d fetches", err, f.net.callCount("GET b.test"))
	}
	// A tampered message fails without a refetch (the key is known).
	tampered := []byte(strings.Replace(string(msg), "world", "w0rld", 1))
	if err := verify(t, k, "b.test", tampered, time.Now()); err == nil || f.net.callCount("GET b.test") != 1 {
		t.Fatalf("tampered: %v, %d fetches", err, f.net.callCount("GET b.test"))
	}
	// A new key ring (a restart) reads the keys from the database.
	if err := verify(t, f.ring(), "b.test", msg, time.Now()); err != nil || f.net.callCount("GET b.test") != 1 {
		t.Fatalf("after restart: %v, %d fetches", err, f.net.callCount("GET b.test"))
	}
	// The server's own response is kept for the notary endpoints.
	if r, err := f.db.ServerKeyResponse(context.Background(), "b.test"); err != nil || !strings.Contains(string(r.JSON), `"ed25519:b1"`) {
		t.Fatalf("stored response = %s, %v", r.JSON, err)
	}
	// Signed by another server's key: refused.
	c := newSigner("c.test", "ed25519:b1", time.Now().Add(time.Hour))
	if err := verify(t, k, "b.test", c.sign(t, `{}`), time.Now()); err == nil {
		t.Fatal("signature by another key accepted")
	}
}

func TestUnknownKeyRefetchIsThrottled(t *testing.T) {
	f := newFixture(t)
	b := newSigner("b.test", "ed25519:b1", time.Now().Add(time.Hour))
	f.net.serveKeys(t, b)
	k := f.ring()
	_, stranger, _ := ed25519.GenerateKey(nil)
	msg := signWith(t, "b.test", "ed25519:nope", stranger, `{}`)
	for i := 0; i < 3; i++ {
		if err := verify(t, k, "b.test", msg, time.Now()); err == nil {
			t.Fatal("unknown key accepted")
		}
	}
	if n := f.net.callCount("GET b.test"); n != 1 {
		t.Fatalf("%d fetches for one unknown key within the interval", n)
	}
	// After the interval the server is asked again: it rotated meanwhile.
	f.clock.Advance(DefaultRefetchInterval + time.Second)
	b.rotate("ed25519:b2", time.Now())
	if err := verify(t, k, "b.test", b.sign(t, `{"a":1}`), time.Now()); err != nil || f.net.callCount("GET b.test") != 2 {
		t.Fatalf("rotated key: %v, %d fetches", err, f.net.callCount("GET b.test"))
	}
	// Unreachable servers and invalid names fail cleanly.
	for _, name := range []spec.ServerName{"gone.test", "bad name"} {
		if err := verify(t, k, name, signWith(t, name, "ed25519:x", stranger, `{}`), time.Now()); err == nil {
			t.Fatalf("%s verified", name)
		}
	}
}

func TestValidityAndExpiry(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	b := newSigner("b.test", "ed25519:b1", now.Add(-time.Hour)) // published keys already past their validity
	f.net.serveKeys(t, b)
	k := f.ring()
	msg := b.sign(t, `{}`)
	// Something signed two hours ago verifies; a request signed now does not.
	if err := verify(t, k, "b.test", msg, now.Add(-2*time.Hour)); err != nil {
		t.Fatalf("old signature: %v", err)
	}
	if err := verify(t, k, "b.test", msg, now); err == nil {
		t.Fatal("key past valid_until_ts accepted for now")
	}
	// The server renews its validity: the next fetch (after the interval) takes it.
	b.validUntil = now.Add(time.Hour)
	f.clock.Advance(DefaultRefetchInterval + time.Second)
	if err := verify(t, k, "b.test", msg, now); err != nil {
		t.Fatalf("after renewal: %v", err)
	}
	// The key rotates: the old one expired 10 minutes ago. It still checks
	// what it signed before then, not after, and is not fetched again.
	oldPriv := b.rotate("ed25519:b2", now.Add(-10*time.Minute))
	f.clock.Advance(DefaultRefetchInterval + time.Second)
	if err := verify(t, k, "b.test", b.sign(t, `{"new":1}`), now); err != nil {
		t.Fatalf("new key: %v", err)
	}
	fetches := f.net.callCount("GET b.test")
	f.clock.Advance(DefaultRefetchInterval + time.Second)
	oldSigned := signWith(t, "b.test", "ed25519:b1", oldPriv, `{"old":1}`)
	if err := verify(t, k, "b.test", oldSigned, now.Add(-20*time.Minute)); err != nil {
		t.Fatalf("old key before its expiry: %v", err)
	}
	if err := verify(t, k, "b.test", oldSigned, now); err == nil {
		t.Fatal("expired key accepted after its expiry")
	}
	if f.net.callCount("GET b.test") != fetches {
		t.Fatal("an expired key was fetched again")
	}
	// Room versions 1-4 do not check key validity.
	res, _ := k.VerifyJSONs(context.Background(), []gomatrixserverlib.VerifyJSONRequest{{
		ServerName: "b.test", Message: oldSigned, AtTS: spec.AsTimestamp(now.Add(-20 * time.Minute)), ValidityCheckingFunc: gomatrixserverlib.NoStrictValidityCheck,
	}})
	if res[0].Error != nil {
		t.Fatalf("non-strict: %v", res[0].Error)
	}
}

func TestOwnKeysVerifyWithoutFetching(t *testing.T) {
	f := newFixture(t)
	k := f.ring()
	msg := signWith(t, "me.test", f.own.KeyID, f.own.PrivateKey, `{"mine":true}`)
	if err := verify(t, k, "me.test", msg, time.Now()); err != nil {
		t.Fatalf("own signature: %v", err)
	}
	_, other, _ := ed25519.GenerateKey(nil)
	if err := verify(t, k, "me.test", signWith(t, "me.test", "ed25519:zz", other, `{}`), time.Now()); err == nil {
		t.Fatal("unknown own key accepted")
	}
	if len(f.net.calls) != 0 {
		t.Fatalf("own keys fetched: %v", f.net.calls)
	}
	// After a key change the old key is an old key of ours.
	_, next, _ := ed25519.GenerateKey(nil)
	own2, err := LoadOwnKeys(context.Background(), f.db, "me.test", "ed25519:me2", next, time.Now())
	if err != nil || len(own2.Old) != 1 || own2.Old["ed25519:me"].ExpiredTS == 0 {
		t.Fatalf("rotated own keys = %+v, %v", own2, err)
	}
	k2 := New(Options{Own: own2, DB: f.db, Client: f.net})
	if err := verify(t, k2, "me.test", msg, time.Now().Add(-time.Minute)); err != nil {
		t.Fatalf("old own key, before it expired: %v", err)
	}
	if err := verify(t, k2, "me.test", msg, time.Now().Add(time.Minute)); err == nil {
		t.Fatal("old own key accepted after it expired")
	}
}

// notaryFor makes n answer key queries with the responses of the servers
// given, countersigned.
func notaryFor(t *testing.T, f *fakeNet, n *signer, sign ed25519.PrivateKey, servers ...*signer) {
	f.serve(n.name, func(method, path string, body []byte) ([]byte, error) {
		if path == "/_matrix/key/v2/server" {
			return n.keysJSON(t), nil
		}
		if method != "POST" || path != "/_matrix/key/v2/query" {
			return nil, fmt.Errorf("unexpected %s %s", method, path)
		}
		var req gomatrixserverlib.PublicKeyNotaryLookupRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, err
		}
		var out []json.RawMessage
		for _, s := range servers {
			if _, asked := req.ServerKeys[s.name]; asked {
				out = append(out, signWith(t, n.name, n.id, sign, string(s.keysJSON(t))))
			}
		}
		return json.Marshal(map[string]any{"server_keys": out})
	})
}

func TestKeysThroughNotaries(t *testing.T) {
	f := newFixture(t)
	b := newSigner("b.test", "ed25519:b1", time.Now().Add(time.Hour)) // b itself is unreachable
	n := newSigner("n.test", "ed25519:n1", time.Now().Add(time.Hour))
	notaryFor(t, f.net, n, n.priv, b)
	configured := Notary{ServerName: "n.test", Keys: map[gomatrixserverlib.KeyID]ed25519.PublicKey{"ed25519:n1": n.priv.Public().(ed25519.PublicKey)}}
	msg := b.sign(t, `{"via":"notary"}`)
	if err := verify(t, f.ring(configured), "b.test", msg, time.Now()); err != nil {
		t.Fatalf("through a configured notary: %v", err)
	}
	if f.net.callCount("POST n.test /_matrix/key/v2/query") != 1 || f.net.callCount("GET n.test") != 0 {
		t.Fatalf("calls = %v", f.net.calls)
	}
	// Keys learnt through a notary are not served by our own notary
	// endpoints (only responses from the servers themselves are).
	if _, err := f.db.ServerKeyResponse(context.Background(), "b.test"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("notary answer stored as b's own: %v", err)
	}

	// A notary without configured keys is checked with its own published keys.
	g := newFixture(t)
	notaryFor(t, g.net, n, n.priv, b)
	if err := verify(t, g.ring(Notary{ServerName: "n.test"}), "b.test", msg, time.Now()); err != nil {
		t.Fatalf("through a notary with fetched keys: %v", err)
	}
	if g.net.callCount("GET n.test /_matrix/key/v2/server") != 1 {
		t.Fatalf("notary keys not fetched: %v", g.net.calls)
	}

	// A notary signing with the wrong key is not believed; neither are
	// keys it vouches for that the server did not sign.
	h := newFixture(t)
	_, wrong, _ := ed25519.GenerateKey(nil)
	notaryFor(t, h.net, n, wrong, b)
	if err := verify(t, h.ring(configured), "b.test", msg, time.Now()); err == nil {
		t.Fatal("keys from a badly signed notary answer accepted")
	}
	i := newFixture(t)
	forged := newSigner("b.test", "ed25519:b1", time.Now().Add(time.Hour))
	forged.priv = b.priv // b's key ID and public key ...
	forgedRaw := func() []byte {
		raw := forged.keysJSON(t) // ... but signed by someone else below
		var m map[string]any
		json.Unmarshal(raw, &m)
		delete(m, "signatures")
		out, _ := json.Marshal(m)
		return out
	}()
	i.net.serve("n.test", func(string, string, []byte) ([]byte, error) {
		return json.Marshal(map[string]any{"server_keys": []json.RawMessage{signWith(t, "n.test", "ed25519:n1", n.priv, string(forgedRaw))}})
	})
	if err := verify(t, i.ring(configured), "b.test", msg, time.Now()); err == nil {
		t.Fatal("keys not signed by their server accepted from a notary")
	}

	// When the notary does not know the key, the server is asked directly.
	j := newFixture(t)
	notaryFor(t, j.net, n, n.priv) // knows nobody
	j.net.serveKeys(t, b)
	if err := verify(t, j.ring(configured), "b.test", msg, time.Now()); err != nil || j.net.callCount("GET b.test") != 1 {
		t.Fatalf("fallback to direct: %v, calls %v", err, j.net.calls)
	}
}

func TestNotaryKeys(t *testing.T) {
	f := newFixture(t)
	b := newSigner("b.test", "ed25519:b1", time.Now().Add(time.Hour))
	f.net.serveKeys(t, b)
	k := f.ring()
	ctx := context.Background()
	raw, found, err := k.NotaryKeys(ctx, "b.test", spec.AsTimestamp(time.Now()), nil)
	if err != nil || !found || f.net.callCount("GET b.test") != 1 {
		t.Fatalf("first query: %s, %v, %v", raw, found, err)
	}
	if _, err := gomatrixserverlib.ListKeyIDs("b.test", raw); err != nil || !strings.Contains(string(raw), `"signatures":{"b.test"`) {
		t.Fatalf("response = %s", raw)
	}
	// Cached while valid enough and complete.
	f.clock.Advance(DefaultRefetchInterval + time.Second)
	k.NotaryKeys(ctx, "b.test", spec.AsTimestamp(time.Now()), []gomatrixserverlib.KeyID{"ed25519:b1"})
	if f.net.callCount("GET b.test") != 1 {
		t.Fatal("fetched again though the cached response suffices")
	}
	// Asked to be valid for longer, or for a key it lacks: fetched again.
	k.NotaryKeys(ctx, "b.test", spec.AsTimestamp(time.Now().Add(2*time.Hour)), nil)
	if f.net.callCount("GET b.test") != 2 {
		t.Fatal("not fetched for a later minimum_valid_until_ts")
	}
	f.clock.Advance(DefaultRefetchInterval + time.Second)
	b.rotate("ed25519:b2", time.Now())
	raw, _, _ = k.NotaryKeys(ctx, "b.test", 0, []gomatrixserverlib.KeyID{"ed25519:b2"})
	if f.net.callCount("GET b.test") != 3 || !strings.Contains(string(raw), "ed25519:b2") {
		t.Fatalf("not fetched for a missing key: %s", raw)
	}
	// The server goes away: the cached response is still served.
	f.net.serve("b.test", nil)
	f.clock.Advance(DefaultRefetchInterval + time.Second)
	if raw, found, err := k.NotaryKeys(ctx, "b.test", spec.AsTimestamp(time.Now().Add(48*time.Hour)), nil); err != nil || !found || len(raw) == 0 {
		t.Fatalf("offline server: %v, %v", found, err)
	}
	if _, found, _ := k.NotaryKeys(ctx, "never.test", 0, nil); found {
		t.Fatal("keys for an unreachable unknown server")
	}
}

func TestParseKeyResponseRejects(t *testing.T) {
	b := newSigner("b.test", "ed25519:b1", time.Now().Add(time.Hour))
	good := b.keysJSON(t)
	if _, keys, err := parseKeyResponse("b.test", good, 0); err != nil || len(keys) != 1 {
		t.Fatalf("good response: %v, %v", keys, err)
	}
	unsigned := strings.Replace(string(good), `"signatures"`, `"signaturez"`, 1)
	noValidity := signWith(t, "b.test", "ed25519:b1", b.priv, `{"server_name":"b.test","verify_keys":{"ed25519:b1":{"key":"`+
		spec.Base64Bytes(b.priv.Public().(ed25519.PublicKey)).Encode()+`"}}}`)
	for name, raw := range map[string][]byte{
		"wrong server":     good,
		"unsigned":         []byte(unsigned),
		"no valid_until":   noValidity,
		"not json":         []byte("nope"),
		"tampered content": []byte(strings.Replace(string(good), `"valid_until_ts":`, `"valid_until_ts":1`, 1)),
	} {
		server := spec.ServerName("b.test")
		if name == "wrong server" {
			server = "c.test"
		}
		if _, _, err := parseKeyResponse(server, raw, 0); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
