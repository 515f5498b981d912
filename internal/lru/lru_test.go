package lru

import "testing"

func TestCacheDropsLeastRecentlyUsed(t *testing.T) {
	c := New[string, int](2)
	c.Add("a", 1)
	c.Add("b", 2)
	if _, ok := c.Get("a"); !ok { // a is now the most recent
		t.Fatal("a missing")
	}
	c.Add("c", 3)
	if _, ok := c.Get("b"); ok {
		t.Fatal("b should have been dropped")
	}
	for _, k := range []string{"a", "c"} {
		if _, ok := c.Get(k); !ok {
			t.Fatalf("%s missing", k)
		}
	}
	if c.Len() != 2 {
		t.Fatalf("len %d", c.Len())
	}
}

func TestCacheKeepsVetoedEntries(t *testing.T) {
	c := New[int, bool](2)
	c.KeepIf(func(_ int, busy bool) bool { return busy })
	c.Add(1, true)
	c.Add(2, false)
	c.Add(3, false) // 1 is oldest but busy: 2 goes
	if _, ok := c.Get(1); !ok {
		t.Fatal("busy entry dropped")
	}
	if _, ok := c.Get(2); ok {
		t.Fatal("idle entry kept")
	}
	c.Add(1, false)
	c.Add(4, false)
	c.Add(5, false)
	if c.Len() != 2 {
		t.Fatalf("len %d after release", c.Len())
	}
}

func TestCacheRemoveMatches(t *testing.T) {
	c := New[string, int](4)
	c.Add("a", 1)
	c.Remove("a", func(v int) bool { return v == 2 })
	if _, ok := c.Get("a"); !ok {
		t.Fatal("removed a non-matching entry")
	}
	c.Remove("a", func(v int) bool { return v == 1 })
	if _, ok := c.Get("a"); ok {
		t.Fatal("matching entry kept")
	}
	if got := c.AddIfAbsent("b", 5); got != 5 {
		t.Fatal(got)
	}
	if got := c.AddIfAbsent("b", 6); got != 5 {
		t.Fatal(got)
	}
}

func TestRemoveIf(t *testing.T) {
	c := New[int, string](10)
	for i := range 6 {
		c.Add(i, map[bool]string{true: "even", false: "odd"}[i%2 == 0])
	}
	c.RemoveIf(func(_ int, v string) bool { return v == "odd" })
	if c.Len() != 3 {
		t.Fatalf("len = %d", c.Len())
	}
	for i := range 6 {
		if _, ok := c.Get(i); ok != (i%2 == 0) {
			t.Fatalf("entry %d kept = %v", i, ok)
		}
	}
}
