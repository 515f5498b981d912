package clientapi

import (
	"container/list"
	"slices"
	"sync"
	"time"

	"matrixhs/internal/accounts"
)

const (
	uiaSessionLifetime = 15 * time.Minute
	// Sessions are bounded: sign-up sessions (anyone can start one) and
	// signed-in users' sessions in separate pools, so a flood of one never
	// evicts the other; a full pool drops its oldest session, whose client
	// then starts over.
	maxRegistrationSessions = 10_000
	maxUserSessions         = 10_000
	// One user's sessions beyond this drop that user's oldest.
	maxSessionsPerUser = 10
)

// uiaSessions tracks user-interactive auth sessions in memory: they live for
// minutes and a restart simply makes the client start over. All sessions
// live equally long, so creation order is expiry order: each pool is a
// queue, and expired sessions are dropped from its front in O(1) each.
type uiaSessions struct {
	mu   sync.Mutex
	now  func() time.Time
	byID map[string]*uiaSession
	// anon holds registration sessions, users those of signed-in users,
	// oldest first.
	anon, users *list.List
	// perUser lists each user's session IDs, oldest first.
	perUser map[string][]string
}

type uiaSession struct {
	id        string
	completed []string
	expires   time.Time
	// op is the method and path the session was started for: a session
	// cannot authorise a different operation.
	op string
	// owner is the user who started it ("" for registration): nobody else
	// can continue it.
	owner string
	// regToken is the registration token a m.login.registration_token stage accepted.
	regToken string
	elem     *list.Element
}

func newUIASessions(now func() time.Time) *uiaSessions {
	return &uiaSessions{now: now, byID: make(map[string]*uiaSession), anon: list.New(), users: list.New(),
		perUser: make(map[string][]string)}
}

// create starts a session for op on behalf of owner. Callers hold u.mu.
func (u *uiaSessions) create(op, owner string) *uiaSession {
	now := u.now()
	u.dropExpired(u.anon, now)
	u.dropExpired(u.users, now)
	pool, limit := u.anon, maxRegistrationSessions
	if owner != "" {
		pool, limit = u.users, maxUserSessions
		if ids := u.perUser[owner]; len(ids) >= maxSessionsPerUser {
			u.remove(u.byID[ids[0]])
		}
	}
	if pool.Len() >= limit {
		u.remove(pool.Front().Value.(*uiaSession))
	}
	s := &uiaSession{id: accounts.NewDeviceID() + accounts.NewDeviceID(), expires: now.Add(uiaSessionLifetime), op: op, owner: owner}
	s.elem = pool.PushBack(s)
	u.byID[s.id] = s
	if owner != "" {
		u.perUser[owner] = append(u.perUser[owner], s.id)
	}
	return s
}

// get returns owner's live session id, or nil. Callers hold u.mu.
func (u *uiaSessions) get(id, owner string) *uiaSession {
	s := u.byID[id]
	if s == nil || s.owner != owner || u.now().After(s.expires) {
		return nil
	}
	return s
}

// remove forgets a session. Callers hold u.mu.
func (u *uiaSessions) remove(s *uiaSession) {
	if s == nil || u.byID[s.id] != s {
		return
	}
	delete(u.byID, s.id)
	if s.owner == "" {
		u.anon.Remove(s.elem)
		return
	}
	u.users.Remove(s.elem)
	ids := slices.DeleteFunc(u.perUser[s.owner], func(id string) bool { return id == s.id })
	if len(ids) == 0 {
		delete(u.perUser, s.owner)
	} else {
		u.perUser[s.owner] = ids
	}
}

func (u *uiaSessions) dropExpired(pool *list.List, now time.Time) {
	for e := pool.Front(); e != nil; e = pool.Front() {
		s := e.Value.(*uiaSession)
		if !now.After(s.expires) {
			return
		}
		u.remove(s)
	}
}
