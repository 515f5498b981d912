package clientapi

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"matrixhs/internal/httputil"
)

func TestLoginLimiterBurstAndRefill(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLoginLimiter(func() time.Time { return now })
	keys := loginKeys{address: "1.2.3.4", account: "alice"}
	for i := 0; i < loginBurst; i++ {
		if err := l.check(keys); err != nil {
			t.Fatalf("attempt %d refused: %v", i+1, err)
		}
		l.failed(keys)
	}
	err := l.check(keys)
	var he *httputil.Error
	if !errors.As(err, &he) || he.Status != 429 || he.Code != "M_LIMIT_EXCEEDED" || he.Extra["retry_after_ms"] != loginRefill.Milliseconds() {
		t.Fatalf("after %d failures: %#v", loginBurst, err)
	}
	// Another account from another address is unaffected; the same account
	// from elsewhere, or another account from here, is not.
	if err := l.check(loginKeys{"5.6.7.8", "bob"}); err != nil {
		t.Fatalf("unrelated login refused: %v", err)
	}
	if l.check(loginKeys{"5.6.7.8", "alice"}) == nil || l.check(loginKeys{"1.2.3.4", "bob"}) == nil {
		t.Fatal("a limited account or address got through")
	}
	now = now.Add(loginRefill)
	if err := l.check(keys); err != nil {
		t.Fatalf("refused after a refill period: %v", err)
	}
	l.failed(keys)
	if err := l.check(keys); err == nil {
		t.Fatal("a failure after the refill should empty the bucket again")
	}
	now = now.Add(loginBurst * loginRefill)
	if err := l.check(keys); err != nil || l.addresses.Len()+l.accounts.Len() != 0 {
		t.Fatalf("full buckets should be forgotten: %v", err)
	}
}

// Thousands of failures from other addresses and for other accounts (the
// old limiter forgot everything after 10,000 entries) leave a locked
// account locked.
func TestLoginLimiterFloodKeepsLockedAccount(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLoginLimiter(func() time.Time { return now })
	victim := loginKeys{address: "198.51.100.1", account: "alice"}
	for i := 0; i < loginBurst; i++ {
		l.failed(victim)
	}
	for i := 0; i < maxLoginAccounts+5200; i++ {
		l.failed(loginKeys{address: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), account: fmt.Sprintf("u%d", i)})
	}
	if l.check(loginKeys{address: "203.0.113.9", account: "alice"}) == nil {
		t.Fatal("a flood of other failures unlocked a locked account")
	}
	if n := l.accounts.Len(); n > maxLoginAccounts {
		t.Fatalf("account table grew to %d", n)
	}
}

func TestAddressKeyGroupsIPv6By64(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":            "192.0.2.1",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2::ffff":   "2001:db8:1:2::/64",
		"not-an-ip":            "not-an-ip",
	} {
		if got := addressKey(in); got != want {
			t.Errorf("addressKey(%s) = %s, want %s", in, got, want)
		}
	}
}
