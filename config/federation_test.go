package config

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testCA is a throwaway certificate authority for the TLS tests.
type testCA struct {
	cert *x509.Certificate
	der  []byte
	key  crypto.Signer
}

var rsaTestKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func newTestCA(t *testing.T) testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return testCA{cert: cert, der: der, key: key}
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// newKey makes a private key and its PEM in the given encoding.
func newKey(t *testing.T, kind string) (crypto.Signer, []byte) {
	t.Helper()
	pkcs8 := func(k crypto.Signer) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pemOf("PRIVATE KEY", der)
	}
	switch kind {
	case "pkcs8-ec":
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		return k, pkcs8(k)
	case "pkcs8-ed25519":
		_, k, _ := ed25519.GenerateKey(rand.Reader)
		return k, pkcs8(k)
	case "pkcs8-rsa":
		return rsaTestKey(), pkcs8(rsaTestKey())
	case "pkcs1-rsa":
		return rsaTestKey(), pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaTestKey()))
	case "ec-sec1":
		k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		// As `openssl ecparam -genkey` writes it: parameters, then the key.
		params := pemOf("EC PARAMETERS", []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22})
		return k, append(params, pemOf("EC PRIVATE KEY", der)...)
	}
	t.Fatalf("unknown key kind %s", kind)
	return nil, nil
}

