package fedauth

import (
	"net/http"
	"time"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"matrixhs/internal/httputil"
	"matrixhs/internal/ratelimit"
)

// DefaultMaxBody bounds the body of an authenticated federation request
// (read whole, before the signature is checked): every endpoint but /send
// takes one event or a small query. Endpoints that need more say so
// (HandlerWithBody).
const DefaultMaxBody = 1 << 20

// maxLimitedOrigins bounds the origins whose budgets are tracked at once
// (past it newcomers share one bucket; see internal/ratelimit).
const maxLimitedOrigins = 10_000

// LimitOrigins gives each origin a request budget: burst requests at once,
// then perSecond on average (a token bucket per origin). Requests past it
// are answered 429 M_LIMIT_EXCEEDED with retry_after_ms. Call before
// serving; perSecond <= 0 lifts the limit.
func (a *Authenticator) LimitOrigins(perSecond float64, burst int) {
	if perSecond <= 0 {
		a.origins = nil
		return
	}
	a.origins = ratelimit.New(ratelimit.Options{
		Burst: burst, Interval: time.Duration(float64(time.Second) / perSecond), MaxKeys: maxLimitedOrigins, Now: a.now,
	})
}

// admit takes one request from origin's budget, or refuses it. Only
// authenticated origins are counted: a forged origin cannot spend another
// server's budget.
func (a *Authenticator) admit(r *http.Request, origin spec.ServerName) error {
	if a.origins == nil {
		return nil
	}
	wait := a.origins.Allow(string(origin))
	if wait <= 0 {
		return nil
	}
	ms := max(wait.Milliseconds(), 1)
	httputil.Logger(r.Context()).WithField("origin", origin).Info("federation request refused: over the origin's rate limit")
	return httputil.LimitExceeded(ms, "Too many requests from %s", origin)
}
