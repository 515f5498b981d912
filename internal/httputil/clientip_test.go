package httputil

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestResolveClientAddress(t *testing.T) {
	tp := NewTrustedProxies([]netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128"),
	})
	for _, tc := range []struct {
		name   string
		peer   string
		header map[string][]string
		want   string
		via    bool
	}{
		{"untrusted peer's header ignored", "203.0.113.5:1234", map[string][]string{"X-Forwarded-For": {"1.1.1.1"}}, "203.0.113.5", false},
		{"untrusted peer's X-Real-IP ignored", "203.0.113.5:1234", map[string][]string{"X-Real-IP": {"1.1.1.1"}}, "203.0.113.5", false},
		{"trusted peer without header", "127.0.0.1:1", nil, "127.0.0.1", true},
		{"trusted peer names the client", "127.0.0.1:1", map[string][]string{"X-Forwarded-For": {"198.51.100.7"}}, "198.51.100.7", true},
		{"right-most untrusted wins over spoofed left entries", "127.0.0.1:1",
			map[string][]string{"X-Forwarded-For": {"6.6.6.6, 198.51.100.7"}}, "198.51.100.7", true},
		{"trusted hops are skipped", "10.0.0.2:1",
			map[string][]string{"X-Forwarded-For": {"6.6.6.6, 198.51.100.7, 10.0.0.9"}}, "198.51.100.7", true},
		{"several header lines form one chain", "127.0.0.1:1",
			map[string][]string{"X-Forwarded-For": {"6.6.6.6", "198.51.100.7, 10.1.1.1"}}, "198.51.100.7", true},
		{"all hops trusted: the left-most", "127.0.0.1:1", map[string][]string{"X-Forwarded-For": {"10.0.0.5, 10.0.0.6"}}, "10.0.0.5", true},
		{"garbage hop stops at the last readable one", "127.0.0.1:1",
			map[string][]string{"X-Forwarded-For": {"6.6.6.6, nonsense, 10.0.0.6"}}, "10.0.0.6", true},
		{"Forwarded for=", "127.0.0.1:1",
			map[string][]string{"Forwarded": {`for=6.6.6.6, for="[2001:db8::1]:4711";proto=https`}}, "2001:db8::1", true},
		{"Forwarded with port", "127.0.0.1:1", map[string][]string{"Forwarded": {`for="198.51.100.7:80"`}}, "198.51.100.7", true},
		{"X-Real-IP from a trusted peer", "127.0.0.1:1", map[string][]string{"X-Real-IP": {"198.51.100.7"}}, "198.51.100.7", true},
		{"X-Forwarded-For wins over X-Real-IP", "127.0.0.1:1",
			map[string][]string{"X-Forwarded-For": {"198.51.100.7"}, "X-Real-IP": {"6.6.6.6"}}, "198.51.100.7", true},
		{"IPv6 peer", "[::1]:8008", map[string][]string{"X-Forwarded-For": {"2001:db8::7"}}, "2001:db8::7", true},
		{"IPv4-mapped peer", "[::ffff:10.0.0.1]:1", map[string][]string{"X-Forwarded-For": {"198.51.100.7"}}, "198.51.100.7", true},
		{"IPv4-mapped client is unmapped", "[::ffff:203.0.113.5]:1", nil, "203.0.113.5", false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.peer
		r.Header = http.Header{}
		for k, vs := range tc.header {
			for _, v := range vs {
				r.Header.Add(k, v)
			}
		}
		ip, via := tp.Resolve(r)
		if ip != tc.want || via != tc.via {
			t.Errorf("%s: got %s (via proxy %v), want %s (%v)", tc.name, ip, via, tc.want, tc.via)
		}
	}
}

// Without the middleware, or with no proxy trusted, headers are never used.
func TestClientIPNeverTrustsHeadersByItself(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "127.0.0.1:5"
	r.Header.Set("X-Forwarded-For", "1.2.3.4")
	if got := ClientIP(r); got != "127.0.0.1" {
		t.Fatalf("ClientIP without middleware = %s", got)
	}
	var seen string
	WithClientAddress(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { seen = ClientIP(r) }), NewTrustedProxies(nil)).
		ServeHTTP(httptest.NewRecorder(), r)
	if seen != "127.0.0.1" {
		t.Fatalf("ClientIP trusting no one = %s", seen)
	}
}
