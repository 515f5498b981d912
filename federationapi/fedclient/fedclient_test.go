package fedclient

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/safenet"
	"matrixhs/tests/fednet"
)

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now()} }
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// tlsServer is a federation server stand-in: it records what each request
// looked like on arrival.
type tlsServer struct {
	*httptest.Server
	conns atomic.Int32
	hits  atomic.Int32
	mu    sync.Mutex
	seen  []seenRequest
}

type seenRequest struct {
	Host, SNI, Path, Auth string
}

func startTLS(t *testing.T, cert tls.Certificate, h http.HandlerFunc) *tlsServer {
	t.Helper()
	s := &tlsServer{}
	var sni sync.Map // remote addr -> SNI
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		name, _ := sni.Load(r.RemoteAddr)
		s.mu.Lock()
		s.seen = append(s.seen, seenRequest{Host: r.Host, SNI: name.(string), Path: r.URL.RequestURI(), Auth: r.Header.Get("Authorization")})
		s.mu.Unlock()
		h(w, r)
	}))
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.TLS = &tls.Config{
		Certificates: []tls.Certificate{cert},
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			sni.Store(hello.Conn.RemoteAddr().String(), hello.ServerName)
			return nil, nil
		},
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func (s *tlsServer) requests() []seenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seenRequest(nil), s.seen...)
}

func ok(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, body)
	}
}

func newTestClient(t *testing.T, mod func(*Options)) *Client {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(nil)
	opts := Options{ServerName: "origin.test", KeyID: "ed25519:t", PrivateKey: priv, Timeout: 10 * time.Second}
	if mod != nil {
		mod(&opts)
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Transport().CloseIdleConnections)
	return c
}

func TestResolveWithoutLookups(t *testing.T) {
	c := newTestClient(t, func(o *Options) {
		o.SRVResolver = fednet.SRV{}
		o.Proxy = func(*http.Request) (*url.URL, error) { t.Error("no lookup expected"); return nil, nil }
	})
	for name, want := range map[spec.ServerName]Destination{
		"1.2.3.4":          {Addr: "1.2.3.4:8448", Host: "1.2.3.4", TLSName: "1.2.3.4"},
		"1.2.3.4:99":       {Addr: "1.2.3.4:99", Host: "1.2.3.4:99", TLSName: "1.2.3.4"},
		"[::1]":            {Addr: "[::1]:8448", Host: "[::1]", TLSName: "::1"},
		"[::1]:8448":       {Addr: "[::1]:8448", Host: "[::1]:8448", TLSName: "::1"},
		"example.org:8448": {Addr: "example.org:8448", Host: "example.org:8448", TLSName: "example.org"},
		"localhost:1234":   {Addr: "localhost:1234", Host: "localhost:1234", TLSName: "localhost"},
	} {
		got, err := c.Transport().Resolver().Resolve(context.Background(), name)
		if err != nil || len(got) != 1 || got[0] != want {
			t.Errorf("%s: %+v, %v; want %+v", name, got, err, want)
		}
	}
	for _, bad := range []spec.ServerName{"", "a b", "example.org:", "example.org:99999", "[::1", "ex/ample"} {
		if _, err := c.Transport().Resolver().Resolve(context.Background(), bad); err == nil {
			t.Errorf("%q resolved", bad)
		}
	}
}

