package fedclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/lru"
)

// Cache periods of /.well-known/matrix/server answers, as the spec
// recommends and Synapse uses: the response's own cache headers within
// [min, max], 24h without them; an invalid answer for an hour, an
// unreachable host for two minutes.
const (
	wellKnownDefaultTTL   = 24 * time.Hour
	wellKnownMinTTL       = 5 * time.Minute
	wellKnownMaxTTL       = 48 * time.Hour
	wellKnownInvalidTTL   = time.Hour
	wellKnownDownTTL      = 2 * time.Minute
	wellKnownMaxBytes     = 50 << 10
	wellKnownTimeout      = 10 * time.Second
	wellKnownRedirects    = 5
	srvTTL                = 10 * time.Minute
	resolverCacheSize     = 4096
	defaultFederationPort = 8448
)

// Destination is where a request for a server name goes.
type Destination struct {
	// Addr is the host:port to connect to; a host name in it is resolved
	// (and its addresses vetted) when dialling, or by the proxy.
	Addr string
	// Host is the Host header to send.
	Host string
	// TLSName is what the server's certificate must be valid for: a host
	// name (also sent as SNI) or an IP address (no SNI).
	TLSName string
}

// SRVResolver looks up SRV records; *net.Resolver is one, tests fake it.
type SRVResolver interface {
	LookupSRV(ctx context.Context, service, proto, name string) (cname string, addrs []*net.SRV, err error)
}

// Resolver finds where a server name's federation API is served, following
// the spec's server discovery: IP literals and explicit ports are used as
// they are; otherwise /.well-known/matrix/server delegation, then SRV
// records (_matrix-fed._tcp, then the deprecated _matrix._tcp), then port
// 8448. Well-known answers and SRV records are cached.
type Resolver struct {
	srv  SRVResolver
	http *http.Client // fetches well-known files (through the Transport)
	now  func() time.Time

	wellKnown *lru.Cache[string, wellKnownEntry]
	srvCache  *lru.Cache[string, srvEntry]
	// inflight coalesces concurrent well-known fetches for one host.
	mu       sync.Mutex
	inflight map[string]chan struct{}
}

type wellKnownEntry struct {
	server  spec.ServerName // "" when there is no valid delegation
	expires time.Time
}

type srvEntry struct {
	records []*net.SRV
	expires time.Time
}

func newResolver(srv SRVResolver, client *http.Client, now func() time.Time) *Resolver {
	if srv == nil {
		srv = net.DefaultResolver
	}
	return &Resolver{
		srv: srv, http: client, now: now,
		wellKnown: lru.New[string, wellKnownEntry](resolverCacheSize),
		srvCache:  lru.New[string, srvEntry](resolverCacheSize),
		inflight:  map[string]chan struct{}{},
	}
}

// Resolve returns where to send requests for serverName, best first.
func (r *Resolver) Resolve(ctx context.Context, serverName spec.ServerName) ([]Destination, error) {
	host, port, ok := spec.ParseAndValidateServerName(serverName)
	if !ok {
		return nil, fmt.Errorf("%q is not a valid server name", serverName)
	}
	if d, ok := literalOrPort(serverName, host, port); ok {
		return []Destination{d}, nil
	}
	if delegated, ok := r.lookupWellKnown(ctx, host); ok {
		dhost, dport, _ := spec.ParseAndValidateServerName(delegated)
		if d, ok := literalOrPort(delegated, dhost, dport); ok {
			return []Destination{d}, nil
		}
		return r.srvOrDefault(ctx, dhost), nil
	}
	return r.srvOrDefault(ctx, host), nil
}

// literalOrPort covers the steps that need no lookup: an IP literal (with
// its port or 8448; the certificate must be for the IP) and a host name
// with an explicit port.
func literalOrPort(name spec.ServerName, host string, port int) (Destination, bool) {
	if ip, ok := ipLiteral(host); ok {
		if port < 0 {
			port = defaultFederationPort
		}
		return Destination{
			Addr: net.JoinHostPort(ip.String(), strconv.Itoa(port)), Host: string(name), TLSName: ip.String(),
		}, true
	}
	if port >= 0 {
		return Destination{Addr: net.JoinHostPort(host, strconv.Itoa(port)), Host: string(name), TLSName: host}, true
	}
	return Destination{}, false
}

// ipLiteral parses "1.2.3.4" or "[::1]" (the brackets of a server name).
func ipLiteral(host string) (netip.Addr, bool) {
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	ip, err := netip.ParseAddr(host)
	return ip, err == nil && ip.Zone() == ""
}

// srvOrDefault is the end of discovery for a host name without a port:
// its SRV targets, else the host on port 8448. The certificate must be for
// the host name and Host carries it, whichever address is dialled.
func (r *Resolver) srvOrDefault(ctx context.Context, host string) []Destination {
	var out []Destination
	for _, rec := range r.lookupSRV(ctx, host) {
		target := strings.TrimSuffix(rec.Target, ".")
		out = append(out, Destination{
			Addr: net.JoinHostPort(target, strconv.Itoa(int(rec.Port))), Host: host, TLSName: host,
		})
	}
	if len(out) == 0 {
		out = append(out, Destination{
			Addr: net.JoinHostPort(host, strconv.Itoa(defaultFederationPort)), Host: host, TLSName: host,
		})
	}
	return out
}

