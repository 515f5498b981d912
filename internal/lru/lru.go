// Package lru is a small least-recently-used cache, safe for concurrent use.
package lru

import (
	"container/list"
	"sync"
)

// Cache holds up to a fixed number of entries, dropping the least recently
// used one when full. An optional keep function may veto dropping an entry
// (it is then moved to the front and the next candidate is tried).
type Cache[K comparable, V any] struct {
	mu    sync.Mutex
	max   int
	ll    *list.List
	items map[K]*list.Element
	keep  func(K, V) bool
}

type entry[K comparable, V any] struct {
	key K
	val V
}

// New returns a cache of at most max entries (at least 1).
func New[K comparable, V any](max int) *Cache[K, V] {
	if max < 1 {
		max = 1
	}
	return &Cache[K, V]{max: max, ll: list.New(), items: make(map[K]*list.Element)}
}

// KeepIf sets a predicate that keeps entries from being dropped while it
// holds (e.g. an entry still in use). Call it before first use.
func (c *Cache[K, V]) KeepIf(keep func(K, V) bool) { c.keep = keep }

// Get returns the entry for k and marks it recently used.
func (c *Cache[K, V]) Get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		c.ll.MoveToFront(el)
		return el.Value.(*entry[K, V]).val, true
	}
	var zero V
	return zero, false
}

// Add stores v under k (replacing any entry) and drops old entries beyond
// the cache's size.
func (c *Cache[K, V]) Add(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		el.Value.(*entry[K, V]).val = v
		c.ll.MoveToFront(el)
		return
	}
	c.items[k] = c.ll.PushFront(&entry[K, V]{key: k, val: v})
	c.shrink()
}

// AddIfAbsent stores v under k unless an entry exists, and returns the entry
// now in the cache.
func (c *Cache[K, V]) AddIfAbsent(k K, v V) V {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		c.ll.MoveToFront(el)
		return el.Value.(*entry[K, V]).val
	}
	c.items[k] = c.ll.PushFront(&entry[K, V]{key: k, val: v})
	c.shrink()
	return v
}

// Remove drops k's entry if its value is v (compare reports equality), or
// unconditionally when compare is nil.
func (c *Cache[K, V]) Remove(k K, match func(V) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok && (match == nil || match(el.Value.(*entry[K, V]).val)) {
		c.ll.Remove(el)
		delete(c.items, k)
	}
}

// RemoveIf drops every entry the predicate holds for.
func (c *Cache[K, V]) RemoveIf(drop func(K, V) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, el := range c.items {
		if drop(k, el.Value.(*entry[K, V]).val) {
			c.ll.Remove(el)
			delete(c.items, k)
		}
	}
}

// Len is the number of entries.
func (c *Cache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

// shrink drops least recently used entries until the cache fits; entries
// the keep predicate holds on to are skipped (the cache may then stay over
// its size until they are released).
func (c *Cache[K, V]) shrink() {
	for el := c.ll.Back(); c.ll.Len() > c.max && el != nil; {
		prev := el.Prev()
		e := el.Value.(*entry[K, V])
		if c.keep == nil || !c.keep(e.key, e.val) {
			c.ll.Remove(el)
			delete(c.items, e.key)
		}
		el = prev
	}
}