// TestDiscovery runs the spec's discovery steps against well-known files
// served over TLS through a proxy and a fake DNS.
func TestDiscovery(t *testing.T) {
	ca := fednet.NewCA(t)
	proxy := fednet.NewProxy(t)
	clk := newClock()
	var wkHits atomic.Int32
	wellKnown := map[string]string{
		"deleg-port.test":  `{"m.server": "target.test:9000"}`,
		"deleg-ip.test":    `{"m.server": "10.1.2.3"}`,
		"deleg-srv.test":   `{"m.server": "srvtarget.test"}`,
		"deleg-plain.test": `{"m.server": "plain.test"}`,
		"bad.test":         `{"m.server": 5}`,
	}
	wk := startTLS(t, ca.Issue(t, "deleg-port.test", "deleg-ip.test", "deleg-srv.test", "deleg-plain.test", "bad.test"),
		func(w http.ResponseWriter, r *http.Request) {
			wkHits.Add(1)
			body, found := wellKnown[strings.Split(r.Host, ":")[0]]
			if r.URL.Path != "/.well-known/matrix/server" || !found {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Cache-Control", "max-age=600")
			fmt.Fprint(w, body)
		})
	for host := range wellKnown {
		proxy.Route(host+":443", wk.Listener.Addr().String())
	}
	srv := fednet.SRV{
		"_matrix-fed._tcp.srvtarget.test": {{Target: "fed.srvtarget.test.", Port: 8449}},
		"_matrix-fed._tcp.srv.test":       {{Target: "a.srv.test.", Port: 1}, {Target: "b.srv.test", Port: 2}},
		"_matrix._tcp.legacy.test":        {{Target: "old.legacy.test.", Port: 4444}},
		"_matrix-fed._tcp.both.test":      {{Target: "new.both.test.", Port: 5555}},
		"_matrix._tcp.both.test":          {{Target: "old.both.test.", Port: 6666}},
		"_matrix-fed._tcp.dot.test":       {{Target: ".", Port: 0}},
	}
	c := newTestClient(t, func(o *Options) {
		o.Proxy, o.RootCAs, o.SRVResolver, o.Now = proxy.Func(), ca.Pool, srv, clk.Now
	})
	r := c.Transport().Resolver()
	for name, want := range map[spec.ServerName][]Destination{
		// 3.2: delegated name with port.
		"deleg-port.test": {{Addr: "target.test:9000", Host: "target.test:9000", TLSName: "target.test"}},
		// 3.1: delegated IP literal.
		"deleg-ip.test": {{Addr: "10.1.2.3:8448", Host: "10.1.2.3", TLSName: "10.1.2.3"}},
		// 3.3: SRV of the delegated name; Host and certificate stay the delegated name.
		"deleg-srv.test": {{Addr: "fed.srvtarget.test:8449", Host: "srvtarget.test", TLSName: "srvtarget.test"}},
		// 3.5: the delegated name on 8448.
		"deleg-plain.test": {{Addr: "plain.test:8448", Host: "plain.test", TLSName: "plain.test"}},
		// An invalid well-known answer is skipped.
		"bad.test": {{Addr: "bad.test:8448", Host: "bad.test", TLSName: "bad.test"}},
		// 4: no well-known (the proxy has no route): SRV, every target in order.
		"srv.test": {{Addr: "a.srv.test:1", Host: "srv.test", TLSName: "srv.test"}, {Addr: "b.srv.test:2", Host: "srv.test", TLSName: "srv.test"}},
		// 5: the deprecated _matrix._tcp record, only without _matrix-fed.
		"legacy.test": {{Addr: "old.legacy.test:4444", Host: "legacy.test", TLSName: "legacy.test"}},
		"both.test":   {{Addr: "new.both.test:5555", Host: "both.test", TLSName: "both.test"}},
		// 6: nothing: port 8448; a "." target means no service.
		"none.test": {{Addr: "none.test:8448", Host: "none.test", TLSName: "none.test"}},
		"dot.test":  {{Addr: "dot.test:8448", Host: "dot.test", TLSName: "dot.test"}},
	} {
		got, err := r.Resolve(context.Background(), name)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: %+v, %v; want %+v", name, got, err, want)
		}
	}

	// Answers are cached for their max-age (600s) and fetched again after.
	hits := wkHits.Load()
	r.Resolve(context.Background(), "deleg-port.test")
	clk.Advance(9 * time.Minute)
	r.Resolve(context.Background(), "deleg-port.test")
	if wkHits.Load() != hits {
		t.Fatalf("well-known fetched again within max-age")
	}
	clk.Advance(2 * time.Minute)
	wellKnown["deleg-port.test"] = `{"m.server": "moved.test:9001"}`
	got, _ := r.Resolve(context.Background(), "deleg-port.test")
	if wkHits.Load() != hits+1 || got[0].Addr != "moved.test:9001" {
		t.Fatalf("after max-age: hits %d (was %d), %+v", wkHits.Load(), hits, got)
	}
	// A missing well-known (host down) is retried after two minutes, an
	// invalid one after an hour.
	r.Resolve(context.Background(), "down.test")
	connects := len(proxy.Connects())
	r.Resolve(context.Background(), "down.test")
	if len(proxy.Connects()) != connects {
		t.Fatalf("failed well-known asked again at once")
	}
	clk.Advance(3 * time.Minute)
	r.Resolve(context.Background(), "down.test")
	if len(proxy.Connects()) != connects+1 {
		t.Fatalf("failed well-known not asked again after 3 minutes")
	}
	hits = wkHits.Load()
	clk.Advance(30 * time.Minute)
	r.Resolve(context.Background(), "bad.test")
	if wkHits.Load() != hits {
		t.Fatalf("invalid well-known asked again within the hour")
	}
}

