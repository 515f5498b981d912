package ephemeral

import (
	"context"
	"slices"
	"time"

	"matrixhs/internal/notifier"
)

// idleAfter turns "online" into "unavailable" when a user stops syncing.
const idleAfter = 5 * time.Minute

type presenceState struct {
	presence   string // online, unavailable, offline
	statusMsg  string
	lastActive time.Time
	version    int64
	// remote: a user of another server, as its server told us (remote.go):
	// currentlyActive is its word, heard when it last spoke.
	remote          bool
	currentlyActive bool
	heard           time.Time
}

// Presence is a user's presence as clients see it.
type Presence struct {
	Presence        string `json:"presence"`
	StatusMsg       string `json:"status_msg,omitempty"`
	LastActiveAgo   int64  `json:"last_active_ago,omitempty"`
	CurrentlyActive bool   `json:"currently_active"`
}

// validPresence reports whether p is a presence state.
func validPresence(p string) bool {
	return p == "online" || p == "unavailable" || p == "offline"
}

// SetPresence records a user's presence (online, unavailable or offline);
// activity refreshes last_active. A change wakes the long-polls of the
// user and of the user's rooms.
func (s *Service) SetPresence(userID, presence string, statusMsg *string, active bool) error {
	if !validPresence(presence) {
		return refuse(ErrInvalid, "presence must be online, unavailable or offline")
	}
	if s.presenceOff {
		return nil // accepted and ignored, as Synapse does
	}
	if s.setPresence(userID, presence, statusMsg, active) {
		s.wakePresence(userID)
		if s.fed != nil {
			s.fed.PresenceChanged(userID)
		}
	}
	return nil
}

// wakePresence wakes the long-polls that hear of a user's presence.
func (s *Service) wakePresence(userIDs ...string) {
	if s.wake == nil || len(userIDs) == 0 {
		return
	}
	t := notifier.Targets{Users: userIDs}
	if s.roomsOf != nil {
		for _, u := range userIDs {
			t.Rooms = append(t.Rooms, s.roomsOf(u)...)
		}
	}
	s.wake(t)
}

func (s *Service) setPresence(userID, presence string, statusMsg *string, active bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.presence[userID]
	if p == nil {
		p = &presenceState{presence: "offline"}
		s.presence[userID] = p
	}
	if p.remote {
		return false // another server's user: only its server speaks for it
	}
	changed := p.presence != presence
	p.presence = presence
	if statusMsg != nil && *statusMsg != p.statusMsg {
		p.statusMsg = *statusMsg
		changed = true
	}
	if active {
		// A refreshed last_active is news only when it turns "currently
		// active" on again; otherwise clients compute ages themselves.
		if s.now().Sub(p.lastActive) > idleAfter {
			changed = true
		}
		p.lastActive = s.now()
	}
	if changed {
		s.version++
		p.version = s.version
		s.lastPresence = p.version
	}
	return changed
}

// PresenceOf is target's presence as requester may see it: their own, or
// that of someone they share a room with (ErrNoSharedRoom otherwise).
func (s *Service) PresenceOf(ctx context.Context, requester, target string) (Presence, error) {
	if target != requester {
		mates, err := s.db.RoomMates(ctx, requester)
		if err != nil {
			return Presence{}, err
		}
		if !slices.Contains(mates, target) {
			return Presence{}, refuse(ErrNoSharedRoom, "You do not share a room with %s", target)
		}
	}
	p, _ := s.Presence(target)
	return p, nil
}

// PresenceChangedSince reports whether anyone's presence changed after version v.
func (s *Service) PresenceChangedSince(v int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.presenceOff && s.lastPresence > v
}

// Presence returns a user's presence and the version it last changed at
// (0: never), for sync, which decides itself whom a user may see.
func (s *Service) Presence(userID string) (Presence, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.presence[userID]
	if p == nil || s.presenceOff {
		return Presence{Presence: "offline"}, 0
	}
	out := Presence{Presence: p.presence, StatusMsg: p.statusMsg}
	if p.remote {
		return p.remoteView(s.now()), p.version
	}
	if !p.lastActive.IsZero() {
		ago := s.now().Sub(p.lastActive)
		out.LastActiveAgo = ago.Milliseconds()
		out.CurrentlyActive = p.presence == "online" && ago < idleAfter
		if p.presence == "online" && ago >= idleAfter {
			out.Presence = "unavailable" // idle decay
		}
	}
	return out, p.version
}
