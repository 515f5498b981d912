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

type roomTyping struct {
	nid     int64 // the room's storage ID, for wake-ups
	users   map[string]*time.Timer
	version int64
}

// SetTyping starts (for timeout, bounded) or stops a user's typing in a
// room the user is joined to.
func (s *Service) SetTyping(ctx context.Context, userID, roomID string, typing bool, timeout time.Duration) error {
	info, _, err := s.joinedRoom(ctx, userID, roomID)
	if err != nil {
		return err
	}
	s.setTyping(info.NID, roomID, userID, typing, min(max(timeout, minTypingTimeout), maxTypingTimeout))
	return nil
}

func (s *Service) setTyping(roomNID int64, roomID, userID string, typing bool, timeout time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := s.typing[roomID]
	if rt == nil {
		rt = &roomTyping{nid: roomNID, users: map[string]*time.Timer{}}
		s.typing[roomID] = rt
	}
	room := notifier.Targets{Rooms: []int64{rt.nid}}
	old, was := rt.users[userID]
	if was {
		old.Stop()
		delete(rt.users, userID)
	}
	if typing {
		var timer *time.Timer
		timer = time.AfterFunc(timeout, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if rt.users[userID] == timer {
				delete(rt.users, userID)
				rt.version = s.bump(room)
			}
		})
		rt.users[userID] = timer
	}
	if typing || was {
		rt.version = s.bump(room)
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
