// Package fednet is the network of federation tests: a certificate
// authority made in the test (so servers present certificates that only
// the test trusts), an HTTP CONNECT proxy that maps server names to
// loopback ports (the route Complement's HTTPS_PROXY takes), and fake DNS
// (SRV records and host addresses).
package fednet

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"testing"
	"time"
)

// CA is a certificate authority that exists for one test.
type CA struct {
	cert *x509.Certificate
	key  crypto.Signer
	// PEM is the CA certificate, as MATRIX_FEDERATION_CA would name it.
	PEM []byte
	// Pool holds just this CA.
	Pool *x509.CertPool
}

// NewCA makes a CA.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "matrixhs test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{cert: cert, key: key, Pool: pool, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Issue makes a server certificate for names (host names or IP addresses).
func (ca *CA) Issue(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	certPEM, keyPEM := ca.IssuePEM(t, KeyPKCS8, names...)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// KeyFormat is how IssuePEM writes the private key.
type KeyFormat int

// The private key formats servers are given certificates in.
const (
	KeyPKCS8 KeyFormat = iota // "PRIVATE KEY" (ECDSA)
	KeySEC1                   // "EC PRIVATE KEY"
	KeyPKCS1                  // "RSA PRIVATE KEY"
)

// IssuePEM makes a server certificate for names and returns its PEM chain
// (leaf first, then the CA) and its private key in the given format.
func (ca *CA) IssuePEM(t testing.TB, format KeyFormat, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip, err := netip.ParseAddr(n); err == nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	var pub crypto.PublicKey
	var keyBlock *pem.Block
	switch format {
	case KeyPKCS1:
		key := rsaKey(t)
		pub, keyBlock = key.Public(), &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}
	default:
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		pub = key.Public()
		if format == KeySEC1 {
			der, err := x509.MarshalECPrivateKey(key)
			if err != nil {
				t.Fatal(err)
			}
			keyBlock = &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
		} else {
			der, err := x509.MarshalPKCS8PrivateKey(key)
			if err != nil {
				t.Fatal(err)
			}
			keyBlock = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM = append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), ca.PEM...)
	return certPEM, pem.EncodeToMemory(keyBlock)
}

// Proxy is an HTTP CONNECT proxy for tests: it opens tunnels only to the
// host:port it has routes for, each to a local address. Clients that
// name themselves (FuncFor) can be partitioned from hosts (Cut).
type Proxy struct {
	ln  net.Listener
	srv *http.Server

	mu       sync.Mutex
	routes   map[string]string // "hs1:8448" or "hs1:*" -> "127.0.0.1:34567"
	connects []string
	cuts     map[link]bool
	tunnels  map[*tunnel]bool
}

// link is a pair of hosts, in either order.
type link struct{ a, b string }

func linkOf(a, b string) link {
	if a > b {
		a, b = b, a
	}
	return link{a, b}
}

// tunnel is an open CONNECT tunnel: from the named client to a host.
type tunnel struct {
	from, to string
	conns    []io.Closer
}

// NewProxy starts a proxy on loopback, stopped when the test ends.
func NewProxy(t testing.TB) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, routes: map[string]string{}, cuts: map[link]bool{}, tunnels: map[*tunnel]bool{}}
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ReadHeaderTimeout: 10 * time.Second}
	go p.srv.Serve(ln)
	t.Cleanup(func() { p.srv.Close() })
	return p
}

// Route sends tunnels for hostPort ("hs1:8448", or "hs1:*" for any port)
// to target.
func (p *Proxy) Route(hostPort, target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.routes[hostPort] = target
}

// URL is the proxy's address, as HTTPS_PROXY would give it.
func (p *Proxy) URL() *url.URL { return &url.URL{Scheme: "http", Host: p.ln.Addr().String()} }

// Func is a Proxy function for http.Transport that uses this proxy for
// every request.
func (p *Proxy) Func() func(*http.Request) (*url.URL, error) {
	u := p.URL()
	return func(*http.Request) (*url.URL, error) { return u, nil }
}

// FuncFor is Func for the client of host from: its tunnels are known to
// come from there (the proxy URL carries the name, sent as
// Proxy-Authorization), so that Cut applies to them.
func (p *Proxy) FuncFor(from string) func(*http.Request) (*url.URL, error) {
	u := p.URL()
	u.User = url.User(from)
	return func(*http.Request) (*url.URL, error) { return u, nil }
}

