// Package notifier wakes long-polls (/sync, sliding sync) when something
// that concerns their user changes: an event in one of their rooms, their
// account data, a to-device message for them, a device-list change of
// someone they share a room with. Each wake-up closes the channels of the
// listeners it concerns, the same primitive as a global change channel,
// but a commit in a room a user is not in no longer wakes that user.
//
// The contract is "take the sequence before reading": a long-poll calls Seq
// before it reads, then listens with that sequence for its user and the
// rooms it read; a wake-up that happened in between (after Seq) concerns a
// key the notifier remembers with a later sequence, and the listener's
// channel is closed at once.
package notifier

import (
	"sync"
)

// Targets says whom a change concerns.
type Targets struct {
	Users []string
	Rooms []int64 // room NIDs: every listener that registered the room
	All   bool
}

// Notifier tracks listeners by user and room.
type Notifier struct {
	mu  sync.Mutex
	seq uint64
	// last is the sequence of the latest wake-up of each key.
	lastUser map[string]uint64
	lastRoom map[int64]uint64
	lastAll  uint64
	// listeners by key; a listener sits under its user and each room.
	byUser map[string]map[*listener]struct{}
	byRoom map[int64]map[*listener]struct{}
	// wakeups counts, per user, how often their listeners were woken.
	wakeups map[string]uint64
}

type listener struct {
	ch     chan struct{}
	user   string
	rooms  []int64
	closed bool
}

// New returns an empty notifier.
func New() *Notifier {
	return &Notifier{
		lastUser: map[string]uint64{}, lastRoom: map[int64]uint64{},
		byUser: map[string]map[*listener]struct{}{}, byRoom: map[int64]map[*listener]struct{}{},
		wakeups: map[string]uint64{},
	}
}

// Seq is the sequence of the latest wake-up; take it before reading.
func (n *Notifier) Seq() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.seq
}

// Listen returns a channel closed at the next change concerning the user or
// one of the rooms after sequence since (at once if one happened already),
// and a function to stop listening (call it when done waiting).
func (n *Notifier) Listen(user string, rooms []int64, since uint64) (<-chan struct{}, func()) {
	l := &listener{ch: make(chan struct{}), user: user, rooms: rooms}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.lastAll > since || n.lastUser[user] > since || n.anyRoomAfter(rooms, since) {
		close(l.ch)
		l.closed = true
		n.wakeups[user]++
		return l.ch, func() {}
	}
	add(n.byUser, user, l)
	for _, r := range rooms {
		add(n.byRoom, r, l)
	}
	return l.ch, func() {
		n.mu.Lock()
		n.remove(l)
		n.mu.Unlock()
	}
}

func (n *Notifier) anyRoomAfter(rooms []int64, since uint64) bool {
	for _, r := range rooms {
		if n.lastRoom[r] > since {
			return true
		}
	}
	return false
}

func add[K comparable](m map[K]map[*listener]struct{}, k K, l *listener) {
	set, ok := m[k]
	if !ok {
		set = map[*listener]struct{}{}
		m[k] = set
	}
	set[l] = struct{}{}
}

func del[K comparable](m map[K]map[*listener]struct{}, k K, l *listener) {
	if set, ok := m[k]; ok {
		delete(set, l)
		if len(set) == 0 {
			delete(m, k)
		}
	}
}

// remove unregisters l (n.mu held).
func (n *Notifier) remove(l *listener) {
	del(n.byUser, l.user, l)
	for _, r := range l.rooms {
		del(n.byRoom, r, l)
	}
}

// wake closes l's channel and unregisters it (n.mu held).
func (n *Notifier) wake(l *listener) {
	if !l.closed {
		l.closed = true
		close(l.ch)
		n.wakeups[l.user]++
	}
	n.remove(l)
}

// Wake wakes the listeners a change concerns.
func (n *Notifier) Wake(t Targets) {
	if !t.All && len(t.Users) == 0 && len(t.Rooms) == 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.seq++
	if t.All {
		n.lastAll = n.seq
		for _, set := range n.byUser {
			for l := range set {
				n.wake(l)
			}
		}
		return
	}
	for _, u := range t.Users {
		n.lastUser[u] = n.seq
		for l := range n.byUser[u] {
			n.wake(l)
		}
	}
	for _, r := range t.Rooms {
		n.lastRoom[r] = n.seq
		for l := range n.byRoom[r] {
			n.wake(l)
		}
	}
}

// Wakeups counts how often listeners of the user were woken (tests count
// wake-ups instead of timing them).
func (n *Notifier) Wakeups(user string) uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.wakeups[user]
}

// Listening counts the user's listeners (tests wait on it).
func (n *Notifier) Listening(user string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.byUser[user])
}
