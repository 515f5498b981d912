// Package safenet makes outbound HTTP requests to addresses that users
// choose (URL previews, push gateways) without letting them reach the
// server's own network: loopback, private, link-local and the reserved and
// translation ranges that lead there are refused, checked after DNS and
// again on the socket address at connect time. Admins may exempt ranges.
package safenet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"time"
)

// DefaultDenied are the ranges outbound requests never reach unless an
// admin exempts them: loopback, private, link-local, CGNAT, multicast,
// unspecified, IPv6 ULA and the reserved, documentation and translation
// ranges that can lead to them.
var DefaultDenied = mustPrefixes(
	"0.0.0.0/8",       // "this network", unspecified
	"10.0.0.0/8",      // private
	"100.64.0.0/10",   // CGNAT
	"127.0.0.0/8",     // loopback
	"169.254.0.0/16",  // link-local (cloud metadata services live here)
	"172.16.0.0/12",   // private
	"192.0.0.0/24",    // IETF protocol assignments
	"192.0.2.0/24",    // documentation
	"192.88.99.0/24",  // 6to4 relay anycast
	"192.168.0.0/16",  // private
	"198.18.0.0/15",   // benchmarking
	"198.51.100.0/24", // documentation
	"203.0.113.0/24",  // documentation
	"224.0.0.0/4",     // multicast
	"240.0.0.0/4",     // reserved, broadcast
	"::/128",          // unspecified
	"::1/128",         // loopback
	"::/96",           // IPv4-compatible (deprecated; embeds an IPv4 address)
	"::ffff:0:0/96",   // IPv4-mapped (reaches the embedded IPv4 address)
	"64:ff9b::/96",    // NAT64 (maps to IPv4, possibly private)
	"64:ff9b:1::/48",  // local-use NAT64
	"100::/64",        // discard
	"2001::/32",       // Teredo
	"2001:db8::/32",   // documentation
	"2002::/16",       // 6to4 (embeds an IPv4 address)
	"fc00::/7",        // unique local (ULA)
	"fe80::/10",       // link-local
	"fec0::/10",       // site-local (deprecated)
	"ff00::/8",        // multicast
)

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// ParsePrefixes reads CIDR ranges ("10.0.0.0/8", "fd00::/8") or single
// addresses ("10.1.2.3", taken as /32 or /128), as config files write them.
func ParsePrefixes(ss []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(ss))
	var errs []error
	for _, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		errs = append(errs, fmt.Errorf("%q is not an IP range (CIDR) or address", s))
	}
	return out, errors.Join(errs...)
}

// Filter decides which addresses outbound requests may reach. The zero
// value refuses DefaultDenied.
type Filter struct {
	deny  []netip.Prefix // on top of DefaultDenied
	allow []netip.Prefix // exempt from both deny lists
}

// NewFilter refuses DefaultDenied and deny, except the ranges in allow
// (Synapse's ip_range_whitelist: it wins over the deny lists). The
// unspecified addresses 0.0.0.0 and :: are refused whatever allow says.
func NewFilter(deny, allow []netip.Prefix) *Filter {
	return &Filter{deny: deny, allow: allow}
}