// lookupSRV returns the _matrix-fed._tcp records of host, else the
// deprecated _matrix._tcp ones. A failed lookup counts as no record: the
// next step still requires a certificate for the host, so nothing is
// trusted that DNS alone could fake.
func (r *Resolver) lookupSRV(ctx context.Context, host string) []*net.SRV {
	now := r.now()
	if e, ok := r.srvCache.Get(host); ok && now.Before(e.expires) {
		return e.records
	}
	var records []*net.SRV
	for _, service := range []string{"matrix-fed", "matrix"} {
		_, recs, err := r.srv.LookupSRV(ctx, service, "tcp", host)
		if err != nil || len(recs) == 0 {
			continue
		}
		for _, rec := range recs {
			// A target of "." says the service is not offered there.
			if t := strings.TrimSuffix(rec.Target, "."); t != "" && rec.Port != 0 {
				records = append(records, rec)
			}
		}
		if len(records) > 0 {
			break
		}
	}
	if ctx.Err() == nil {
		r.srvCache.Add(host, srvEntry{records: records, expires: now.Add(srvTTL)})
	}
	return records
}

// lookupWellKnown returns the server host delegates to, if it does.
func (r *Resolver) lookupWellKnown(ctx context.Context, host string) (spec.ServerName, bool) {
	for {
		if e, ok := r.wellKnown.Get(host); ok && r.now().Before(e.expires) {
			return e.server, e.server != ""
		}
		r.mu.Lock()
		wait, busy := r.inflight[host]
		if !busy {
			done := make(chan struct{})
			r.inflight[host] = done
			r.mu.Unlock()
			e, cache := r.fetchWellKnown(ctx, host)
			if cache {
				r.wellKnown.Add(host, e)
			}
			r.mu.Lock()
			delete(r.inflight, host)
			r.mu.Unlock()
			close(done)
			return e.server, e.server != ""
		}
		r.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return "", false
		}
	}
}

// errInvalidWellKnown marks an answer that is there but unusable.
var errInvalidWellKnown = errors.New("invalid well-known answer")

// fetchWellKnown asks https://host/.well-known/matrix/server; cache says
// whether the outcome is worth remembering (not when ctx ended).
func (r *Resolver) fetchWellKnown(ctx context.Context, host string) (wellKnownEntry, bool) {
	now := r.now()
	server, ttl, err := r.getWellKnown(ctx, host)
	switch {
	case err == nil:
		return wellKnownEntry{server: server, expires: now.Add(ttl)}, true
	case ctx.Err() != nil:
		return wellKnownEntry{}, false
	case errors.Is(err, errInvalidWellKnown):
		return wellKnownEntry{expires: now.Add(wellKnownInvalidTTL)}, true
	default:
		return wellKnownEntry{expires: now.Add(wellKnownDownTTL)}, true
	}
}

func (r *Resolver) getWellKnown(ctx context.Context, host string) (spec.ServerName, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, wellKnownTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/.well-known/matrix/server", nil)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %v", errInvalidWellKnown, err)
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("%w: status %d", errInvalidWellKnown, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, wellKnownMaxBytes+1))
	if err != nil {
		return "", 0, err
	}
	if len(body) > wellKnownMaxBytes {
		return "", 0, fmt.Errorf("%w: larger than %d bytes", errInvalidWellKnown, wellKnownMaxBytes)
	}
	var wk struct {
		Server string `json:"m.server"`
	}
	if err := json.Unmarshal(body, &wk); err != nil {
		return "", 0, fmt.Errorf("%w: %v", errInvalidWellKnown, err)
	}
	if _, _, ok := spec.ParseAndValidateServerName(spec.ServerName(wk.Server)); !ok {
		return "", 0, fmt.Errorf("%w: m.server %q is not a server name", errInvalidWellKnown, wk.Server)
	}
	return spec.ServerName(wk.Server), cachePeriod(resp.Header, r.now()), nil
}

// cachePeriod reads Cache-Control (no-store, max-age) and Expires, within
// the well-known bounds.
func cachePeriod(h http.Header, now time.Time) time.Duration {
	ttl, found := time.Duration(0), false
	for _, directive := range strings.Split(strings.Join(h.Values("Cache-Control"), ","), ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(directive), "=")
		switch strings.ToLower(name) {
		case "no-store", "no-cache":
			return wellKnownMinTTL
		case "max-age":
			if secs, err := strconv.ParseInt(strings.Trim(value, `"`), 10, 64); err == nil && secs >= 0 {
				ttl, found = time.Duration(min(secs, int64(wellKnownMaxTTL/time.Second)))*time.Second, true
			}
		}
	}
	if !found {
		if exp, err := http.ParseTime(h.Get("Expires")); err == nil {
			ttl, found = exp.Sub(now), true
		}
	}
	if !found {
		return wellKnownDefaultTTL
	}
	return min(max(ttl, wellKnownMinTTL), wellKnownMaxTTL)
}
