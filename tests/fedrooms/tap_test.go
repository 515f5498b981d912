package fedrooms

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	stdhttputil "net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"matrixhs/tests/fedtest"
)

// inboundTap stands in front of a server's federation listener (with a
// certificate for its name from the network's CA, so other servers cannot
// tell) and records the PDUs of every transaction sent to it before passing
// the request on unchanged.
type inboundTap struct {
	mu   sync.Mutex
	pdus []tappedPDU
}

// tappedPDU is what a test needs of a PDU in a transaction (event IDs of
// room versions 3+ are not in the PDU).
type tappedPDU struct {
	Origin, Type, Sender string
	StateKey             *string
	Content              map[string]any
}

// tapInbound routes the network's tunnels for hs through a new tap.
func tapInbound(t *testing.T, n *fedtest.Network, hs *fedtest.Server) *inboundTap {
	t.Helper()
	host := string(hs.Name)
	tap := &inboundTap{}
	rp := stdhttputil.NewSingleHostReverseProxy(&url.URL{Scheme: "https", Host: hs.FederationAddr()})
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: n.CA.Pool, ServerName: host}}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/_matrix/federation/v1/send/") {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			tap.record(body)
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		rp.ServeHTTP(w, r)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{n.CA.Issue(t, host)}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	n.Proxy.Route(host+":*", srv.Listener.Addr().String())
	return tap
}

func (tap *inboundTap) record(body []byte) {
	var txn struct {
		Origin string            `json:"origin"`
		PDUs   []json.RawMessage `json:"pdus"`
	}
	if json.Unmarshal(body, &txn) != nil {
		return
	}
	tap.mu.Lock()
	defer tap.mu.Unlock()
	for _, raw := range txn.PDUs {
		p := tappedPDU{Origin: txn.Origin}
		var ev struct {
			Type     string         `json:"type"`
			Sender   string         `json:"sender"`
			StateKey *string        `json:"state_key"`
			Content  map[string]any `json:"content"`
		}
		if json.Unmarshal(raw, &ev) == nil {
			p.Type, p.Sender, p.StateKey, p.Content = ev.Type, ev.Sender, ev.StateKey, ev.Content
		}
		tap.pdus = append(tap.pdus, p)
	}
}

// received lists the PDUs transactions carried so far, in arrival order.
func (tap *inboundTap) received() []tappedPDU {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	return append([]tappedPDU(nil), tap.pdus...)
}
