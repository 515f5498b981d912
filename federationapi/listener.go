package federationapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
)

// LoadCertificate reads a TLS certificate chain (PEM, the server's own
// certificate first, then its intermediates) and its private key (PEM:
// PKCS#8 "PRIVATE KEY", PKCS#1 "RSA PRIVATE KEY" or SEC1 "EC PRIVATE KEY").
func LoadCertificate(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate and key (the chain must start with the server's own certificate): %w", err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("TLS certificate: %w", err)
		}
	}
	return &cert, nil
}

// TLSListenerOptions tune a TLS listener.
type TLSListenerOptions struct {
	// Addr is where to listen ("0.0.0.0:8448"; port 0 picks one).
	Addr string
	// Certificate is served to every client; GetCertificate, when set,
	// is asked instead (certificates that change while running).
	Certificate    *tls.Certificate
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// ReadHeaderTimeout and IdleTimeout bound slow and idle connections
	// (default 30s and 2m); MaxConnections caps open connections (0: no
	// cap).
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	MaxConnections    int
}

// TLSListener serves a handler over TLS on its own address: the
// federation port.
type TLSListener struct {
	ln   net.Listener
	srv  *http.Server
	done chan error
}

// ListenTLS binds opts.Addr and serves handler over TLS (HTTP/1.1 and
// HTTP/2) in the background.
func ListenTLS(handler http.Handler, opts TLSListenerOptions) (*TLSListener, error) {
	if opts.Certificate == nil && opts.GetCertificate == nil {
		return nil, errors.New("the federation listener needs a TLS certificate")
	}
	if opts.ReadHeaderTimeout <= 0 {
		opts.ReadHeaderTimeout = 30 * time.Second
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 2 * time.Minute
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	if opts.GetCertificate != nil {
		cfg.GetCertificate = opts.GetCertificate
	} else {
		cfg.Certificates = []tls.Certificate{*opts.Certificate}
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("federation listener on %s: %w", opts.Addr, err)
	}
	inner := ln
	if opts.MaxConnections > 0 {
		inner = netutil.LimitListener(ln, opts.MaxConnections)
	}
	l := &TLSListener{
		ln: ln,
		srv: &http.Server{
			Handler:           handler,
			TLSConfig:         cfg,
			ReadHeaderTimeout: opts.ReadHeaderTimeout,
			IdleTimeout:       opts.IdleTimeout,
			// Failed handshakes (scanners, clients that distrust us) are
			// routine on a public port.
			ErrorLog: log.New(io.Discard, "", 0),
		},
		done: make(chan error, 1),
	}
	go func() {
		err := l.srv.ServeTLS(inner, "", "")
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		l.done <- err
	}()
	return l, nil
}

// Addr is the bound address.
func (l *TLSListener) Addr() net.Addr { return l.ln.Addr() }

// Done yields the serve loop's error if it stops on its own.
func (l *TLSListener) Done() <-chan error { return l.done }

// Shutdown stops accepting connections and waits for requests in flight
// (up to ctx), then closes the rest.
func (l *TLSListener) Shutdown(ctx context.Context) error {
	if err := l.srv.Shutdown(ctx); err != nil {
		l.srv.Close()
		return fmt.Errorf("federation listener shutdown: %w", err)
	}
	return nil
}