// writeKeyPair writes a server certificate signed by a fresh CA (followed
// by the CA's certificate when chain) and its key in the given encoding;
// it returns the two paths.
func writeKeyPair(t *testing.T, dir, kind string, chain bool) (certPath, keyPath string) {
	t.Helper()
	ca := newTestCA(t)
	key, keyPEM := newKey(t, kind)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "hs.example"}, DNSNames: []string{"hs.example"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pemOf("CERTIFICATE", der)
	if chain {
		certPEM = append(certPEM, pemOf("CERTIFICATE", ca.der)...)
	}
	certPath, keyPath = filepath.Join(dir, kind+".crt"), filepath.Join(dir, kind+".key")
	if err := os.WriteFile(certPath, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

// writeCA writes a fresh CA's certificate as a PEM file.
func writeCA(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "extra-ca.pem")
	if err := os.WriteFile(path, pemOf("CERTIFICATE", newTestCA(t).der), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func federationYAML(kv ...string) string {
	return "federation:\n  " + strings.Join(kv, "\n  ") + "\n"
}

// TestFederationTLSKeyEncodings: the listener's key may be PKCS#8 (EC, RSA,
// Ed25519), PKCS#1 or SEC1 EC; the certificate file is the chain, leaf first.
func TestFederationTLSKeyEncodings(t *testing.T) {
	for _, kind := range []string{"pkcs8-ec", "pkcs8-rsa", "pkcs8-ed25519", "pkcs1-rsa", "ec-sec1"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			cert, key := writeKeyPair(t, dir, kind, true)
			cfg, err := loadYAML(t, federationYAML("listen: 0.0.0.0:8448", "tls_cert: "+cert, "tls_key: "+key), nil)
			if err != nil {
				t.Fatal(err)
			}
			pair, err := cfg.Federation.Certificate()
			if err != nil || len(pair.Certificate) != 2 || pair.Leaf == nil || pair.Leaf.Subject.CommonName != "hs.example" {
				t.Fatalf("certificate = %+v, %v", pair, err)
			}
		})
	}
}

// TestFederationTLSErrors: every way the TLS settings can be wrong stops
// the server with a message naming the setting and the file.
func TestFederationTLSErrors(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeKeyPair(t, dir, "pkcs8-ec", true)
	_, otherKey := writeKeyPair(t, t.TempDir(), "pkcs8-ec", false)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		return p
	}
	// The chain in the wrong order: CA first.
	raw, _ := os.ReadFile(cert)
	first, rest := pem.Decode(raw)
	reversed := write("reversed.crt", string(rest)+string(pem.EncodeToMemory(first)))
	garbage := write("garbage.pem", "not a pem file\n")
	badCert := write("bad.crt", string(pemOf("CERTIFICATE", []byte("junk"))))
	badKey := write("bad.key", string(pemOf("PRIVATE KEY", []byte("junk"))))
	keyRaw, _ := os.ReadFile(key)
	block, _ := pem.Decode(keyRaw)
	encrypted := write("enc.key", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY",
		Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: block.Bytes})))
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name string
		yaml string
		env  map[string]string
		want []string
	}{
		{"listener without files", federationYAML("listen: 0.0.0.0:8448"), nil,
			[]string{"federation.listen needs federation.tls_cert and federation.tls_key"}},
		{"listener from env without files", "", map[string]string{EnvFederationListen: "0.0.0.0:8448"},
			[]string{"MATRIX_TLS_CERT"}},
		{"cert without key", federationYAML("tls_cert: " + cert), nil, []string{"go together"}},
		{"key without cert, env", "", map[string]string{EnvTLSKey: key}, []string{"go together"}},
		{"listener on the client port", federationYAML("listen: 0.0.0.0:8008", "tls_cert: "+cert, "tls_key: "+key), nil,
			[]string{"client port"}},
		{"listener not host:port", federationYAML("listen: 8448", "tls_cert: "+cert, "tls_key: "+key), nil,
			[]string{"federation.listen"}},
		{"missing cert", federationYAML("tls_cert: "+missing, "tls_key: "+key), nil, []string{"federation.tls_cert", missing}},
		{"missing key", federationYAML("tls_cert: "+cert, "tls_key: "+missing), nil, []string{"federation.tls_key", missing}},
		{"cert not PEM", federationYAML("tls_cert: "+garbage, "tls_key: "+key), nil,
			[]string{"federation.tls_cert " + garbage, "no PEM CERTIFICATE"}},
		{"cert does not parse", federationYAML("tls_cert: "+badCert, "tls_key: "+key), nil,
			[]string{"federation.tls_cert " + badCert, "certificate 1"}},
		{"key not PEM", federationYAML("tls_cert: "+cert, "tls_key: "+garbage), nil,
			[]string{"federation.tls_key " + garbage, "no PEM private key"}},
		{"key does not parse", federationYAML("tls_cert: "+cert, "tls_key: "+badKey), nil,
			[]string{"federation.tls_key " + badKey, "PRIVATE KEY"}},
		{"encrypted key", federationYAML("tls_cert: "+cert, "tls_key: "+encrypted), nil, []string{encrypted, "encrypted"}},
		{"key of another certificate", federationYAML("tls_cert: "+cert, "tls_key: "+otherKey), nil,
			[]string{otherKey, cert, "own certificate"}},
		{"chain not leaf first", federationYAML("tls_cert: "+reversed, "tls_key: "+key), nil,
			[]string{reversed, "own certificate"}},
		{"CA file missing", federationYAML("extra_ca_file: " + missing), nil, []string{"federation.extra_ca_file", missing}},
		{"CA file from env not PEM", "", map[string]string{EnvFederationCA: garbage},
			[]string{"federation.extra_ca_file " + garbage, "no PEM CERTIFICATE"}},
	} {
		_, err := loadYAML(t, tc.yaml, tc.env)
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: err = %v, want mention of %q", tc.name, err, w)
			}
		}
	}
}

// TestFederationExtraCA: the extra CAs join the system roots for outbound
// federation.
func TestFederationExtraCA(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	path := filepath.Join(dir, "ca.pem")
	os.WriteFile(path, pemOf("CERTIFICATE", ca.der), 0o600)
	cfg, err := loadYAML(t, "", map[string]string{EnvFederationCA: path})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := cfg.Federation.RootCAs()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.cert.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
		t.Fatalf("extra CA not trusted: %v", err)
	}
	none, _ := loadYAML(t, "", nil)
	pool, err = none.Federation.RootCAs()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.cert.Verify(x509.VerifyOptions{Roots: pool}); err == nil {
		t.Fatal("a CA nobody configured is trusted")
	}
}

// TestFederationDefaults: on, no separate listener, no notaries, a week's
// key validity.
func TestFederationDefaults(t *testing.T) {
	cfg, err := loadYAML(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	f := cfg.Federation
	if !f.Enabled || f.Listen != "" || f.TLSCert != "" || f.ExtraCAFile != "" || f.AllowPrivateAddresses ||
		len(f.KeyNotaries) != 0 || f.KeyValidityPeriod != 7*24*time.Hour {
		t.Fatalf("defaults = %+v", f)
	}
}
