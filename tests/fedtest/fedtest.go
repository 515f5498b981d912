// Package fedtest starts several in-process homeservers that federate with
// each other, for multi-server tests.
//
// Each server has its own server name ("hs1", "hs2", … as in Complement),
// data dir, signing key, and a federation TLS listener on a loopback port
// with a certificate from a CA made for the test. Server names need no
// DNS: every server's federation client trusts the test CA, is allowed
// private addresses and sends everything through the network's CONNECT
// proxy (the HTTPS_PROXY route Complement's servers take), which tunnels
// "hsN:<any port>" to hsN's listener. Discovery runs for real: a name
// without a port has its /.well-known/matrix/server asked (on port 443,
// which also reaches the server: it answers 404, so there is no
// delegation), then its SRV records (from the network's fake DNS, empty
// unless a test adds some), then port 8448. Tests can add routes, SRV
// records and well-known files to try other discovery paths.
//
//	net := fedtest.NewNetwork(t)
//	hs1, hs2 := net.Start("hs1"), net.Start("hs2")
//	status, body := hs1.Send(t, hs1.SignedRequest(t, "GET", "hs2", "/_matrix/federation/v1/…", nil))
package fedtest

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/cmd/homeserver/server"
	"matrixhs/config"
	"matrixhs/federationapi"
	"matrixhs/federationapi/fedclient"
	"matrixhs/federationapi/keyring"
	"matrixhs/federationapi/sender"
	"matrixhs/internal/httputil"
	"matrixhs/tests/fednet"
	"matrixhs/tests/testserver"
)

// Network is a set of servers that reach each other.
type Network struct {
	t testing.TB
	// CA issues the servers' certificates; their clients trust it.
	CA *fednet.CA
	// Proxy carries all federation traffic; Route adds destinations.
	Proxy *fednet.Proxy
	// SRV is the fake DNS the servers look SRV records up in; add records
	// before the lookup (results are cached ten minutes).
	SRV fednet.SRV

	servers []*Server
}

// NewNetwork makes an empty network; its servers stop when the test ends.
func NewNetwork(t testing.TB) *Network {
	t.Helper()
	return &Network{t: t, CA: fednet.NewCA(t), Proxy: fednet.NewProxy(t), SRV: fednet.SRV{}}
}

// Server is one homeserver of the network.
type Server struct {
	*testserver.Server
	// Name is its server name.
	Name spec.ServerName
	net  *Network
	cfg  settings
}

type settings struct {
	env       map[string]string
	certNames []string
	notaries  []keyring.Notary
	fed       []func(*federationapi.Options)
	sender    sender.Options
}

// Option tunes one server.
type Option func(*settings)

// WithEnv sets a MATRIX_* variable of the server's config.
func WithEnv(key, value string) Option {
	return func(s *settings) { s.env[key] = value }
}

// WithCertNames adds names (or IP addresses) to the server's certificate,
// for delegation tests.
func WithCertNames(names ...string) Option {
	return func(s *settings) { s.certNames = append(s.certNames, names...) }
}

// WithNotary makes the server ask n for other servers' keys first,
// checking its answers with n's current key.
func WithNotary(n *Server) Option {
	return func(s *settings) {
		s.notaries = append(s.notaries, keyring.Notary{
			ServerName: n.Name,
			Keys:       map[gomatrixserverlib.KeyID]ed25519.PublicKey{n.Federation.Own.KeyID: n.Federation.Own.PublicKey()},
		})
	}
}

// WithFederation edits the server's federation options last.
func WithFederation(f func(*federationapi.Options)) Option {
	return func(s *settings) { s.fed = append(s.fed, f) }
}

// WithSender tunes the server's outbound federation queue (e.g. a short
// backoff, so that servers find each other again soon after a partition).
func WithSender(o sender.Options) Option {
	return func(s *settings) { s.sender = o }
}

// Start starts a server named name on the network.
func (n *Network) Start(name string, opts ...Option) *Server {
	n.t.Helper()
	s := &Server{Name: spec.ServerName(name), net: n, cfg: settings{env: map[string]string{}}}
	for _, o := range opts {
		o(&s.cfg)
	}
	s.start(n.t.TempDir())
	n.servers = append(n.servers, s)
	return s
}

// closeIdle closes the idle federation connections of every server: a
// server shutting down waits for its HTTP/2 clients to hang up (up to a
// second after its GOAWAY) unless they already have.
func (n *Network) closeIdle() {
	for _, s := range n.servers {
		if s.Server != nil {
			s.Federation.Client.Transport().CloseIdleConnections()
		}
	}
}

// Stop stops the server (idempotent).
func (s *Server) Stop() {
	s.net.closeIdle()
	s.Server.Stop()
}

// StartN starts servers hs1 … hsN.
func (n *Network) StartN(count int, opts ...Option) []*Server {
	n.t.Helper()
	out := make([]*Server, count)
	for i := range out {
		out[i] = n.Start("hs"+strconv.Itoa(i+1), opts...)
	}
	return out
}

