package fedephemeral

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/config"
	"matrixhs/federationapi"
	"matrixhs/internal/safenet"
	"matrixhs/tests/fednet"
	"matrixhs/tests/fedtest"
)

// TestInboundRateLimit: each origin has its own request budget; a server
// that floods gets 429 M_LIMIT_EXCEEDED with retry_after_ms once it is
// spent, on every authenticated endpoint, while other servers are served.
func TestInboundRateLimit(t *testing.T) {
	n := fedtest.NewNetwork(t)
	n.Start("hs1", fedtest.WithFederation(fedtest.EchoRoute), fedtest.WithFederation(func(o *federationapi.Options) {
		o.InboundRate = config.RateLimit{PerSecond: 0.01, BurstCount: 5}
	}))
	hs2, hs3 := n.Start("hs2"), n.Start("hs3")
	for range 5 {
		fed(t, hs2, "GET", "hs1", fedtest.EchoPath, nil).want(t, http.StatusOK, "")
	}
	r := fed(t, hs2, "GET", "hs1", fedtest.EchoPath, nil)
	r.want(t, http.StatusTooManyRequests, "M_LIMIT_EXCEEDED")
	if ms, _ := r.Body["retry_after_ms"].(float64); ms < 1 {
		t.Fatalf("retry_after_ms = %v", r.Body["retry_after_ms"])
	}
	sendEDUs(t, hs2, "hs1", typingEDU("!r:hs1", "@bob:hs2", true)).want(t, http.StatusTooManyRequests, "M_LIMIT_EXCEEDED")
	// Another server has its own budget; the key endpoints are not limited.
	fed(t, hs3, "GET", "hs1", fedtest.EchoPath, nil).want(t, http.StatusOK, "")
	fed(t, hs2, "GET", "hs1", "/_matrix/key/v2/server", nil).want(t, http.StatusOK, "")
}

// TestFederationBodyLimits: a request body past the federation limit is
// refused before anything reads it as JSON (413 M_TOO_LARGE); a
// transaction may be larger than other requests, but holds at most 100 EDUs.
func TestFederationBodyLimits(t *testing.T) {
	n := fedtest.NewNetwork(t)
	n.Start("hs1")
	hs2 := n.Start("hs2")
	big := strings.Repeat("x", 1<<20)
	fed(t, hs2, "POST", "hs1", "/_matrix/federation/v1/get_missing_events/!r:hs1",
		map[string]any{"earliest_events": []string{}, "latest_events": []string{"$x"}, "padding": big}).
		want(t, http.StatusRequestEntityTooLarge, "M_TOO_LARGE")
	// The same size is fine for a transaction (here an EDU nobody handles).
	sendEDUs(t, hs2, "hs1", map[string]any{"edu_type": "org.example.padding", "content": map[string]any{"p": big}}).
		want(t, http.StatusOK, "")
	edus := make([]map[string]any, 101)
	for i := range edus {
		edus[i] = typingEDU("!r:hs1", "@bob:hs2", true)
	}
	sendEDUs(t, hs2, "hs1", edus...).want(t, http.StatusBadRequest, "M_BAD_JSON")
}

// TestEDUsKeepThePrivateAddressRule: EDUs go out through the federation
// client, which refuses loopback and private addresses unless allowed:
// hs1 (not allowed, no proxy) cannot deliver a typing notification to hs2,
// which its DNS places on loopback; it records the failure and backs off.
func TestEDUsKeepThePrivateAddressRule(t *testing.T) {
	ctx := context.Background()
	n := fedtest.NewNetwork(t)
	n.Start("hs2")
	hs1 := n.Start("hs1", fedtest.WithFederation(func(o *federationapi.Options) {
		o.Client.AllowPrivate = false
		o.Client.Proxy = func(*http.Request) (*url.URL, error) { return nil, nil }
		o.Client.HostResolver = fednet.Hosts{"hs2": {netip.MustParseAddr("127.0.0.1")}}
	}))
	edu := gomatrixserverlib.EDU{Type: "m.typing", Content: spec.RawJSON(`{"room_id":"!r:hs1","user_id":"@a:hs1","typing":true}`)}
	if err := hs1.Sender.QueueEDU(ctx, []string{"hs2"}, edu); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "hs1 to fail reaching hs2", func() bool {
		d, found, err := hs1.DB.FederationDestinationStatus(ctx, "hs2")
		return err == nil && found && d.FailureTS != nil
	})
	_, err := hs1.Federation.Client.SendTransaction(ctx, gomatrixserverlib.Transaction{
		TransactionID: "probe", Origin: "hs1", Destination: "hs2", PDUs: []json.RawMessage{},
	})
	var blocked *safenet.BlockedError
	if !errors.As(err, &blocked) {
		t.Fatalf("sending to hs2 failed with %v, want the private-address refusal", err)
	}
}
