package fedtest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/federationapi"
	"matrixhs/internal/safenet"
)

// signedBy is msg signed with s's current key.
func signedBy(t *testing.T, s *Server, msg string) []byte {
	t.Helper()
	signed, err := gomatrixserverlib.SignJSON(string(s.Name), s.Federation.Own.KeyID, s.Federation.Own.PrivateKey, []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// verifyAt has s's key ring check msg as signed by server now.
func verifyAt(t *testing.T, s *Server, server spec.ServerName, msg []byte) error {
	t.Helper()
	res, err := s.Federation.KeyRing.VerifyJSONs(context.Background(), []gomatrixserverlib.VerifyJSONRequest{{
		ServerName: server, Message: msg, AtTS: spec.AsTimestamp(time.Now()),
		ValidityCheckingFunc: gomatrixserverlib.StrictValiditySignatureCheck,
	}})
	if err != nil {
		t.Fatal(err)
	}
	return res[0].Error
}

func pubKey(s *Server) ed25519.PublicKey { return s.Federation.Own.PublicKey() }

// TestKeysDirectlyAndThroughNotary: a server fetches another's keys from
// it; a third serves them as a notary, countersigned, and keeps serving
// them when their server is gone, to a server that trusts it.
func TestKeysDirectlyAndThroughNotary(t *testing.T) {
	n := NewNetwork(t)
	hs1, hs2, hs3 := n.Start("hs1"), n.Start("hs2"), n.Start("hs3")
	ctx := context.Background()
	msg := signedBy(t, hs2, `{"from":"hs2"}`)
	if err := verifyAt(t, hs1, "hs2", msg); err != nil {
		t.Fatalf("hs1 checking hs2's signature: %v", err)
	}
	if keys, err := hs1.DB.ServerKeys(ctx, "hs2"); err != nil || len(keys) != 1 || keys[0].KeyID != string(hs2.Federation.Own.KeyID) {
		t.Fatalf("hs1 stored %+v, %v", keys, err)
	}

	// hs3 as a notary, asked by hs1 over federation: hs2's response signed
	// by hs2 and countersigned by hs3.
	var single struct {
		ServerKeys []json.RawMessage `json:"server_keys"`
	}
	if err := hs1.Federation.Client.Do(ctx, "GET", "hs3", "/_matrix/key/v2/query/hs2", nil, &single); err != nil {
		t.Fatal(err)
	}
	if len(single.ServerKeys) != 1 {
		t.Fatalf("notary answer: %d entries", len(single.ServerKeys))
	}
	entry := single.ServerKeys[0]
	if err := gomatrixserverlib.VerifyJSON("hs2", hs2.Federation.Own.KeyID, pubKey(hs2), entry); err != nil {
		t.Fatalf("hs2's signature: %v", err)
	}
	if err := gomatrixserverlib.VerifyJSON("hs3", hs3.Federation.Own.KeyID, pubKey(hs3), entry); err != nil {
		t.Fatalf("hs3's countersignature: %v", err)
	}
	var batch struct {
		ServerKeys []gomatrixserverlib.ServerKeys `json:"server_keys"`
	}
	query := map[string]any{"server_keys": map[string]any{
		"hs2":           map[string]any{string(hs2.Federation.Own.KeyID): map[string]any{"minimum_valid_until_ts": time.Now().UnixMilli()}},
		"hs3":           map[string]any{},
		"nowhere.test":  map[string]any{},
		"not a name!!!": map[string]any{},
	}}
	if err := hs1.Federation.Client.Do(ctx, "POST", "hs3", "/_matrix/key/v2/query", query, &batch); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, k := range batch.ServerKeys {
		names = append(names, string(k.ServerName))
	}
	if slices.Sort(names); strings.Join(names, ",") != "hs2,hs3" {
		t.Fatalf("batch answered for %v", names)
	}

	// hs2 goes away. hs4 trusts hs3 as its notary and still learns hs2's
	// key; hs5, on its own, cannot.
	hs2.Stop()
	hs4 := n.Start("hs4", WithNotary(hs3))
	if err := verifyAt(t, hs4, "hs2", msg); err != nil {
		t.Fatalf("hs4 through its notary: %v", err)
	}
	hs5 := n.Start("hs5")
	if err := verifyAt(t, hs5, "hs2", msg); err == nil {
		t.Fatal("hs5 verified a signature of an unreachable server it never knew")
	}
}

func errcode(body []byte) string {
	var e struct {
		Errcode string `json:"errcode"`
	}
	json.Unmarshal(body, &e)
	return e.Errcode
}

// TestRequestAuthentication: signed requests between servers are accepted
// (on the federation listener and on the client port); unsigned, badly
// signed, misdirected, impersonating and expired-key ones are refused.
func TestRequestAuthentication(t *testing.T) {
	n := NewNetwork(t)
	hs1 := n.Start("hs1", WithFederation(EchoRoute))
	hs2 := n.Start("hs2", WithFederation(EchoRoute))
	n.Start("hs3", WithFederation(EchoRoute))

	status, body := hs1.Send(t, hs1.SignedRequest(t, "PUT", "hs2", EchoPath+"?q=%2F1", map[string]string{"hello": "hs2"}))
	var echo struct {
		Origin string          `json:"origin"`
		Body   json.RawMessage `json:"body"`
	}
	if json.Unmarshal(body, &echo); status != 200 || echo.Origin != "hs1" || string(echo.Body) != `{"hello":"hs2"}` {
		t.Fatalf("signed PUT: %d %s", status, body)
	}
	// The same request on hs2's client port (plain HTTP) is authenticated alike.
	req := hs1.SignedRequest(t, "GET", "hs2", EchoPath, nil)
	req.URL, _ = url.Parse(hs2.URL() + EchoPath)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("on the client port: %v %v", resp, err)
	}
	resp.Body.Close()

	_, stranger, _ := ed25519.GenerateKey(nil)
	own := hs1.Federation.Own
	refused := map[string]*http.Request{
		"no auth header": func() *http.Request {
			req := hs1.SignedRequest(t, "GET", "hs2", EchoPath, nil)
			req.Header.Del("Authorization")
			return req
		}(),
		"bad signature": SignedAs(t, "hs1", own.KeyID, stranger, "GET", "hs2", EchoPath, nil),
		"wrong destination": func() *http.Request {
			req := hs1.SignedRequest(t, "GET", "hs3", EchoPath, nil)
			req.URL.Host = "hs2" // signed for hs3, sent to hs2
			return req
		}(),
		"wrong origin": SignedAs(t, "hs3", own.KeyID, own.PrivateKey, "GET", "hs2", EchoPath, nil),
		"tampered body": func() *http.Request {
			req := hs1.SignedRequest(t, "PUT", "hs2", EchoPath, map[string]int{"n": 1})
			tampered := []byte(`{"n":2}`)
			req.Body, req.ContentLength, req.GetBody = readCloser(tampered), int64(len(tampered)), nil
			return req
		}(),
	}
	for name, req := range refused {
		status, body := hs1.Send(t, req)
		if status != 401 || errcode(body) != "M_UNAUTHORIZED" {
			t.Errorf("%s: %d %s, want 401 M_UNAUTHORIZED", name, status, body)
		}
	}

	// hs1 changes its key. hs3 never saw the old one as current: a request
	// signed with it now is refused (the key expired), one with the new key
	// is accepted.
	old := hs1.RotateKey()
	status, body = hs1.Send(t, SignedAs(t, "hs1", gomatrixserverlib.KeyID(old.ID), old.PrivateKey, "GET", "hs3", EchoPath, nil))
	if status != 401 || errcode(body) != "M_UNAUTHORIZED" {
		t.Fatalf("expired key: %d %s", status, body)
	}
	if status, body := hs1.Send(t, hs1.SignedRequest(t, "GET", "hs3", EchoPath, nil)); status != 200 {
		t.Fatalf("new key: %d %s", status, body)
	}
	// hs2 knew the old key as current: it learns the new one on first use.
	if status, body := hs1.Send(t, hs1.SignedRequest(t, "GET", "hs2", EchoPath, nil)); status != 200 {
		t.Fatalf("new key at hs2: %d %s", status, body)
	}
}

func readCloser(b []byte) *bodyReader { return &bodyReader{bytes.NewReader(b)} }

type bodyReader struct{ *bytes.Reader }

func (bodyReader) Close() error { return nil }

// TestDiscovery: servers are found through well-known delegation and SRV
// records, as the spec orders, with certificates for the names discovery
// says.
func TestDiscovery(t *testing.T) {
	n := NewNetwork(t)
	hs1 := n.Start("hs1")
	deleg := n.Start("deleg.test", WithCertNames("fed.deleg.test"))
	n.ServeWellKnown("deleg.test", `{"m.server": "fed.deleg.test:9000"}`)
	n.Proxy.Route("fed.deleg.test:9000", deleg.FederationAddr())
	srvHS := n.Start("srv.test")
	n.SRV["_matrix-fed._tcp.srv.test"] = []*net.SRV{{Target: "target.srv.test.", Port: 7000}}
	n.Proxy.Route("target.srv.test:7000", srvHS.FederationAddr())

	for _, s := range []*Server{deleg, srvHS} {
		if err := verifyAt(t, hs1, s.Name, signedBy(t, s, `{}`)); err != nil {
			t.Fatalf("keys of %s: %v", s.Name, err)
		}
	}
	tunnels := n.Proxy.Connects()
	for _, want := range []string{"deleg.test:443", "fed.deleg.test:9000", "srv.test:443", "target.srv.test:7000"} {
		if !slices.Contains(tunnels, want) {
			t.Errorf("no tunnel to %s: %v", want, tunnels)
		}
	}
	for _, unwanted := range []string{"deleg.test:8448", "srv.test:8448"} {
		if slices.Contains(tunnels, unwanted) {
			t.Errorf("discovery fell through to %s: %v", unwanted, tunnels)
		}
	}
}

// TestPrivateAddressesRefused: without a proxy, a server only reaches
// loopback addresses when private addresses are allowed.
func TestPrivateAddressesRefused(t *testing.T) {
	n := NewNetwork(t)
	hs1 := n.Start("hs1")
	direct := func(o *federationapi.Options) {
		o.Client.Proxy = func(*http.Request) (*url.URL, error) { return nil, nil }
	}
	strict := n.Start("strict.test", WithFederation(direct), WithFederation(func(o *federationapi.Options) { o.Client.AllowPrivate = false }))
	lenient := n.Start("lenient.test", WithFederation(direct))
	target := spec.ServerName(hs1.FederationAddr()) // 127.0.0.1:<port>
	ctx := context.Background()
	var keys gomatrixserverlib.ServerKeys
	err := strict.Federation.Client.Do(ctx, "GET", target, "/_matrix/key/v2/server", nil, &keys)
	if _, blocked := safenet.IsBlocked(err); !blocked {
		t.Fatalf("strict server reaching %s: %v", target, err)
	}
	if err := lenient.Federation.Client.Do(ctx, "GET", target, "/_matrix/key/v2/server", nil, &keys); err != nil || keys.ServerName != "hs1" {
		t.Fatalf("lenient server reaching %s: %v, %+v", target, err, keys.ServerKeyFields)
	}
}

// TestEventSignatures: the key ring is what checks events from other
// servers (the roomserver's verifier): an event signed by its sender's
// server verifies, one that claims a sender of another server does not.
func TestEventSignatures(t *testing.T) {
	n := NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	ver := gomatrixserverlib.MustGetRoomVersion(gomatrixserverlib.RoomVersionV11)
	build := func(sender string) gomatrixserverlib.PDU {
		t.Helper()
		empty := ""
		proto := gomatrixserverlib.ProtoEvent{
			SenderID: sender, RoomID: "!room:hs2", Type: "m.room.create", StateKey: &empty,
			PrevEvents: []string{}, AuthEvents: []string{}, Depth: 1, Content: []byte(`{"room_version":"11"}`),
		}
		own := hs2.Federation.Own
		pdu, err := ver.NewEventBuilderFromProtoEvent(&proto).Build(time.Now(), "hs2", own.KeyID, own.PrivateKey)
		if err != nil {
			t.Fatal(err)
		}
		return pdu
	}
	userIDForSender := func(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) { return spec.NewUserID(string(s), true) }
	ctx := context.Background()
	if err := gomatrixserverlib.VerifyEventSignatures(ctx, build("@alice:hs2"), hs1.Federation.KeyRing, userIDForSender); err != nil {
		t.Fatalf("event of hs2: %v", err)
	}
	if err := gomatrixserverlib.VerifyEventSignatures(ctx, build("@mallory:hs3"), hs1.Federation.KeyRing, userIDForSender); err == nil {
		t.Fatal("event of an hs3 user signed only by hs2 verified")
	}
}
