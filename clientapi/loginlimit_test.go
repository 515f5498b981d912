package clientapi

import (
	"errors"
	"testing"
	"time"

	"matrixhs/internal/httputil"
)

func TestLoginLimiterBurstAndRefill(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLoginLimiter()
	l.now = func() time.Time { return now }
	keys := []string{"ip:1.2.3.4", "user:alice"}
	for i := 0; i < loginBurst; i++ {
		if err := l.check(keys); err != nil {
			t.Fatalf("attempt %d refused: %v", i+1, err)
		}
		l.failed(keys)
	}
	err := l.check(keys)
	var he *httputil.Error
	if !errors.As(err, &he) || he.Status != 429 || he.Code != "M_LIMIT_EXCEEDED" {
		t.Fatalf("after %d failures: %v", loginBurst, err)
	}
	// Another account from another address is unaffected.
	if err := l.check([]string{"ip:5.6.7.8", "user:bob"}); err != nil {
		t.Fatalf("unrelated login refused: %v", err)
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
	if err := l.check(keys); err != nil || len(l.buckets) != 0 {
		t.Fatalf("full buckets should be forgotten: %v, %d left", err, len(l.buckets))
	}
}
