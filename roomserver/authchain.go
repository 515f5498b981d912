package roomserver

import (
	"context"
	"errors"
	"sort"

	"github.com/matrix-org/gomatrixserverlib"

	"matrixhs/internal/lru"
	"matrixhs/storage"
)

// authChainCache remembers each event's full auth chain as sorted event
// IDs, so state resolution walks an event's chain from the database once.
// An event's chain never changes.
type authChainCache struct {
	c *lru.Cache[string, []string]
}

func newAuthChainCache(size int) *authChainCache {
	return &authChainCache{c: lru.New[string, []string](size)}
}

// authChain returns the union of the auth chains of events, as events.
func (rs *Roomserver) authChain(ctx context.Context, r *room, events []gomatrixserverlib.PDU) ([]gomatrixserverlib.PDU, error) {
	ids := map[string]bool{}
	for _, ev := range events {
		chain, err := rs.chainOf(ctx, r, ev)
		if err != nil {
			return nil, err
		}
		for _, id := range chain {
			ids[id] = true
		}
	}
	if r.version.DomainlessRoomIDs() {
		ids[createEventID(r)] = true
	}
	out := make([]gomatrixserverlib.PDU, 0, len(ids))
	for id := range ids {
		pdu, err := rs.loadEvent(ctx, r, id)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, &MissingAuthEventsError{Missing: []string{id}}
		}
		if err != nil {
			return nil, err
		}
		out = append(out, pdu)
	}
	return out, nil
}

// chainOf computes an event's auth chain (its auth events, theirs, ...),
// depth first without recursion, memoising every event on the way.
func (rs *Roomserver) chainOf(ctx context.Context, r *room, ev gomatrixserverlib.PDU) ([]string, error) {
	if c, ok := rs.chains.c.Get(ev.EventID()); ok {
		return c, nil
	}
	type frame struct {
		pdu gomatrixserverlib.PDU
	}
	// done holds the chains computed in this walk: the cache may drop an
	// entry before its parent is computed.
	done := map[string][]string{}
	known := func(id string) ([]string, bool) {
		if c, ok := done[id]; ok {
			return c, true
		}
		return rs.chains.c.Get(id)
	}
	stack := []frame{{ev}}
	onStack := map[string]bool{ev.EventID(): true}
	for len(stack) > 0 {
		top := stack[len(stack)-1]
		ready := true
		for _, id := range top.pdu.AuthEventIDs() {
			if _, ok := known(id); ok {
				continue
			}
			if onStack[id] {
				return nil, errors.New("auth events form a cycle at " + id)
			}
			pdu, err := rs.loadEvent(ctx, r, id)
			if errors.Is(err, storage.ErrNotFound) {
				return nil, &MissingAuthEventsError{EventID: top.pdu.EventID(), Missing: []string{id}}
			}
			if err != nil {
				return nil, err
			}
			stack = append(stack, frame{pdu})
			onStack[id] = true
			ready = false
			break
		}
		if !ready {
			continue
		}
		set := map[string]bool{}
		for _, id := range top.pdu.AuthEventIDs() {
			set[id] = true
			c, _ := known(id)
			for _, x := range c {
				set[x] = true
			}
		}
		chain := make([]string, 0, len(set))
		for id := range set {
			chain = append(chain, id)
		}
		sort.Strings(chain)
		done[top.pdu.EventID()] = chain
		rs.chains.c.Add(top.pdu.EventID(), chain)
		stack = stack[:len(stack)-1]
		delete(onStack, top.pdu.EventID())
	}
	return done[ev.EventID()], nil
}
