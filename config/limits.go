package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// DefaultTrustedProxies are loopback and private-network addresses: a
// reverse proxy or tunnel on the same host or Docker network (the Ratio1
// tunnel reaches the container through its Docker gateway) is believed
// about the client's address; anyone on the internet is not.
func DefaultTrustedProxies() []string {
	return []string{"127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"}
}

// RateLimit is a Synapse-style rc_* setting: burst_count actions at once,
// then per_second on average.
type RateLimit struct {
	PerSecond  float64 `yaml:"per_second"`
	BurstCount int     `yaml:"burst_count"`
}

// Interval is the time to regain one action.
func (r RateLimit) Interval() time.Duration {
	return time.Duration(float64(time.Second) / r.PerSecond)
}

func (r RateLimit) validate(name string) error {
	if !(r.PerSecond > 0) || r.BurstCount < 1 {
		return fmt.Errorf("%s needs per_second > 0 and burst_count >= 1", name)
	}
	// Slower than one a day is surely a typo (and tiny rates overflow Interval).
	if r.PerSecond < 1.0/86400 {
		return fmt.Errorf("%s per_second %g is below one a day", name, r.PerSecond)
	}
	return nil
}

// ParsePrefixes reads a list of CIDRs and single addresses.
func ParsePrefixes(entries []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(entries))
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if p, err := netip.ParsePrefix(e); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(e)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("%q is neither an IP address nor a CIDR", e)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// TrustedProxyPrefixes is server.trusted_proxies parsed (Validate has checked it).
func (c *Config) TrustedProxyPrefixes() []netip.Prefix {
	p, _ := ParsePrefixes(c.Server.TrustedProxies)
	return p
}
