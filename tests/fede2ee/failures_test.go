package fede2ee

import (
	"net"
	"net/http"
	"testing"

	"matrixhs/tests/fedtest"
)

// hangingServer routes name to a listener that accepts connections and
// never answers.
func hangingServer(t *testing.T, n *fedtest.Network, name string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	n.Proxy.Route(name+":*", ln.Addr().String())
}

// Keys of users of servers that are down, fail or never answer: the query
// and the claim answer within their timeout with those servers in
// failures, and with what the others gave.
func TestKeyQueryFailures(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2, hs3 := n.Start("hs1"), n.Start("hs2"), n.Start("hs3")
	hangingServer(t, n, "hs9")
	alice := newUser(t, hs1, "alice", "ALICE1")
	bob := newUser(t, hs2, "bob", "BOB1")
	carol := newUser(t, hs3, "carol", "CAROL1")
	bob.uploadKeys(1)
	carol.uploadKeys(2)

	// Everyone up: bob's and carol's keys; hs9 never answers.
	r := alice.query(1500, bob.ID, carol.ID, "@ghost:hs9")
	if !hasDevice(r, bob.ID, "BOB1") || !hasDevice(r, carol.ID, "CAROL1") {
		t.Fatalf("query: %s", r.Raw)
	}
	if f := asMap(fedtest.Get(r.Body, "failures", "hs9")); f == nil || f["status"] != float64(http.StatusGatewayTimeout) || len(asMap(r.Body["failures"])) != 1 {
		t.Fatalf("failures: %s", r.Raw)
	}
	claim := func(timeoutMS int) response {
		return alice.do("POST", "/keys/claim", map[string]any{"timeout": timeoutMS, "one_time_keys": map[string]any{
			bob.ID: map[string]string{"BOB1": "signed_curve25519"}, carol.ID: map[string]string{"CAROL1": "signed_curve25519"},
			"@ghost:hs9": map[string]string{"G": "signed_curve25519"},
		}}).want(t, http.StatusOK, "")
	}
	r = claim(1500)
	if fedtest.Get(r.Body, "one_time_keys", bob.ID, "BOB1") == nil || fedtest.Get(r.Body, "one_time_keys", carol.ID, "CAROL1") == nil ||
		fedtest.Get(r.Body, "failures", "hs9") == nil {
		t.Fatalf("claim: %s", r.Raw)
	}

	// hs2 down: a failure for hs2, carol's keys still come.
	hs2.Stop()
	r = alice.query(3000, bob.ID, carol.ID)
	if hasDevice(r, bob.ID, "BOB1") || !hasDevice(r, carol.ID, "CAROL1") || fedtest.Get(r.Body, "failures", "hs2") == nil {
		t.Fatalf("query with hs2 down: %s", r.Raw)
	}
	r = claim(1500)
	if fedtest.Get(r.Body, "failures", "hs2") == nil || fedtest.Get(r.Body, "one_time_keys", carol.ID, "CAROL1") == nil {
		t.Fatalf("claim with hs2 down: %s", r.Raw)
	}

	// Timeouts: the query parameter as Synapse reads it; bad values are
	// refused.
	r = alice.do("POST", "/keys/query?timeout=1000", map[string]any{"device_keys": map[string]any{"@ghost:hs9": []string{}}}).want(t, http.StatusOK, "")
	if fedtest.Get(r.Body, "failures", "hs9") == nil {
		t.Fatalf("query with timeout=1000: %s", r.Raw)
	}
	alice.do("POST", "/keys/query?timeout=soon", map[string]any{"device_keys": map[string]any{}}).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	alice.do("POST", "/keys/query", map[string]any{"device_keys": map[string]any{}, "timeout": -1}).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	alice.do("POST", "/keys/claim", map[string]any{"one_time_keys": map[string]any{}, "timeout": "1s"}).want(t, http.StatusBadRequest, "M_BAD_JSON")
}