func (s *Server) start(dataDir string) {
	t := s.net.t
	t.Helper()
	cert := s.net.CA.Issue(t, append([]string{hostOf(s.Name), "127.0.0.1", "localhost"}, s.cfg.certNames...)...)
	fed := federationapi.Options{
		Listen:      "127.0.0.1:0",
		Certificate: &cert,
		Notaries:    s.cfg.notaries,
		// Tests change keys and expect the change to be seen at once.
		KeyRefetchInterval: time.Millisecond,
		Client: fedclient.Options{
			RootCAs:      s.net.CA.Pool,
			AllowPrivate: true,
			Proxy:        s.net.Proxy.FuncFor(hostOf(s.Name)),
			SRVResolver:  s.net.SRV,
			HostResolver: fednet.Hosts{},
			Timeout:      20 * time.Second,
		},
	}
	for _, f := range s.cfg.fed {
		f(&fed)
	}
	env := map[string]string{config.EnvServerName: string(s.Name)}
	for k, v := range s.cfg.env {
		env[k] = v
	}
	s.Server = testserver.StartInWith(t, dataDir, env, server.Options{Federation: fed, Sender: s.cfg.sender})
	t.Cleanup(s.net.closeIdle) // runs before the server's own cleanup stops it
	s.net.Proxy.Route(hostOf(s.Name)+":*", s.FederationAddr())
}

// Cut partitions a and b: no request of one reaches the other (requests
// in flight fail) until Heal. Other servers still reach both.
func (n *Network) Cut(a, b *Server) {
	n.Proxy.Cut(hostOf(a.Name), hostOf(b.Name))
}

// Heal ends a Cut between a and b.
func (n *Network) Heal(a, b *Server) {
	n.Proxy.Heal(hostOf(a.Name), hostOf(b.Name))
}

// Isolate cuts s from every other server of the network; the returned
// func heals those cuts.
func (n *Network) Isolate(s *Server) (heal func()) {
	var others []*Server
	for _, o := range n.servers {
		if o != s {
			others = append(others, o)
			n.Cut(s, o)
		}
	}
	return func() {
		for _, o := range others {
			n.Heal(s, o)
		}
	}
}

// hostOf is a server name without its port.
func hostOf(name spec.ServerName) string {
	host, _, _ := spec.ParseAndValidateServerName(name)
	return host
}

// Restart stops the server and starts it again on the same data dir (and
// new ports, which the proxy follows).
func (s *Server) Restart() {
	s.net.t.Helper()
	s.Stop()
	s.start(s.DataDir)
}

// RotateKey restarts the server with a new signing key: the old one is
// published as expired from now on.
func (s *Server) RotateKey() (old *config.SigningKey) {
	s.net.t.Helper()
	old = s.SigningKey
	s.Stop()
	if err := os.Remove(s.Config.Server.SigningKeyPath); err != nil {
		s.net.t.Fatal(err)
	}
	s.start(s.DataDir)
	return old
}

// SignedRequest is a federation request from s to destination, signed
// with s's key, as s's client would send it.
func (s *Server) SignedRequest(t testing.TB, method string, destination spec.ServerName, path string, body any) *http.Request {
	t.Helper()
	req, err := s.Federation.Client.NewRequest(context.Background(), method, destination, path, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// SignedAs is a request signed as origin with any key: for requests that
// must be refused.
func SignedAs(t testing.TB, origin spec.ServerName, keyID gomatrixserverlib.KeyID, key ed25519.PrivateKey,
	method string, destination spec.ServerName, path string, body any) *http.Request {
	t.Helper()
	fr := fclient.NewFederationRequest(method, origin, destination, path)
	if body != nil {
		if err := fr.SetContent(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := fr.Sign(origin, keyID, key); err != nil {
		t.Fatal(err)
	}
	req, err := fr.HTTPRequest()
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// Send sends req (a matrix:// URL; its host is the server name it goes
// to) through s's federation transport and returns the status and body.
func (s *Server) Send(t testing.TB, req *http.Request) (int, []byte) {
	t.Helper()
	resp, err := s.Federation.Client.HTTPClient().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// ServeWellKnown serves /.well-known/matrix/server for host (on its port
// 443) with body.
func (n *Network) ServeWellKnown(host, body string) {
	n.t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/matrix/server" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{n.CA.Issue(n.t, host)}}
	srv.StartTLS()
	n.t.Cleanup(srv.Close)
	n.Proxy.Route(host+":443", srv.Listener.Addr().String())
}

// EchoRoute is an authenticated federation endpoint for tests
// (GET and PUT): it answers {"origin": …, "body": …}. Add it to a server
// with WithFederation(fedtest.EchoRoute).
func EchoRoute(o *federationapi.Options) {
	o.ExtraRoutes = func(rt *httputil.Router, api *federationapi.API) {
		rt.Handle(EchoPath, api.Auth.Handler(func(r *http.Request, origin spec.ServerName) (any, error) {
			body, _ := io.ReadAll(r.Body)
			return map[string]any{"origin": origin, "body": json.RawMessage(orEmpty(body))}, nil
		}), http.MethodGet, http.MethodPut)
	}
}

// EchoPath is EchoRoute's path.
const EchoPath = "/_matrix/federation/unstable/org.matrixhs.fedtest/echo"

func orEmpty(b []byte) []byte {
	if len(b) == 0 {
		return []byte("null")
	}
	return b
}
