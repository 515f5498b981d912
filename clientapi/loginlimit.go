package clientapi

import (
	"net/http"
	"strings"
	"sync"
	"time"

	"matrixhs/internal/httputil"
)

// Password guessing is slowed down: each client address and each account
// may fail a password login loginBurst times in a row, then once per
// loginRefill. Successful logins cost nothing, so people who know their
// password (and test suites) never meet the limit.
const (
	loginBurst      = 5
	loginRefill     = 20 * time.Second
	maxLoginBuckets = 10_000
)

type loginLimiter struct {
	mu      sync.Mutex
	buckets map[string]*loginBucket
	now     func() time.Time
}

type loginBucket struct {
	tokens float64
	at     time.Time
}

func newLoginLimiter() *loginLimiter {
	return &loginLimiter{buckets: map[string]*loginBucket{}, now: time.Now}
}

// loginKeys are the buckets a login attempt draws on: its address and the
// account it names (by localpart, however the user was written).
func loginKeys(r *http.Request, user string) []string {
	local := strings.ToLower(strings.TrimPrefix(user, "@"))
	local, _, _ = strings.Cut(local, ":")
	return []string{"ip:" + httputil.ClientIP(r), "user:" + local}
}

// check answers 429 M_LIMIT_EXCEEDED when any bucket is empty.
func (l *loginLimiter) check(keys []string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait time.Duration
	for _, k := range keys {
		b := l.refill(k)
		if b != nil && b.tokens < 1 {
			wait = max(wait, time.Duration((1-b.tokens)*float64(loginRefill)))
		}
	}
	if wait > 0 {
		return (&httputil.Error{Status: http.StatusTooManyRequests, Code: "M_LIMIT_EXCEEDED",
			Msg: "Too many failed logins; try again later"}).With("retry_after_ms", wait.Milliseconds())
	}
	return nil
}

// failed takes a token from each bucket.
func (l *loginLimiter) failed(keys []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buckets) >= maxLoginBuckets {
		l.buckets = map[string]*loginBucket{} // start over rather than grow without end
	}
	for _, k := range keys {
		b := l.refill(k)
		if b == nil {
			b = &loginBucket{tokens: loginBurst, at: l.now()}
			l.buckets[k] = b
		}
		b.tokens--
	}
}

// refill brings a bucket up to date (nil: never failed, or full again and
// forgotten).
func (l *loginLimiter) refill(k string) *loginBucket {
	b := l.buckets[k]
	if b == nil {
		return nil
	}
	now := l.now()
	b.tokens = min(loginBurst, b.tokens+now.Sub(b.at).Seconds()/loginRefill.Seconds())
	b.at = now
	if b.tokens >= loginBurst {
		delete(l.buckets, k)
		return nil
	}
	return b
}
