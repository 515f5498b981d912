// Package backoff computes the waits between retries of the outbound
// senders (federation destinations, appservices).
package backoff

import (
	"math/rand/v2"
	"time"
)

// After is the wait after the given number of consecutive failures:
// initial doubling, capped at maxWait, with jitter taking up to a quarter
// off (so peers that failed together are not retried together).
func After(failures int, initial, maxWait time.Duration) time.Duration {
	d := initial
	for i := 1; i < failures && d < maxWait; i++ {
		d *= 2
	}
	d = min(d, maxWait)
	return d - time.Duration(rand.Int64N(int64(d)/4+1))
}
