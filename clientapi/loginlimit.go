package clientapi

import (
	"net/http"
	"net/netip"
	"strings"
	"time"

	"matrixhs/internal/httputil"
	"matrixhs/internal/ratelimit"
)

// Password guessing is slowed down: each client address and each account
// may fail a password check (at login or in user-interactive auth)
// loginBurst times in a row, then once per loginRefill. Successful checks
// cost nothing, so people who know their password (and test suites) never
// meet the limit.
const (
	loginBurst  = 5
	loginRefill = 20 * time.Second
	// Addresses and accounts are tracked in separate tables, so a flood of
	// addresses cannot crowd out a locked account. A penalty is never
	// dropped early: when a table is full, newcomers share one bucket.
	maxLoginAddresses = 20_000
	maxLoginAccounts  = 20_000
)

type loginLimiter struct {
	addresses *ratelimit.Limiter
	accounts  *ratelimit.Limiter
}

// loginKeys are the buckets a password check draws on.
type loginKeys struct{ address, account string }

func newLoginLimiter(now func() time.Time) *loginLimiter {
	opts := func(n int) ratelimit.Options {
		return ratelimit.Options{Burst: loginBurst, Interval: loginRefill, MaxKeys: n, Now: now}
	}
	return &loginLimiter{
		addresses: ratelimit.New(opts(maxLoginAddresses)),
		accounts:  ratelimit.New(opts(maxLoginAccounts)),
	}
}

// keysFor are the buckets of a password check for user (however written:
// by localpart, in any case, or as a full user ID) from r's client.
func keysFor(r *http.Request, user string) loginKeys {
	local := strings.ToLower(strings.TrimPrefix(user, "@"))
	local, _, _ = strings.Cut(local, ":")
	return loginKeys{address: addressKey(httputil.ClientIP(r)), account: local}
}

// addressKey groups IPv6 clients by /64, the block one subscriber usually
// holds: a single host can use any address in it.
func addressKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Is4() {
		return ip
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// check answers 429 M_LIMIT_EXCEEDED while either bucket is empty.
func (l *loginLimiter) check(k loginKeys) error {
	wait := max(l.addresses.Wait(k.address), l.accounts.Wait(k.account))
	if wait > 0 {
		return limitExceeded("Too many failed attempts; try again later", wait)
	}
	return nil
}

// failed records a failed password check.
func (l *loginLimiter) failed(k loginKeys) {
	l.addresses.Take(k.address)
	l.accounts.Take(k.account)
}

// limitExceeded is the 429 the spec defines for rate limits.
func limitExceeded(msg string, wait time.Duration) error {
	ms := max(wait.Milliseconds(), 1)
	return (&httputil.Error{Status: http.StatusTooManyRequests, Code: "M_LIMIT_EXCEEDED", Msg: msg}).
		With("retry_after_ms", ms)
}
