package federationapi

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"matrixhs/tests/fednet"
)

func TestLoadCertificateFormats(t *testing.T) {
	ca := fednet.NewCA(t)
	for name, format := range map[string]fednet.KeyFormat{"PKCS#8": fednet.KeyPKCS8, "SEC1": fednet.KeySEC1, "PKCS#1": fednet.KeyPKCS1} {
		certPEM, keyPEM := ca.IssuePEM(t, format, "fed.test")
		cert, err := LoadCertificate(certPEM, keyPEM)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if cert.Leaf == nil || cert.Leaf.DNSNames[0] != "fed.test" || len(cert.Certificate) != 2 {
			t.Fatalf("%s: leaf %v, chain of %d", name, cert.Leaf, len(cert.Certificate))
		}
	}
	certPEM, keyPEM := ca.IssuePEM(t, fednet.KeyPKCS8, "fed.test")
	// The chain must start with the server's own certificate.
	leafEnd := strings.Index(string(certPEM), "-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----\n")
	reordered := append(append([]byte{}, certPEM[leafEnd:]...), certPEM[:leafEnd]...)
	if _, err := LoadCertificate(reordered, keyPEM); err == nil {
		t.Error("chain with the CA first accepted")
	}
	_, otherKey := ca.IssuePEM(t, fednet.KeyPKCS8, "other.test")
	if _, err := LoadCertificate(certPEM, otherKey); err == nil {
		t.Error("a key of another certificate accepted")
	}
	if _, err := LoadCertificate([]byte("junk"), keyPEM); err == nil {
		t.Error("junk accepted")
	}
}

// TestTLSListenerServesFederationRoutes: the federation listener serves
// the federation routes over TLS (HTTP/2 too), and nothing else.
func TestTLSListenerServesFederationRoutes(t *testing.T) {
	ca := fednet.NewCA(t)
	certPEM, keyPEM := ca.IssuePEM(t, fednet.KeySEC1, "127.0.0.1")
	cert, err := LoadCertificate(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	api := &API{}
	log := logrus.New()
	log.Out = io.Discard
	l, err := ListenTLS(api.Handler(log, 1<<20), TLSListenerOptions{Addr: "127.0.0.1:0", Certificate: cert})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Shutdown(context.Background())
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool}, ForceAttemptHTTP2: true,
	}}
	defer client.CloseIdleConnections()
	base := "https://" + l.Addr().String()
	for path, want := range map[string]int{
		"/_matrix/federation/v1/version": 200,
		"/_matrix/client/versions":       404,
		"/_matrix/key/v2/query":          405,
	} {
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d %s, want %d", path, resp.StatusCode, body, want)
		}
		if path == "/_matrix/federation/v1/version" && resp.ProtoMajor != 2 {
			t.Errorf("served over HTTP/%d, want HTTP/2", resp.ProtoMajor)
		}
	}
	if _, err := ListenTLS(api.Handler(log, 1<<20), TLSListenerOptions{Addr: "127.0.0.1:0"}); err == nil {
		t.Error("listener without a certificate")
	}
}