func TestCachePeriod(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		headers map[string]string
		want    time.Duration
	}{
		{nil, 24 * time.Hour},
		{map[string]string{"Cache-Control": "public, max-age=7200"}, 2 * time.Hour},
		{map[string]string{"Cache-Control": "max-age=10"}, 5 * time.Minute},
		{map[string]string{"Cache-Control": "max-age=999999999"}, 48 * time.Hour},
		{map[string]string{"Cache-Control": "no-store"}, 5 * time.Minute},
		{map[string]string{"Expires": now.Add(3 * time.Hour).Format(http.TimeFormat)}, 3 * time.Hour},
		{map[string]string{"Expires": now.Add(3 * time.Hour).Format(http.TimeFormat), "Cache-Control": "max-age=3600"}, time.Hour},
		{map[string]string{"Expires": "garbage"}, 24 * time.Hour},
	} {
		h := http.Header{}
		for k, v := range tc.headers {
			h.Set(k, v)
		}
		if got := cachePeriod(h, now); got != tc.want {
			t.Errorf("%v: %s, want %s", tc.headers, got, tc.want)
		}
	}
}

// TestSignedRequestThroughDiscovery: a request to a server name reaches
// the SRV target through the proxy, with the Host header, SNI and
// certificate of the server name and an X-Matrix signature that verifies.
func TestSignedRequestThroughDiscovery(t *testing.T) {
	ca := fednet.NewCA(t)
	proxy := fednet.NewProxy(t)
	s := startTLS(t, ca.Issue(t, "hs1"), ok(`{"server":{"name":"x"}}`))
	proxy.Route("fed.hs1.test:8443", s.Listener.Addr().String())
	c := newTestClient(t, func(o *Options) {
		o.Proxy, o.RootCAs = proxy.Func(), ca.Pool
		o.SRVResolver = fednet.SRV{"_matrix-fed._tcp.hs1": {{Target: "fed.hs1.test.", Port: 8443}}}
	})
	var out struct {
		Server struct{ Name string } `json:"server"`
	}
	if err := c.Do(context.Background(), "GET", "hs1", "/_matrix/federation/v1/version?x=%2F", nil, &out); err != nil || out.Server.Name != "x" {
		t.Fatalf("Do: %v, %+v", err, out)
	}
	if got := proxy.Connects(); fmt.Sprint(got) != "[hs1:443 fed.hs1.test:8443]" {
		t.Fatalf("tunnels = %v", got)
	}
	seen := s.requests()[0]
	if seen.Host != "hs1" || seen.SNI != "hs1" || seen.Path != "/_matrix/federation/v1/version?x=%2F" {
		t.Fatalf("request = %+v", seen)
	}
	// The X-Matrix header signs method, URI, origin and destination.
	scheme, origin, dest, keyID, sig := fclient.ParseAuthorization(seen.Auth)
	if scheme != "X-Matrix" || origin != "origin.test" || dest != "hs1" || keyID != "ed25519:t" || sig == "" {
		t.Fatalf("authorization = %q", seen.Auth)
	}
	signed := fmt.Sprintf(`{"destination":"hs1","method":"GET","origin":"origin.test","uri":"/_matrix/federation/v1/version?x=%%2F","signatures":{"origin.test":{"ed25519:t":"%s"}}}`, sig)
	if err := gomatrixserverlib.VerifyJSON("origin.test", "ed25519:t", c.key.Public().(ed25519.PublicKey), []byte(signed)); err != nil {
		t.Fatalf("signature does not verify: %v", err)
	}
	// A second request reuses the connection.
	if err := c.Do(context.Background(), "GET", "hs1", "/_matrix/federation/v1/version", nil, nil); err != nil {
		t.Fatal(err)
	}
	if n := s.conns.Load(); n != 1 {
		t.Fatalf("%d connections for two requests", n)
	}
}

