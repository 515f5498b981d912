package stateres_test

import (
	"fmt"
	"slices"
	"testing"
)

// TestEquivalentToGMSLv2 resolves many random signed forks of v10 and v11
// rooms with both resolvers and wants the same state, over forks where
// gomatrixserverlib's v2 follows the spec (see newForkGen).
func TestEquivalentToGMSLv2(t *testing.T) {
	seeds := 300
	if testing.Short() {
		seeds = 60
	}
	for _, version := range []string{"10", "11"} {
		t.Run("v"+version, func(t *testing.T) {
			seen := map[string]int{}
			for seed := range seeds {
				g := newForkGen(t, version, uint64(seed), true)
				states := g.fork(2+seed%2, 8+seed%12)
				for kind := range conflicts(states) {
					seen[kind]++
				}
				ours := g.r.mustResolve(states...)
				theirs, err := g.r.gmslResolve(states...)
				if err != nil {
					t.Fatalf("seed %d: gomatrixserverlib: %v", seed, err)
				}
				if d := diffStates(ours, theirs); d != "" {
					t.Errorf("seed %d: ours vs gomatrixserverlib: %s", seed, d)
				}
			}
			var kinds []string
			for k, n := range seen {
				kinds = append(kinds, fmt.Sprintf("%s:%d", k, n))
			}
			slices.Sort(kinds)
			t.Logf("forks with conflicts over: %v", kinds)
			for _, kind := range []string{"m.room.power_levels", "m.room.join_rules", "m.room.topic", "membership ban", "membership join", "membership leave"} {
				if seen[kind] == 0 {
					t.Errorf("no fork had a conflict over %s", kind)
				}
			}
		})
	}
}