// Cut partitions hosts a and b (names without ports) from each other:
// tunnels between them (asked for by clients of FuncFor) are refused, and
// open ones are closed, until Heal.
func (p *Proxy) Cut(a, b string) {
	p.mu.Lock()
	p.cuts[linkOf(a, b)] = true
	var closing []*tunnel
	for tn := range p.tunnels {
		if linkOf(tn.from, tn.to) == linkOf(a, b) {
			closing = append(closing, tn)
			delete(p.tunnels, tn)
		}
	}
	p.mu.Unlock()
	for _, tn := range closing {
		for _, c := range tn.conns {
			c.Close()
		}
	}
}

// Heal ends a Cut between a and b.
func (p *Proxy) Heal(a, b string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.cuts, linkOf(a, b))
}

func (p *Proxy) isCut(tn *tunnel) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return tn.from != "" && p.cuts[linkOf(tn.from, tn.to)]
}

// open registers a tunnel unless its hosts are cut from each other.
func (p *Proxy) open(tn *tunnel) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if tn.from != "" && p.cuts[linkOf(tn.from, tn.to)] {
		return false
	}
	p.tunnels[tn] = true
	return true
}

func (p *Proxy) closed(tn *tunnel) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.tunnels, tn)
}

// Connects lists the host:port of the tunnels asked for, in order.
func (p *Proxy) Connects() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.connects...)
}

func (p *Proxy) target(hostPort string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.connects = append(p.connects, hostPort)
	if t, ok := p.routes[hostPort]; ok {
		return t, true
	}
	host, _, _ := net.SplitHostPort(hostPort)
	t, ok := p.routes[host+":*"]
	return t, ok
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "only CONNECT", http.StatusMethodNotAllowed)
		return
	}
	target, ok := p.target(r.Host)
	if !ok {
		http.Error(w, "no route to "+r.Host, http.StatusBadGateway)
		return
	}
	host, _, _ := net.SplitHostPort(r.Host)
	tn := &tunnel{from: clientName(r), to: host}
	if p.isCut(tn) {
		http.Error(w, "network partitioned", http.StatusBadGateway)
		return
	}
	upstream, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		upstream.Close()
		return
	}
	tn.conns = []io.Closer{conn, upstream}
	if !p.open(tn) {
		conn.Write([]byte("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"))
		conn.Close()
		upstream.Close()
		return
	}
	defer p.closed(tn)
	if _, err := conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		conn.Close()
		upstream.Close()
		return
	}
	// The hijacked reader may hold bytes the client sent after CONNECT.
	go splice(upstream, buf.Reader, conn)
	splice(conn, upstream, upstream)
}

// clientName is the name a FuncFor client gave in Proxy-Authorization
// ("" for anonymous clients).
func clientName(r *http.Request) string {
	auth := r.Header.Get("Proxy-Authorization")
	if auth == "" {
		return ""
	}
	probe := &http.Request{Header: http.Header{"Authorization": {auth}}}
	name, _, _ := probe.BasicAuth()
	return name
}

// splice copies src to dst, then closes both ends it was given.
func splice(dst io.WriteCloser, src io.Reader, srcCloser io.Closer) {
	io.Copy(dst, src)
	dst.Close()
	srcCloser.Close()
}

// SRV is a fake SRV resolver: records by "_service._proto.name".
type SRV map[string][]*net.SRV

// LookupSRV answers from the map; a missing name is NXDOMAIN.
func (s SRV) LookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	key := fmt.Sprintf("_%s._%s.%s", service, proto, name)
	if recs, ok := s[key]; ok {
		return key, recs, nil
	}
	return "", nil, &net.DNSError{Err: "no such host", Name: key, IsNotFound: true}
}

// Hosts is a fake host resolver: addresses by name.
type Hosts map[string][]netip.Addr

// LookupNetIP answers from the map; a missing name is NXDOMAIN.
func (h Hosts) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if ips, ok := h[host]; ok {
		return ips, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func rsaKey(t testing.TB) *rsa.PrivateKey {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return key
}
