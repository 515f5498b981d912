// Package fedclient is the outbound side of federation: server discovery
// (well-known delegation, SRV records, port 8448), a transport that only
// reaches addresses the filter permits (loopback, private and link-local
// ones are refused unless allowed), verifies TLS against the system roots
// plus configured ones, honours HTTPS_PROXY/NO_PROXY and reuses connections
// per destination, and a client that signs every request with the
// server's key (the X-Matrix Authorization header).
//
// Use Client.Do for a signed JSON request to any federation endpoint, or
// the embedded gomatrixserverlib fclient.FederationClient for its typed
// calls (MakeJoin, SendJoin, SendTransaction, LookupState…; pass
// Client.ServerName() as their origin).
package fedclient

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/matrix-org/gomatrix"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/safenet"
)

// Defaults of Options.
const (
	DefaultTimeout          = 60 * time.Second
	DefaultDialTimeout      = 10 * time.Second
	DefaultMaxResponseBytes = 100 << 20
	userAgent               = "matrixhs"
)

// Options configure a Client.
type Options struct {
	// ServerName, KeyID and PrivateKey are this server's identity: every
	// request is signed with them.
	ServerName spec.ServerName
	KeyID      gomatrixserverlib.KeyID
	PrivateKey ed25519.PrivateKey

	// Disabled makes every request fail with ErrDisabled (federation
	// turned off).
	Disabled bool
	// AllowPrivate lets federation reach loopback, private and link-local
	// addresses (servers on one private network, tests).
	AllowPrivate bool
	// Filter, when set, decides which addresses may be reached instead.
	Filter *safenet.Filter
	// RootCAs verify other servers' certificates (nil: the system roots,
	// which honour SSL_CERT_FILE and SSL_CERT_DIR).
	RootCAs *x509.CertPool
	// Proxy picks a proxy per request (nil: HTTPS_PROXY and NO_PROXY from
	// the environment).
	Proxy func(*http.Request) (*url.URL, error)
	// SRVResolver and HostResolver look up SRV records and host addresses
	// (nil: the system's DNS).
	SRVResolver  SRVResolver
	HostResolver safenet.Resolver

	// Timeout bounds a whole request (DefaultTimeout), DialTimeout one
	// connection attempt (DefaultDialTimeout); MaxResponseBytes bounds a
	// response body (DefaultMaxResponseBytes).
	Timeout          time.Duration
	DialTimeout      time.Duration
	MaxResponseBytes int64
	// Now is the clock (time.Now).
	Now func() time.Time
}

// Client makes signed requests to other servers.
type Client struct {
	// FederationClient is gomatrixserverlib's typed client on this
	// client's transport and identity.
	fclient.FederationClient

	origin    spec.ServerName
	keyID     gomatrixserverlib.KeyID
	key       ed25519.PrivateKey
	http      *http.Client
	transport *Transport
}

// New builds a client.
func New(opts Options) (*Client, error) {
	if opts.ServerName == "" || opts.KeyID == "" || len(opts.PrivateKey) != ed25519.PrivateKeySize {
		return nil, errors.New("fedclient: a server name and signing key are required")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.MaxResponseBytes <= 0 {
		opts.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	tr := newTransport(opts)
	identity := &fclient.SigningIdentity{ServerName: opts.ServerName, KeyID: opts.KeyID, PrivateKey: opts.PrivateKey}
	return &Client{
		FederationClient: fclient.NewFederationClient([]*fclient.SigningIdentity{identity},
			fclient.WithTransport(tr), fclient.WithTimeout(opts.Timeout), fclient.WithUserAgent(userAgent)),
		origin:    opts.ServerName,
		keyID:     opts.KeyID,
		key:       opts.PrivateKey,
		http:      &http.Client{Transport: tr, Timeout: opts.Timeout, CheckRedirect: noRedirects},
		transport: tr,
	}, nil
}

// noRedirects hands 3xx answers to the caller: a federation request is
// signed for one destination and path.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// ServerName is the origin of this client's requests.
func (c *Client) ServerName() spec.ServerName { return c.origin }

// Transport is the client's transport (discovery, connections).
func (c *Client) Transport() *Transport { return c.transport }

// RemoteError is a non-2xx answer from another server.
type RemoteError struct {
	Status  int
	Errcode string
	Message string
	Body    []byte
}

func (e *RemoteError) Error() string {
	if e.Errcode != "" {
		return fmt.Sprintf("remote server answered %d %s: %s", e.Status, e.Errcode, e.Message)
	}
	return fmt.Sprintf("remote server answered %d", e.Status)
}

// StatusCode is the HTTP status of a remote server's error answer (from Do
// or from the typed calls), 0 when err is not one (unreachable server,
// bad response).
func StatusCode(err error) int {
	var re *RemoteError
	if errors.As(err, &re) {
		return re.Status
	}
	var he gomatrix.HTTPError
	if errors.As(err, &he) {
		return he.Code
	}
	return 0
}

// maxErrorBody bounds what is kept of an error answer.
const maxErrorBody = 64 << 10

// Do sends a request signed with X-Matrix to destination: path is the
// escaped path and query ("/_matrix/federation/v1/query/profile?user_id=…"),
// body (nil for none) is sent as JSON, and a 2xx answer is decoded into out
// (unless nil). A non-2xx answer is a *RemoteError.
func (c *Client) Do(ctx context.Context, method string, destination spec.ServerName, path string, body, out any) error {
	req, err := c.NewRequest(ctx, method, destination, path, body)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s%s: %w", method, destination, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		re := &RemoteError{Status: resp.StatusCode, Body: raw}
		var mErr struct {
			Errcode string `json:"errcode"`
			Error   string `json:"error"`
		}
		if json.Unmarshal(raw, &mErr) == nil {
			re.Errcode, re.Message = mErr.Errcode, mErr.Error
		}
		return re
	}
	if out == nil {
		_, err := io.Copy(io.Discard, resp.Body)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s%s: decoding the answer: %w", method, destination, path, err)
	}
	return nil
}

// NewRequest builds a signed request, for callers that read the answer
// themselves (streams) through HTTPClient.
func (c *Client) NewRequest(ctx context.Context, method string, destination spec.ServerName, path string, body any) (*http.Request, error) {
	fr := fclient.NewFederationRequest(method, c.origin, destination, path)
	if body != nil {
		if err := fr.SetContent(body); err != nil {
			return nil, fmt.Errorf("encoding request body: %w", err)
		}
	}
	if err := fr.Sign(c.origin, c.keyID, c.key); err != nil {
		return nil, fmt.Errorf("signing request: %w", err)
	}
	req, err := fr.HTTPRequest()
	if err != nil {
		return nil, err
	}
	if body != nil {
		// HTTPRequest's body is a bytes.Reader: let retries on the next
		// destination send it again.
		content := fr.Content()
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(content)), nil }
	}
	req.Header.Set("User-Agent", userAgent)
	return req.WithContext(ctx), nil
}

// HTTPClient sends requests made by NewRequest (no redirects followed).
func (c *Client) HTTPClient() *http.Client { return c.http }