// AllowAll is a filter that refuses nothing but the unspecified addresses:
// for servers on one private network (test networks, a LAN federation).
func AllowAll() *Filter {
	return NewFilter(nil, []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")})
}

// Permitted reports whether a connection to ip is allowed.
func (f *Filter) Permitted(ip netip.Addr) bool {
	ip = ip.WithZone("")
	if !ip.IsValid() || ip.Unmap().IsUnspecified() {
		return false
	}
	if f != nil {
		for _, p := range f.allow {
			if p.Contains(ip) || p.Contains(ip.Unmap()) {
				return true
			}
		}
	}
	// An IPv4-mapped address is refused by ::ffff:0:0/96 below; its IPv4
	// form is checked too so that the refusal does not depend on that entry.
	for _, a := range []netip.Addr{ip, ip.Unmap()} {
		if a.IsLoopback() || a.IsPrivate() || a.IsMulticast() || a.IsLinkLocalUnicast() ||
			a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() {
			return false
		}
		if containsAny(DefaultDenied, a) || (f != nil && containsAny(f.deny, a)) {
			return false
		}
	}
	return true
}

func containsAny(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// BlockedError is a refused destination.
type BlockedError struct {
	Host string
	IP   netip.Addr
}

func (e *BlockedError) Error() string {
	return fmt.Sprintf("refusing to connect to %s (%s): address not allowed", e.Host, e.IP)
}

// Dialer resolves names itself, refuses the whole name if any address is
// not permitted (so DNS answers mixing public and private addresses cannot
// be used for rebinding), and dials the vetted IP. Its Control hook checks
// the final socket address again, just before connect.
type Dialer struct {
	filter   *Filter
	resolver Resolver
	dialer   net.Dialer
}

// Resolver looks up the addresses of a host name (*net.Resolver is one;
// tests map names to loopback with their own).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// NewDialer is a Dialer whose connection attempts time out after timeout.
func NewDialer(filter *Filter, timeout time.Duration) *Dialer {
	return NewDialerWith(filter, timeout, nil)
}

// NewDialerWith is NewDialer resolving names with resolver (nil: the
// system's).
func NewDialerWith(filter *Filter, timeout time.Duration, resolver Resolver) *Dialer {
	if resolver == nil {
		resolver = net.DefaultResolver
	}
	d := &Dialer{filter: filter, resolver: resolver}
	d.dialer = net.Dialer{
		Timeout:   timeout,
		KeepAlive: 30 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("unexpected dial address %q", address)
			}
			if !filter.Permitted(ap.Addr()) {
				return &BlockedError{Host: address, IP: ap.Addr()}
			}
			return nil
		},
	}
	return d
}

// resolve returns the addresses of host, refusing it if any is not permitted.
func (d *Dialer) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		ips, err = d.resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, err
		}
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("%s has no addresses", host)
	}
	for _, ip := range ips {
		if !d.filter.Permitted(ip) {
			return nil, &BlockedError{Host: host, IP: ip}
		}
	}
	return ips, nil
}

// DialContext is the transport's dial function.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("bad port in %q", addr)
	}
	ips, err := d.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, ip := range ips {
		conn, err := d.dialer.DialContext(ctx, network, netip.AddrPortFrom(ip.Unmap(), uint16(port)).String())
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// ClientOptions shape an HTTP client for user-chosen URLs.
type ClientOptions struct {
	// Timeout bounds a whole request, redirects and body included.
	Timeout time.Duration
	// MaxRedirects is how many redirects are followed (each hop is dialled,
	// and so vetted, anew); 0 follows none: the 3xx response is returned.
	MaxRedirects int
	// MaxIdleConnsPerHost keeps connections for reuse (default 2).
	MaxIdleConnsPerHost int
}

// NewClient is an HTTP client that only reaches addresses filter permits:
// no proxy from the environment (a proxy would resolve names itself), only
// http(s) redirects, bounded time.
func NewClient(filter *Filter, opts ClientOptions) *http.Client {
	d := NewDialer(filter, 10*time.Second)
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            d.DialContext,
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    10 * time.Second,
		ResponseHeaderTimeout:  opts.Timeout,
		MaxResponseHeaderBytes: 64 << 10,
		MaxIdleConns:           16,
		MaxIdleConnsPerHost:    max(opts.MaxIdleConnsPerHost, 2),
		IdleConnTimeout:        90 * time.Second,
	}
	maxRedirects := opts.MaxRedirects
	return &http.Client{
		Transport: tr,
		Timeout:   opts.Timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if maxRedirects <= 0 {
				return http.ErrUseLastResponse
			}
			if len(via) >= maxRedirects {
				return fmt.Errorf("stopped after %d redirects", maxRedirects)
			}
			if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
				return fmt.Errorf("redirect to unsupported scheme %q", req.URL.Scheme)
			}
			return nil
		},
	}
}

// IsBlocked reports whether err (from a request through a Client or
// Dialer of this package) is a refused destination, and which.
func IsBlocked(err error) (*BlockedError, bool) {
	var b *BlockedError
	ok := errors.As(err, &b)
	return b, ok
}
