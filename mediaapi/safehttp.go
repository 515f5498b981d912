package mediaapi

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

// deniedPrefixes are the address ranges a URL preview must never reach:
// loopback, private, link-local, CGNAT, multicast, unspecified, IPv6 ULA and
// the reserved, documentation and translation ranges that can lead to them.
var deniedPrefixes = mustPrefixes(
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

// addrFilter decides which addresses outbound preview requests may reach.
type addrFilter struct {
	// allow exempts ranges from the deny list (tests only).
	allow []netip.Prefix
}

// permitted reports whether ip is a public address (or explicitly allowed).
func (f addrFilter) permitted(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	if !ip.IsValid() {
		return false
	}
	for _, p := range f.allow {
		if p.Contains(ip) {
			return true
		}
	}
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsUnspecified() || ip.IsMulticast() ||
		ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() {
		return false
	}
	for _, p := range deniedPrefixes {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// blockedError is a refused destination.
type blockedError struct {
	host string
	ip   netip.Addr
}

func (e *blockedError) Error() string {
	return fmt.Sprintf("refusing to connect to %s (%s): not a public address", e.host, e.ip)
}

// safeDialer resolves names itself, refuses the whole name if any address is
// not public (so DNS answers mixing public and private addresses cannot be
// used for rebinding), and dials the vetted IP. The dialer's Control hook
// checks the final socket address again.
type safeDialer struct {
	filter   addrFilter
	resolver *net.Resolver
	dialer   net.Dialer
}

func newSafeDialer(filter addrFilter) *safeDialer {
	d := &safeDialer{filter: filter, resolver: net.DefaultResolver}
	d.dialer = net.Dialer{
		Timeout: 5 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("unexpected dial address %q", address)
			}
			if !filter.permitted(ap.Addr()) {
				return &blockedError{host: address, ip: ap.Addr()}
			}
			return nil
		},
	}
	return d
}

// resolve returns the addresses of host, refusing it if any is not public.
func (d *safeDialer) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
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
		if !d.filter.permitted(ip) {
			return nil, &blockedError{host: host, ip: ip}
		}
	}
	return ips, nil
}

// DialContext is the transport's dial function.
func (d *safeDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
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

// maxRedirects bounds the redirects a preview follows; each hop is dialled
// (and so vetted) anew.
const maxRedirects = 5

// newSafeClient is an HTTP client for user-supplied URLs: no proxy from the
// environment, only http(s), vetted addresses, bounded redirects and time.
func newSafeClient(filter addrFilter, timeout time.Duration) *http.Client {
	d := newSafeDialer(filter)
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            d.DialContext,
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    5 * time.Second,
		ResponseHeaderTimeout:  timeout,
		MaxResponseHeaderBytes: 64 << 10,
		MaxIdleConns:           8,
		IdleConnTimeout:        30 * time.Second,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
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
