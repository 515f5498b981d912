package httputil

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// TrustedProxies are the peers whose forwarding headers (X-Forwarded-For,
// Forwarded, X-Real-IP, X-Forwarded-Proto/-Host) are believed. Anyone else
// could write any address there and so escape per-address limits.
type TrustedProxies struct {
	prefixes []netip.Prefix
}

// NewTrustedProxies trusts the given networks (nil: no proxy at all).
func NewTrustedProxies(prefixes []netip.Prefix) *TrustedProxies {
	return &TrustedProxies{prefixes: prefixes}
}

// Trusts reports whether addr is a trusted proxy.
func (tp *TrustedProxies) Trusts(addr netip.Addr) bool {
	if tp == nil {
		return false
	}
	addr = addr.Unmap().WithZone("")
	for _, p := range tp.prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// clientAddr is what WithClientAddress learned about a request's origin.
type clientAddr struct {
	ip string
	// viaProxy: the peer is a trusted proxy, so its other X-Forwarded-*
	// headers may be believed too.
	viaProxy bool
}

type clientAddrKey struct{}

// WithClientAddress resolves each request's client address once, before
// any handler runs, so every API (client, media) sees the same one.
func WithClientAddress(next http.Handler, tp *TrustedProxies) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip, via := tp.Resolve(r)
		ctx := context.WithValue(r.Context(), clientAddrKey{}, clientAddr{ip: ip, viaProxy: via})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// ClientIP is the client's address as WithClientAddress resolved it; without
// that middleware it is the peer address, never a header.
func ClientIP(r *http.Request) string {
	if c, ok := r.Context().Value(clientAddrKey{}).(clientAddr); ok {
		return c.ip
	}
	return peerHost(r.RemoteAddr)
}

// ViaTrustedProxy reports whether the request came from a trusted proxy,
// whose X-Forwarded-Proto and X-Forwarded-Host may then be used.
func ViaTrustedProxy(r *http.Request) bool {
	c, ok := r.Context().Value(clientAddrKey{}).(clientAddr)
	return ok && c.viaProxy
}

// Resolve finds the client address of r: the peer itself unless it is a
// trusted proxy; then the right-most address of the forwarding chain that is
// not a trusted proxy (every proxy appends the address it saw, so entries
// further left were written by someone untrusted). via reports whether the
// peer was a trusted proxy.
func (tp *TrustedProxies) Resolve(r *http.Request) (ip string, via bool) {
	peer, err := netip.ParseAddr(peerHost(r.RemoteAddr))
	if err != nil {
		return peerHost(r.RemoteAddr), false
	}
	peer = peer.Unmap().WithZone("")
	if !tp.Trusts(peer) {
		return peer.String(), false
	}
	client := peer
	chain := forwardedChain(r.Header)
	for i := len(chain) - 1; i >= 0; i-- {
		addr, ok := parseForwardedAddr(chain[i])
		if !ok {
			// A hop we cannot read: stop at the last one we could vouch for.
			break
		}
		client = addr
		if !tp.Trusts(addr) {
			break
		}
	}
	return client.String(), true
}

// forwardedChain lists the forwarding hops, client first: X-Forwarded-For
// (all its header lines), else the for= parameters of Forwarded (RFC 7239),
// else X-Real-IP.
func forwardedChain(h http.Header) []string {
	if xff := h.Values("X-Forwarded-For"); len(xff) > 0 {
		var out []string
		for _, line := range xff {
			out = append(out, strings.Split(line, ",")...)
		}
		return out
	}
	if fwd := h.Values("Forwarded"); len(fwd) > 0 {
		var out []string
		for _, line := range fwd {
			for _, elem := range strings.Split(line, ",") {
				for _, pair := range strings.Split(elem, ";") {
					k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
					if ok && strings.EqualFold(k, "for") {
						out = append(out, v)
					}
				}
			}
		}
		return out
	}
	if xri := h.Get("X-Real-IP"); xri != "" {
		return []string{xri}
	}
	return nil
}

// parseForwardedAddr reads one hop: a bare address, or (Forwarded style)
// a quoted one with a port, IPv6 in brackets. "unknown" and obfuscated
// identifiers are not addresses.
func parseForwardedAddr(s string) (netip.Addr, bool) {
	s = strings.Trim(strings.TrimSpace(s), `"`)
	if addr, err := netip.ParseAddr(s); err == nil {
		return addr.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if addr, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return addr.Unmap().WithZone(""), true
		}
	}
	return netip.Addr{}, false
}

// peerHost is the host part of a RemoteAddr.
func peerHost(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return strings.Trim(remote, "[]")
}