func TestUnreachableTargetFallsThrough(t *testing.T) {
	ca := fednet.NewCA(t)
	proxy := fednet.NewProxy(t)
	s := startTLS(t, ca.Issue(t, "hs2"), ok(`{}`))
	proxy.Route("b.hs2.test:2", s.Listener.Addr().String()) // a.hs2.test:1 has no route
	c := newTestClient(t, func(o *Options) {
		o.Proxy, o.RootCAs = proxy.Func(), ca.Pool
		o.SRVResolver = fednet.SRV{"_matrix-fed._tcp.hs2": {{Target: "a.hs2.test", Port: 1}, {Target: "b.hs2.test", Port: 2}}}
	})
	if err := c.Do(context.Background(), "PUT", "hs2", "/_matrix/federation/v1/send/1", map[string]any{"pdus": []any{}}, nil); err != nil {
		t.Fatal(err)
	}
	if s.hits.Load() != 1 {
		t.Fatalf("hits = %d", s.hits.Load())
	}
}

func TestRemoteErrorsAndLimits(t *testing.T) {
	ca := fednet.NewCA(t)
	s := startTLS(t, ca.Issue(t, "127.0.0.1"), func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			fmt.Fprint(w, `{"x":"`+strings.Repeat("a", 5000)+`"}`)
			return
		}
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"errcode":"M_FORBIDDEN","error":"go away"}`)
	})
	c := newTestClient(t, func(o *Options) {
		o.AllowPrivate, o.RootCAs, o.MaxResponseBytes = true, ca.Pool, 1000
		o.Proxy = func(*http.Request) (*url.URL, error) { return nil, nil }
	})
	name := spec.ServerName(s.Listener.Addr().String())
	err := c.Do(context.Background(), "GET", name, "/x", nil, nil)
	var re *RemoteError
	if !errors.As(err, &re) || re.Errcode != "M_FORBIDDEN" || re.Message != "go away" || StatusCode(err) != 403 {
		t.Fatalf("err = %v", err)
	}
	// gomatrixserverlib's typed calls report their status the same way.
	_, err = c.LookupProfile(context.Background(), c.ServerName(), name, "@a:b", "")
	if StatusCode(err) != 403 {
		t.Fatalf("typed call: %v", err)
	}
	var out map[string]string
	if err := c.Do(context.Background(), "GET", name, "/big", nil, &out); !errors.Is(err, ErrResponseTooLarge) {
		t.Fatalf("oversized answer: %v", err)
	}
}

func TestTLSIsVerified(t *testing.T) {
	ca, other := fednet.NewCA(t), fednet.NewCA(t)
	untrusted := startTLS(t, other.Issue(t, "127.0.0.1"), ok(`{}`))
	wrongName := startTLS(t, ca.Issue(t, "elsewhere.test"), ok(`{}`))
	c := newTestClient(t, func(o *Options) {
		o.AllowPrivate, o.RootCAs = true, ca.Pool
		o.Proxy = func(*http.Request) (*url.URL, error) { return nil, nil }
	})
	for _, s := range []*tlsServer{untrusted, wrongName} {
		err := c.Do(context.Background(), "GET", spec.ServerName(s.Listener.Addr().String()), "/x", nil, nil)
		var certErr *tls.CertificateVerificationError
		if !errors.As(err, &certErr) {
			t.Errorf("err = %v, want a certificate error", err)
		}
		if s.hits.Load() != 0 {
			t.Errorf("request reached a server whose certificate failed")
		}
	}
}

// TestPrivateAddressesRefused: loopback and private addresses are refused
// before connecting, by IP literal or by a name resolving there, directly
// or through a proxy, unless private addresses are allowed.
func TestPrivateAddressesRefused(t *testing.T) {
	ca := fednet.NewCA(t)
	s := startTLS(t, ca.Issue(t, "127.0.0.1", "private.test"), ok(`{}`))
	_, port, _ := net.SplitHostPort(s.Listener.Addr().String())
	hosts := fednet.Hosts{"private.test": {netip.MustParseAddr("127.0.0.1")}}
	direct := func(*http.Request) (*url.URL, error) { return nil, nil }
	names := []spec.ServerName{spec.ServerName("127.0.0.1:" + port), spec.ServerName("private.test:" + port)}

	refusing := newTestClient(t, func(o *Options) { o.RootCAs, o.HostResolver, o.Proxy = ca.Pool, hosts, direct })
	for _, name := range names {
		err := refusing.Do(context.Background(), "GET", name, "/x", nil, nil)
		if _, blocked := safenet.IsBlocked(err); !blocked {
			t.Errorf("%s: err = %v, want refused", name, err)
		}
	}
	proxy := fednet.NewProxy(t)
	proxy.Route("127.0.0.1:"+port, s.Listener.Addr().String())
	proxied := newTestClient(t, func(o *Options) { o.RootCAs, o.Proxy = ca.Pool, proxy.Func() })
	if err := proxied.Do(context.Background(), "GET", names[0], "/x", nil, nil); err == nil || len(proxy.Connects()) != 0 {
		t.Errorf("proxied private IP literal: err %v, tunnels %v", err, proxy.Connects())
	}
	if n := s.hits.Load(); n != 0 {
		t.Fatalf("refused requests reached the server %d times", n)
	}

	allowing := newTestClient(t, func(o *Options) {
		o.AllowPrivate, o.RootCAs, o.HostResolver, o.Proxy = true, ca.Pool, hosts, direct
	})
	for _, name := range names {
		if err := allowing.Do(context.Background(), "GET", name, "/x", nil, nil); err != nil {
			t.Errorf("%s with private addresses allowed: %v", name, err)
		}
	}
}

func TestIPv6Literal(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	ln.Close()
	ca := fednet.NewCA(t)
	s := httptest.NewUnstartedServer(ok(`{"ok":true}`))
	s.Listener, _ = net.Listen("tcp", "[::1]:0")
	var host atomic.Value
	s.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host.Store(r.Host)
		fmt.Fprint(w, `{"ok":true}`)
	})
	s.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "::1")}}
	s.StartTLS()
	defer s.Close()
	c := newTestClient(t, func(o *Options) {
		o.AllowPrivate, o.RootCAs = true, ca.Pool
		o.Proxy = func(*http.Request) (*url.URL, error) { return nil, nil }
	})
	name := spec.ServerName(s.Listener.Addr().String()) // "[::1]:port"
	var out struct{ OK bool }
	if err := c.Do(context.Background(), "GET", name, "/x", nil, &out); err != nil || !out.OK {
		t.Fatalf("%s: %v", name, err)
	}
	if host.Load() != string(name) {
		t.Fatalf("Host = %v, want %s", host.Load(), name)
	}
}
