package clientapi

import (
	"sort"
	"sync"
	"time"
)

// ephemeral holds the state that is never stored: typing notifications and
// presence. Each change bumps one in-memory version, carried in sync tokens
// beside the stream position ("s<pos>_<version>"). After a restart versions
// start over; a token from before simply gets the current state again.
type ephemeral struct {
	mu       sync.Mutex
	version  int64
	changed  chan struct{}
	typing   map[string]*roomTyping    // by room ID
	presence map[string]*presenceState // by user ID
	// lastPresence is the version of the latest presence change.
	lastPresence int64
	now          func() time.Time
}

type roomTyping struct {
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

func newEphemeral() *ephemeral {
	return &ephemeral{changed: make(chan struct{}), typing: map[string]*roomTyping{}, presence: map[string]*presenceState{}, now: time.Now}
}

// bump records a change; e.mu must be held.
func (e *ephemeral) bump() int64 {
	e.version++
	close(e.changed)
	e.changed = make(chan struct{})
	return e.version
}

// Changes returns a channel closed at the next change and the version now.
func (e *ephemeral) Changes() (<-chan struct{}, int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.changed, e.version
}

// SetTyping starts (for timeout) or stops a user's typing in a room.
func (e *ephemeral) SetTyping(roomID, userID string, typing bool, timeout time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rt := e.typing[roomID]
	if rt == nil {
		rt = &roomTyping{users: map[string]*time.Timer{}}
		e.typing[roomID] = rt
	}
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
				rt.version = e.bump()
			}
		})
		rt.users[userID] = timer
	}
	if typing || was {
		rt.version = e.bump()
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

// SetPresence records a user's presence; activity refreshes last_active.
func (e *ephemeral) SetPresence(userID, presence string, statusMsg *string, active bool) {
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
		p.version = e.bump()
		e.lastPresence = p.version
	}
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
