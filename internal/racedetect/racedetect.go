// Package racedetect tells whether the race detector is compiled in, so
// that tests with a fixed time budget can grow it under -race, where code
// runs several times slower.
package racedetect

import "time"

// slowdown is how much longer the tests' work takes under the race
// detector (Go documents 2-20x CPU for instrumented code; the suite's
// budgets hold with 5x on two cores).
const slowdown = 5

// Scale is a time budget as it must be under the build's instrumentation:
// d itself normally, slowdown times d under -race.
func Scale(d time.Duration) time.Duration {
	if Enabled {
		return d * slowdown
	}
	return d
}
