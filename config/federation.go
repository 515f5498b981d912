package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

// FederationConfig is the "federation" section: talking to other Matrix
// servers. Federation is being built; these settings are read and checked
// now so that deployments can prepare their files and certificates.
type FederationConfig struct {
	// Enabled false turns federation off (MATRIX_FEDERATION=disabled).
	Enabled bool `yaml:"enabled"`
	// Listen is an extra TLS listener for federation (e.g. 0.0.0.0:8448);
	// empty: federation is served on the client port only.
	Listen string `yaml:"listen,omitempty"`
	// TLSCert and TLSKey are that listener's PEM files: the certificate
	// chain, leaf first, and its private key (PKCS#8, PKCS#1 or SEC1 EC).
	TLSCert string `yaml:"tls_cert,omitempty"`
	TLSKey  string `yaml:"tls_key,omitempty"`
	// ExtraCAFile is a PEM file of CAs that outbound federation trusts in
	// addition to the system roots (a private test network's CA).
	ExtraCAFile string `yaml:"extra_ca_file,omitempty"`
	// AllowPrivateAddresses lifts the refusal of loopback and private
	// addresses for outbound federation (servers on one private network).
	AllowPrivateAddresses bool `yaml:"allow_private_addresses"`
	// KeyNotaries are servers trusted to vouch for other servers' signing
	// keys (Synapse's trusted_key_servers); empty: ask each server itself.
	KeyNotaries []string `yaml:"key_notaries"`
	// KeyValidityPeriod is how long the signing key this server publishes
	// stays valid (its valid_until_ts).
	KeyValidityPeriod time.Duration `yaml:"key_validity_period"`
	// InboundRateLimit is each other server's request budget (a token
	// bucket per origin): burst_count requests at once, then per_second on
	// average; past it requests are answered 429 M_LIMIT_EXCEEDED.
	InboundRateLimit RateLimit `yaml:"inbound_rate_limit"`
}

// DefaultFederation is the federation section's defaults. The inbound rate
// is generous: a normal server sends one transaction at a time and, when
// it catches up on a room, some hundreds of fetches; only a flood meets it.
func DefaultFederation() FederationConfig {
	return FederationConfig{Enabled: true, KeyValidityPeriod: 7 * 24 * time.Hour,
		InboundRateLimit: RateLimit{PerSecond: 100, BurstCount: 1000}}
}

// validate checks the federation section, loading the TLS and CA files so a
// bad one stops the server at startup, named, rather than at first use.
func (f *FederationConfig) validate(clientListen string, bad func(string, ...any)) {
	if f.Listen != "" {
		if _, _, err := net.SplitHostPort(f.Listen); err != nil {
			bad("federation.listen %q must be host:port: %v", f.Listen, err)
		} else if sameAddress(f.Listen, clientListen) {
			bad("federation.listen %q is the client port (server.listen %q): leave it empty to serve federation there", f.Listen, clientListen)
		}
		if f.TLSCert == "" || f.TLSKey == "" {
			bad("federation.listen needs federation.tls_cert and federation.tls_key (MATRIX_TLS_CERT, MATRIX_TLS_KEY)")
		}
	}
	switch {
	case (f.TLSCert == "") != (f.TLSKey == ""):
		bad("federation.tls_cert and federation.tls_key (MATRIX_TLS_CERT, MATRIX_TLS_KEY) go together: give both or neither")
	case f.TLSCert != "":
		if _, err := f.Certificate(); err != nil {
			bad("%v", err)
		}
	}
	if f.ExtraCAFile != "" {
		if _, err := loadCAFile(f.ExtraCAFile); err != nil {
			bad("%v", err)
		}
	}
	for _, n := range f.KeyNotaries {
		if _, _, ok := spec.ParseAndValidateServerName(spec.ServerName(n)); !ok {
			bad("federation.key_notaries entry %q is not a server name (host or host:port)", n)
		}
	}
	if f.KeyValidityPeriod < time.Hour {
		bad("federation.key_validity_period %s must be at least 1h", f.KeyValidityPeriod)
	}
	if err := f.InboundRateLimit.validate("federation.inbound_rate_limit"); err != nil {
		bad("%v", err)
	}
}

// sameAddress reports whether two host:port listen addresses would collide:
// the same port on the same host, or on the wildcard host. Port 0 (any free
// port) never collides.
func sameAddress(a, b string) bool {
	ah, ap, err1 := net.SplitHostPort(a)
	bh, bp, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || ap != bp || ap == "0" {
		return false
	}
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ah == bh || wild(ah) || wild(bh)
}

// Certificate loads the federation listener's certificate chain and private
// key (tls_cert, tls_key), naming the file at fault when one does not parse
// or they do not belong together.
func (f *FederationConfig) Certificate() (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(f.TLSCert)
	if err != nil {
		return nil, fmt.Errorf("federation.tls_cert: %w", err)
	}
	if _, err := parseCertificates(certPEM); err != nil {
		return nil, fmt.Errorf("federation.tls_cert %s: %w", f.TLSCert, err)
	}
	keyPEM, err := os.ReadFile(f.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("federation.tls_key: %w", err)
	}
	if err := checkPrivateKey(keyPEM); err != nil {
		return nil, fmt.Errorf("federation.tls_key %s: %w", f.TLSKey, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("federation.tls_key %s does not belong to the first certificate in federation.tls_cert %s "+
			"(the file must start with this server's own certificate, then its chain): %w", f.TLSKey, f.TLSCert, err)
	}
	return &cert, nil
}

// RootCAs is the pool outbound federation verifies other servers against:
// the system roots plus extra_ca_file.
func (f *FederationConfig) RootCAs() (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if f.ExtraCAFile == "" {
		return pool, nil
	}
	extra, err := loadCAFile(f.ExtraCAFile)
	if err != nil {
		return nil, err
	}
	for _, c := range extra {
		pool.AddCert(c)
	}
	return pool, nil
}

func loadCAFile(path string) ([]*x509.Certificate, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("federation.extra_ca_file: %w", err)
	}
	certs, err := parseCertificates(raw)
	if err != nil {
		return nil, fmt.Errorf("federation.extra_ca_file %s: %w", path, err)
	}
	return certs, nil
}

// parseCertificates reads every CERTIFICATE block of a PEM file (other
// blocks are skipped); there must be at least one.
func parseCertificates(raw []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, raw = pem.Decode(raw)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block found")
	}
	return out, nil
}

// checkPrivateKey parses the first private key block of a PEM file.
func checkPrivateKey(raw []byte) error {
	for {
		var b *pem.Block
		b, raw = pem.Decode(raw)
		if b == nil {
			return errors.New(`no PEM private key found (PKCS#8 "PRIVATE KEY", PKCS#1 "RSA PRIVATE KEY" or SEC1 "EC PRIVATE KEY")`)
		}
		if b.Headers["Proc-Type"] != "" && b.Type != "CERTIFICATE" {
			return errors.New("the private key is encrypted; give it without a passphrase")
		}
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			_, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			_, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			_, err = x509.ParseECPrivateKey(b.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return errors.New("the private key is encrypted; give it without a passphrase")
		default:
			continue // e.g. "EC PARAMETERS" before the key
		}
		if err != nil {
			return fmt.Errorf("%s: %w", b.Type, err)
		}
		return nil
	}
}
