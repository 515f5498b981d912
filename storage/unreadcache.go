package storage

import (
	"maps"
	"sync"
)

// maxUnreadEntries bounds the unread cache; past it the cache starts over
// (a cold entry costs one exact count).
const maxUnreadEntries = 50_000

// unreadCache remembers a user's per-thread unread counts in a room as of a
// stream position, so the next sync counts only the push actions after it
// instead of everything since the user's receipt. Committed push actions
// are never changed, so counts up to a committed position stay exact until
// the user's receipts move.
type unreadCache struct {
	mu      sync.Mutex
	entries map[unreadKey]unreadEntry
}

type unreadKey struct {
	user string
	room int64
}

type unreadEntry struct {
	receipts map[string]int64        // the receipts the counts are relative to
	upTo     int64                   // counted up to this position
	counts   map[string]UnreadCounts // per thread, above that thread's threshold
}

// get returns a copy of the counts for key if they were computed against the
// same receipts, all at or below the cached position, and not past upTo.
func (c *unreadCache) get(key unreadKey, receipts map[string]int64, upTo int64) (map[string]UnreadCounts, int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || e.upTo > upTo || !maps.Equal(e.receipts, receipts) {
		return nil, 0, false
	}
	for _, pos := range receipts {
		if pos > e.upTo {
			// A receipt ahead of the counts: thresholds moved past them.
			return nil, 0, false
		}
	}
	return maps.Clone(e.counts), e.upTo, true
}

func (c *unreadCache) put(key unreadKey, receipts map[string]int64, upTo int64, counts map[string]UnreadCounts) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[key]; ok && e.upTo > upTo {
		return // a concurrent sync already counted further
	}
	if c.entries == nil || len(c.entries) >= maxUnreadEntries {
		c.entries = map[unreadKey]unreadEntry{}
	}
	c.entries[key] = unreadEntry{receipts: receipts, upTo: upTo, counts: maps.Clone(counts)}
}
