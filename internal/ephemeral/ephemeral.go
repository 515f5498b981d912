// Package ephemeral is the service for what users signal about themselves
// in rooms: typing notifications and presence, kept in memory, and read
// receipts, kept in storage. The client API's endpoints and sync read and
// write them here; so do federation's typing, presence and receipt EDUs
// (remote.go), and local changes are told to federation (SetFederation).
//
// Typing and presence changes bump one in-memory version, carried in sync
// tokens beside the stream position ("s<pos>_<version>"). After a restart
// versions start over; a token from before simply gets the current state
// again. Every change wakes the long-polls it concerns (internal/notifier).
package ephemeral

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"matrixhs/internal/notifier"
	"matrixhs/roomserver"
	"matrixhs/storage"
)

// The kinds of refusal the service gives; every refusal is an *Error that
// wraps one (test with errors.Is). internal/matrixerr maps them.
var (
	// ErrNotJoined: the user is not joined to the room.
	ErrNotJoined = errors.New("not joined to the room")
	// ErrUnknownEvent: no event of the room the user may see has that ID.
	ErrUnknownEvent = errors.New("event not found")
	// ErrNoSharedRoom: the presence of someone the user shares no room with.
	ErrNoSharedRoom = errors.New("no shared room")
	// ErrInvalid: a value out of its range (a presence state, a receipt type).
	ErrInvalid = errors.New("invalid value")
)

// Error is a refusal: its kind and a message for the user.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Kind }

func refuse(kind error, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// Service holds typing and presence, and records receipts.
type Service struct {
	db    *storage.DB
	rooms *roomserver.Roomserver
	log   logrus.FieldLogger

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

	// typers counts the users typing in all rooms, remotePresence the
	// entries of other servers' users (both bounded, remote.go);
	// lastTypingSweep is when idle rooms were last forgotten.
	typers          int
	remotePresence  int
	lastTypingSweep time.Time
	// presenceOff: presence is disabled (Synapse's presence.enabled:
	// false): nothing is recorded and everyone is offline.
	presenceOff bool
	// fed is told of local changes other servers must hear of (nil:
	// federation is off). Set before serving.
	fed Federation
	// remote is told of other servers' users' typing and presence (nil:
	// nobody listens). Set before serving.
	remote RemoteListener
}

// New returns the service; wake is called with whom each typing or
// presence change concerns.
func New(db *storage.DB, rooms *roomserver.Roomserver, wake func(notifier.Targets), log logrus.FieldLogger) *Service {
	s := newService(wake, nil)
	s.db, s.rooms, s.log = db, rooms, log
	s.roomsOf = s.listeningRooms
	return s
}

func newService(wake func(notifier.Targets), roomsOf func(string) []int64) *Service {
	return &Service{wake: wake, roomsOf: roomsOf, typing: map[string]*roomTyping{}, presence: map[string]*presenceState{}, now: time.Now}
}

// listeningRooms are the rooms whose members hear of a user's presence.
func (s *Service) listeningRooms(userID string) []int64 {
	rooms, err := s.db.ListeningRooms(context.Background(), userID)
	if err != nil {
		s.log.WithError(err).Warn("listing rooms for a presence change")
	}
	return rooms
}

// bump records a change that concerns t; s.mu must be held.
func (s *Service) bump(t notifier.Targets) int64 {
	s.version++
	if s.wake != nil {
		s.wake(t)
	}
	return s.version
}

// Version is the version of the latest typing or presence change.
func (s *Service) Version() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

// joinedRoom loads a room the user is joined to, with what the user may
// see of it (ErrNotJoined otherwise).
func (s *Service) joinedRoom(ctx context.Context, userID, roomID string) (*storage.Room, *roomserver.Viewer, error) {
	info, err := s.db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil, refuse(ErrNotJoined, "You are not joined to this room")
	}
	if err != nil {
		return nil, nil, err
	}
	v, err := s.rooms.Viewer(ctx, info.NID, userID)
	if err != nil {
		return nil, nil, err
	}
	if v.Membership() != "join" {
		return nil, nil, refuse(ErrNotJoined, "You are not joined to this room")
	}
	return info, v, nil
}
