package ephemeral

import (
	"context"
	"sort"
	"time"

	"matrixhs/internal/notifier"
)

// Typing notifications last DefaultTypingTimeout unless the client says,
// within [minTypingTimeout, maxTypingTimeout].
const (
	DefaultTypingTimeout = 30 * time.Second
	minTypingTimeout     = time.Second
	maxTypingTimeout     = 2 * time.Minute
)

const (
	// maxTypers bounds the users typing in all rooms at once: past it a
	// new typer is not recorded (remote servers' users are bounded by the
	// rooms' members anyway; this caps the total).
	maxTypers = 20_000
	// forgetTypingAfter is how long a room nobody types in keeps its
	// entry (and version) before it is forgotten, as Synapse does:
	// clients time typing out themselves by then.
	forgetTypingAfter = 10 * time.Minute
)

type roomTyping struct {
	nid     int64 // the room's storage ID, for wake-ups
	users   map[string]*time.Timer
	version int64
	changed time.Time // the last change, for forgetting idle rooms
}

// SetTyping starts (for timeout, bounded) or stops a user's typing in a
// room the user is joined to.
func (s *Service) SetTyping(ctx context.Context, userID, roomID string, typing bool, timeout time.Duration) error {
	info, _, err := s.joinedRoom(ctx, userID, roomID)
	if err != nil {
		return err
	}
	if s.setTyping(info.NID, roomID, userID, typing, min(max(timeout, minTypingTimeout), maxTypingTimeout), true) && s.fed != nil {
		s.fed.TypingChanged(roomID, userID)
	}
	return nil
}

// setTyping records a change and reports whether it was one. A local
// user's typing that times out is told to federation (other servers time
// remote typing out themselves, but a stop is news sooner).
func (s *Service) setTyping(roomNID int64, roomID, userID string, typing bool, timeout time.Duration, local bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.forgetIdleRooms(now)
	rt := s.typing[roomID]
	if rt == nil {
		if !typing {
			return false
		}
		rt = &roomTyping{nid: roomNID, users: map[string]*time.Timer{}}
		s.typing[roomID] = rt
	}
	room := notifier.Targets{Rooms: []int64{rt.nid}}
	old, was := rt.users[userID]
	if was {
		old.Stop()
		delete(rt.users, userID)
		s.typers--
	}
	if typing && !was && s.typers >= maxTypers {
		return false
	}
	if typing {
		var timer *time.Timer
		timer = time.AfterFunc(timeout, func() {
			if !s.typingTimedOut(rt, room, userID, &timer) {
				return
			}
			if local && s.fed != nil {
				s.fed.TypingChanged(roomID, userID)
			} else if !local && s.remote != nil {
				s.remote.RemoteTypingChanged(roomID, userID)
			}
		})
		rt.users[userID] = timer
		s.typers++
	}
	if !typing && !was {
		return false
	}
	rt.version = s.bump(room)
	rt.changed = now
	// A user who goes on typing is no news for clients, but the bump is
	// harmless and federation hears of the new timeout.
	return true
}

// typingTimedOut ends a typing notification whose timer fired (unless a
// newer one replaced it meanwhile). timer is read under s.mu, which its
// assignment happened under.
func (s *Service) typingTimedOut(rt *roomTyping, room notifier.Targets, userID string, timer **time.Timer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rt.users[userID] != *timer {
		return false
	}
	delete(rt.users, userID)
	s.typers--
	rt.version = s.bump(room)
	rt.changed = s.now()
	return true
}

// forgetIdleRooms drops the entries of rooms nobody has typed in for a
// while (at most once a minute; s.mu held).
func (s *Service) forgetIdleRooms(now time.Time) {
	if now.Sub(s.lastTypingSweep) < time.Minute {
		return
	}
	s.lastTypingSweep = now
	for id, rt := range s.typing {
		if len(rt.users) == 0 && now.Sub(rt.changed) > forgetTypingAfter {
			delete(s.typing, id)
		}
	}
}

// Typing returns who types in a room, sorted, and whether that changed
// after version since.
func (s *Service) Typing(roomID string, since int64) ([]string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := s.typing[roomID]
	if rt == nil {
		return nil, false
	}
	users := make([]string, 0, len(rt.users))
	for u := range rt.users {
		users = append(users, u)
	}
	sort.Strings(users)
	return users, rt.version > since
}

// IsTyping reports whether a user types in a room now.
func (s *Service) IsTyping(roomID, userID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := s.typing[roomID]
	return rt != nil && rt.users[userID] != nil
}
