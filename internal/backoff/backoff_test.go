package backoff

import (
	"testing"
	"time"
)

func TestAfterDoublesUpToTheCapWithJitter(t *testing.T) {
	for failures, base := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 7: 60 * time.Second, 100: 60 * time.Second} {
		for range 50 {
			if d := After(failures, time.Second, time.Minute); d > base || d < base*3/4 {
				t.Fatalf("After(%d) = %v, want within [%v, %v]", failures, d, base*3/4, base)
			}
		}
	}
}
