package clientapi

import (
	"sort"
	"sync"
	"time"

	"matrixhs/internal/notifier"
)

// ephemeral holds the state that is never stored: typing notifications and
// presence. Each change bumps one in-memory version, carried in sync tokens
// beside the stream position ("s<pos>_<version>"). After a restart versions
// start over; a token from before simply gets the current state again.
type ephemeral struct {
	mu      sync.Mutex
	version int64
	// wake tells the notifier whom a change concerns: the room for typing,
	// the user's rooms (roomsOf) for presence.
	wake     func(notifier.Targets)
	roomsOf  func(userID string) []int64
	typing   map[string]*roomTyping    // by room ID
	presence map[string]*presenceState // by user ID
	// lastPresence is the version of the latest presence change.
	lastPresence int64
	now          func() time.Time
}

type roomTyping struct {
	nid     int64 // the room's storage ID, for wake-ups
	users   map[string]*time.Timer
	version int64
}

type presenceState struct {
	presence   string // online, unavailable, offline
	statusMsg  string
	lastActive time.Time
	version    int64
}

// idleAfter turns "online" into "unavailable" when a user stops syncing.
const idleAfter = 5 * time.Minute

func newEphemeral(wake func(notifier.Targets), roomsOf func(string) []int64) *ephemeral {
	return &ephemeral{wake: wake, roomsOf: roomsOf, typing: map[string]*roomTyping{}, presence: map[string]*presenceState{}, now: time.Now}
}

// bump records a change that concerns t; e.mu must be held.
func (e *ephemeral) bump(t notifier.Targets) int64 {
	e.version++
	if e.wake != nil {
		e.wake(t)
	}
	return e.version
}

// Version is the version of the latest change.
func (e *ephemeral) Version() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.version
}

// SetTyping starts (for timeout) or stops a user's typing in a room.
func (e *ephemeral) SetTyping(roomNID int64, roomID, userID string, typing bool, timeout time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rt := e.typing[roomID]
	if rt == nil {
		rt = &roomTyping{nid: roomNID, users: map[string]*time.Timer{}}
		e.typing[roomID] = rt
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
			e.mu.Lock()
			defer e.mu.Unlock()
			if rt.users[userID] == timer {
				delete(rt.users, userID)
				rt.version = e.bump(room)
			}
		})
		rt.users[userID] = timer
	}
	if typing || was {
		rt.version = e.bump(room)
	}
}

// Typing returns who types in a room and whether that changed after version since.
func (e *ephemeral) Typing(roomID string, since int64) ([]string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rt := e.typing[roomID]
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

// SetPresence records a user's presence; activity refreshes last_active. A
// change wakes the long-polls of the user and of the user's rooms.
func (e *ephemeral) SetPresence(userID, presence string, statusMsg *string, active bool) {
	if e.setPresence(userID, presence, statusMsg, active) && e.wake != nil {
		t := notifier.Targets{Users: []string{userID}}
		if e.roomsOf != nil {
			t.Rooms = e.roomsOf(userID)
		}
		e.wake(t)
	}
}

func (e *ephemeral) setPresence(userID, presence string, statusMsg *string, active bool) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.presence[userID]
	if p == nil {
		p = &presenceState{presence: "offline"}
		e.presence[userID] = p
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
		if e.now().Sub(p.lastActive) > idleAfter {
			changed = true
		}
		p.lastActive = e.now()
	}
	if changed {
		e.version++
		p.version = e.version
		e.lastPresence = p.version
	}
	return changed
}

// PresenceChangedSince reports whether anyone's presence changed after version v.
func (e *ephemeral) PresenceChangedSince(v int64) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastPresence > v
}

// Presence is a user's presence as clients see it.
type Presence struct {
	Presence        string `json:"presence"`
	StatusMsg       string `json:"status_msg,omitempty"`
	LastActiveAgo   int64  `json:"last_active_ago,omitempty"`
	CurrentlyActive bool   `json:"currently_active"`
}

// GetPresence returns a user's presence and the version it last changed at.
func (e *ephemeral) GetPresence(userID string) (Presence, int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.presence[userID]
	if p == nil {
		return Presence{Presence: "offline"}, 0
	}
	out := Presence{Presence: p.presence, StatusMsg: p.statusMsg}
	if !p.lastActive.IsZero() {
		ago := e.now().Sub(p.lastActive)
		out.LastActiveAgo = ago.Milliseconds()
		out.CurrentlyActive = p.presence == "online" && ago < idleAfter
		if p.presence == "online" && ago >= idleAfter {
			out.Presence = "unavailable" // idle decay
		}
	}
	return out, p.version
}
