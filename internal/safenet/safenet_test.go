package safenet

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

func TestFilterDefaultDenyList(t *testing.T) {
	var f *Filter // the zero filter: built-in list only
	denied := []string{
		"127.0.0.1", "127.255.0.1", "::1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
		"169.254.169.254", "100.64.0.1", "100.127.255.255", "0.0.0.0", "::", "224.0.0.1", "239.255.255.250",
		"255.255.255.255", "fd00::1", "fc00::1", "fe80::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
		"64:ff9b::a00:1", "2002:7f00:1::", "192.0.2.1", "198.18.0.1",
		// IPv4-mapped and IPv4-compatible forms, public or not: refused as a whole range.
		"::ffff:1.1.1.1", "::ffff:0:0", "::7f00:1", "::a00:1", "::808:808", "::2",
		"fe80::1%eth0",
	}
	for _, s := range denied {
		if f.Permitted(netip.MustParseAddr(s)) {
			t.Errorf("%s permitted", s)
		}
	}
	for _, s := range []string{"1.1.1.1", "8.8.8.8", "100.128.0.1", "172.32.0.1", "2606:4700:4700::1111", "2a00:1450::1"} {
		if !f.Permitted(netip.MustParseAddr(s)) {
			t.Errorf("public %s refused", s)
		}
	}
}

func TestFilterAllowAndExtraDeny(t *testing.T) {
	allow, err := ParsePrefixes([]string{"127.0.0.1/32", "fd12::/16", "10.9.8.7"})
	if err != nil {
		t.Fatal(err)
	}
	deny, _ := ParsePrefixes([]string{"8.8.8.0/24"})
	f := NewFilter(deny, allow)
	for s, want := range map[string]bool{
		"127.0.0.1": true, "::ffff:127.0.0.1": true, "127.0.0.2": false, "10.9.8.7": true, "10.9.8.6": false,
		"fd12::5": true, "fd13::5": false, "8.8.8.8": false, "8.8.4.4": true,
		// The unspecified addresses mean "this host": never, whatever is allowed.
		"0.0.0.0": false, "::": false,
	} {
		if got := f.Permitted(netip.MustParseAddr(s)); got != want {
			t.Errorf("%s: permitted %v, want %v", s, got, want)
		}
	}
	if f := NewFilter(nil, []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}); f.Permitted(netip.MustParseAddr("0.0.0.0")) {
		t.Error("0.0.0.0 permitted by a whitelist")
	}
	if _, err := ParsePrefixes([]string{"10.0.0.0/33"}); err == nil {
		t.Error("bad prefix accepted")
	}
	if _, err := ParsePrefixes([]string{"example.org"}); err == nil {
		t.Error("host name accepted as a range")
	}
}

// loopbackServer counts the requests it gets.
func loopbackServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestClientRefusesDeniedAddressesBeforeConnecting(t *testing.T) {
	srv, hits := loopbackServer(t, func(w http.ResponseWriter, r *http.Request) {})
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	c := NewClient(nil, ClientOptions{Timeout: 5 * time.Second})
	for _, u := range []string{srv.URL, "http://localhost:" + port, "http://[::ffff:127.0.0.1]:" + port, "http://[::127.0.0.1]:" + port} {
		_, err := c.Get(u)
		if b, ok := IsBlocked(err); !ok {
			t.Errorf("%s: err = %v, want a refused address", u, err)
		} else if b.IP.IsValid() == false {
			t.Errorf("%s: refused without naming the address", u)
		}
	}
	// The dialer alone, as other transports would use it.
	_, err := NewDialer(nil, time.Second).DialContext(context.Background(), "tcp", srv.Listener.Addr().String())
	if _, ok := IsBlocked(err); !ok {
		t.Errorf("dial: err = %v", err)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("refused requests reached the server %d times", n)
	}
}

func TestClientWhitelistAndRedirects(t *testing.T) {
	target, targetHits := loopbackServer(t, func(w http.ResponseWriter, r *http.Request) {})
	srv, _ := loopbackServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/secret", http.StatusFound)
	})
	allow, _ := ParsePrefixes([]string{"127.0.0.1/32"})
	f := NewFilter(nil, allow)

	// MaxRedirects 0: the 3xx itself is the answer, nothing else is fetched.
	resp, err := NewClient(f, ClientOptions{Timeout: 5 * time.Second}).Post(srv.URL, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || targetHits.Load() != 0 {
		t.Fatalf("status %d, redirect target hit %d times; want 302 and no hit", resp.StatusCode, targetHits.Load())
	}
	// With redirects allowed, each hop is vetted: the target is reachable
	// only while its address is allowed.
	resp, err = NewClient(f, ClientOptions{Timeout: 5 * time.Second, MaxRedirects: 3}).Get(srv.URL)
	if err != nil || resp.StatusCode != 200 || targetHits.Load() != 1 {
		t.Fatalf("followed redirect: %v %v, hits %d", resp, err, targetHits.Load())
	}
	resp.Body.Close()
	_, err = NewClient(NewFilter(nil, nil), ClientOptions{Timeout: 5 * time.Second, MaxRedirects: 3}).Get(srv.URL)
	if _, ok := IsBlocked(err); !ok || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unallowed: err = %v", err)
	}
}
