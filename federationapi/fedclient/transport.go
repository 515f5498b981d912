package fedclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/safenet"
)

// maxTransports bounds the per-destination transports kept (each holds
// its idle connections); the least recently used is dropped beyond it.
const maxTransports = 512

// ErrDisabled is the error of every request when federation is off.
var ErrDisabled = errors.New("federation is disabled on this server")

// ErrResponseTooLarge is returned when reading a response body past the
// transport's limit.
var ErrResponseTooLarge = errors.New("federation response too large")

// Transport is the http.RoundTripper of outbound federation. It serves
// URLs of the schemes matrix:// and matrix-federation:// (the host is a
// server name, resolved by server discovery) and plain https:// (well-known
// files, redirects). Connections are TLS, verified against the configured
// roots with the name discovery says the certificate must carry; each
// such name has its own pool of reused connections. Dialled addresses are
// vetted by the address filter unless they are a proxy's.
type Transport struct {
	resolver    *Resolver
	dialer      *safenet.Dialer
	filter      *safenet.Filter
	proxy       func(*http.Request) (*url.URL, error)
	plainDialer net.Dialer
	rootCAs     *x509.CertPool
	maxResponse int64
	disabled    bool

	mu         sync.Mutex
	transports map[string]*pooled
	// proxyAddrs are the host:port of proxies in use: the admin chose them,
	// so they are dialled even on private addresses.
	proxyAddrs sync.Map
}

type pooled struct {
	*http.Transport
	lastUsed time.Time
}

func newTransport(opts Options) *Transport {
	filter := opts.Filter
	if filter == nil && opts.AllowPrivate {
		filter = safenet.AllowAll()
	}
	proxy := opts.Proxy
	if proxy == nil {
		proxy = http.ProxyFromEnvironment
	}
	t := &Transport{
		dialer:      safenet.NewDialerWith(filter, opts.DialTimeout, opts.HostResolver),
		filter:      filter,
		proxy:       proxy,
		plainDialer: net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 30 * time.Second},
		rootCAs:     opts.RootCAs,
		maxResponse: opts.MaxResponseBytes,
		disabled:    opts.Disabled,
		transports:  map[string]*pooled{},
	}
	wellKnown := &http.Client{
		Transport: t,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= wellKnownRedirects {
				return fmt.Errorf("stopped after %d redirects", wellKnownRedirects)
			}
			if req.URL.Scheme != "https" {
				return fmt.Errorf("redirect to non-https URL %s", req.URL.Redacted())
			}
			return nil
		},
	}
	t.resolver = newResolver(opts.SRVResolver, wellKnown, opts.Now)
	return t
}

// Resolver is the transport's server discovery.
func (t *Transport) Resolver() *Resolver { return t.resolver }

// RoundTrip sends req to the destinations of its host in turn until one
// answers.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.disabled {
		closeBody(req)
		return nil, ErrDisabled
	}
	var dests []Destination
	switch req.URL.Scheme {
	case "matrix", "matrix-federation":
		var err error
		if dests, err = t.resolver.Resolve(req.Context(), spec.ServerName(req.URL.Host)); err != nil {
			closeBody(req)
			return nil, err
		}
	case "https":
		port := req.URL.Port()
		if port == "" {
			port = "443"
		}
		dests = []Destination{{Addr: net.JoinHostPort(req.URL.Hostname(), port), Host: req.URL.Host, TLSName: req.URL.Hostname()}}
	default:
		closeBody(req)
		return nil, fmt.Errorf("federation transport: unsupported URL scheme %q", req.URL.Scheme)
	}
	var errs []error
	for i, d := range dests {
		out := req.Clone(req.Context())
		out.URL.Scheme, out.URL.Host, out.Host = "https", d.Addr, d.Host
		if i > 0 && req.Body != nil && req.Body != http.NoBody {
			if req.GetBody == nil {
				break // the body is spent and cannot be sent again
			}
			body, err := req.GetBody()
			if err != nil {
				errs = append(errs, err)
				break
			}
			out.Body = body
		}
		resp, err := t.transportFor(d.TLSName).RoundTrip(out)
		if err == nil {
			return t.limit(resp)
		}
		errs = append(errs, fmt.Errorf("%s: %w", d.Addr, err))
		if req.Context().Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("reaching %s: %w", req.URL.Host, errors.Join(errs...))
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// transportFor is the connection pool for servers whose certificate must
// be valid for tlsName.
func (t *Transport) transportFor(tlsName string) *http.Transport {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if p, ok := t.transports[tlsName]; ok {
		p.lastUsed = now
		return p.Transport
	}
	if len(t.transports) >= maxTransports {
		t.dropOldestLocked()
	}
	tr := &http.Transport{
		Proxy:       t.proxyFor,
		DialContext: t.dial,
		TLSClientConfig: &tls.Config{
			ServerName: tlsName, // an IP address is verified but not sent as SNI
			RootCAs:    t.rootCAs,
			MinVersion: tls.VersionTLS12,
		},
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    10 * time.Second,
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	t.transports[tlsName] = &pooled{Transport: tr, lastUsed: now}
	return tr
}

func (t *Transport) dropOldestLocked() {
	var oldest string
	var at time.Time
	for name, p := range t.transports {
		if oldest == "" || p.lastUsed.Before(at) {
			oldest, at = name, p.lastUsed
		}
	}
	t.transports[oldest].CloseIdleConnections()
	delete(t.transports, oldest)
}

// CloseIdleConnections closes the idle connections of every destination.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.transports {
		p.CloseIdleConnections()
	}
}

// proxyFor picks the proxy for a request (HTTPS_PROXY and NO_PROXY by
// default). Behind a proxy the proxy resolves names, so only IP literals
// can be vetted here, as Synapse does.
func (t *Transport) proxyFor(req *http.Request) (*url.URL, error) {
	u, err := t.proxy(req)
	if err != nil || u == nil {
		return u, err
	}
	if ip, err := netip.ParseAddr(req.URL.Hostname()); err == nil && !t.filter.Permitted(ip) {
		return nil, &safenet.BlockedError{Host: req.URL.Host, IP: ip}
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"https": "443", "socks5": "1080"}[u.Scheme]
		if port == "" {
			port = "80"
		}
	}
	t.proxyAddrs.Store(net.JoinHostPort(u.Hostname(), port), true)
	return u, nil
}

// dial connects to a proxy as configured, and to anything else only on
// addresses the filter permits.
func (t *Transport) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if _, ok := t.proxyAddrs.Load(addr); ok {
		return t.plainDialer.DialContext(ctx, network, addr)
	}
	return t.dialer.DialContext(ctx, network, addr)
}

// limit caps how much of a response body is read.
func (t *Transport) limit(resp *http.Response) (*http.Response, error) {
	if t.maxResponse <= 0 {
		return resp, nil
	}
	if resp.ContentLength > t.maxResponse {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: %d bytes announced", ErrResponseTooLarge, resp.ContentLength)
	}
	resp.Body = &limitedBody{rc: resp.Body, left: t.maxResponse}
	return resp, nil
}

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, ErrResponseTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
