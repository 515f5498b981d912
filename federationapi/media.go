package federationapi

import (
	"context"
	"fmt"
	"net/http"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

// What the media repository needs of federation (mediaapi.Federation):
// signed requests to other servers whose answers it reads itself
// (multipart downloads), and the authentication of other servers'
// requests.

// SignedGet sends a signed GET for path (escaped, with its query) to server
// and returns the answer whatever its status; the caller closes the body.
func (f *API) SignedGet(ctx context.Context, server, path string) (*http.Response, error) {
	if f.opts.Disabled {
		return nil, fmt.Errorf("federation is disabled")
	}
	req, err := f.Client.NewRequest(ctx, http.MethodGet, spec.ServerName(server), path, nil)
	if err != nil {
		return nil, err
	}
	return f.Client.HTTPClient().Do(req)
}

// RequireServer serves next to requests signed by another server (X-Matrix).
func (f *API) RequireServer(next http.Handler) http.Handler { return f.Auth.Require(next) }

// PlainGet fetches an https URL (a media download's redirect) through the
// outbound transport, with its address checks and size cap; no signature.
func (f *API) PlainGet(ctx context.Context, rawURL string) (*http.Response, error) {
	if f.opts.Disabled {
		return nil, fmt.Errorf("federation is disabled")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	if req.URL.Scheme != "https" {
		return nil, fmt.Errorf("only https URLs are fetched, not %q", req.URL.Scheme)
	}
	return f.Client.HTTPClient().Do(req)
}
