package ephemeral

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"matrixhs/storage"
)

// Federation: local changes other servers must hear of go out through a
// Federation (SetFederation); what other servers tell of their users comes
// in through SetRemoteTyping, SetRemotePresence and PutRemoteReceipts, after
// federation checked the sending server speaks for the user and shares the
// room. Other servers' users then show in /sync as local ones do.

// Federation is told of local changes. Its methods must not block (they
// run on request paths and timers); they read the current state back
// (IsTyping, Presence) when they act, so a burst of changes costs one
// update.
type Federation interface {
	// TypingChanged: a local user started, refreshed or stopped typing.
	TypingChanged(roomID, userID string)
	// ReceiptStored: a local user's public read receipt was stored.
	ReceiptStored(r Receipt)
	// PresenceChanged: a local user's presence changed.
	PresenceChanged(userID string)
}

// SetFederation makes f hear of local changes. Call before serving.
func (s *Service) SetFederation(f Federation) { s.AddListener(f) }

// AddListener makes f hear of local changes too (federation and
// appservices both listen). Call before serving.
func (s *Service) AddListener(f Federation) {
	if s.fed == nil {
		s.fed = f
		return
	}
	s.fed = listeners{s.fed, f}
}

// listeners tells each of its members.
type listeners []Federation

func (l listeners) TypingChanged(roomID, userID string) {
	for _, f := range l {
		f.TypingChanged(roomID, userID)
	}
}

func (l listeners) ReceiptStored(r Receipt) {
	for _, f := range l {
		f.ReceiptStored(r)
	}
}

func (l listeners) PresenceChanged(userID string) {
	for _, f := range l {
		f.PresenceChanged(userID)
	}
}

// SetPresenceEnabled turns presence on or off (Synapse's presence.enabled;
// on by default). Off, presence updates are accepted and ignored, everyone
// is offline, sync carries no presence and federation neither sends nor
// takes any. Call before serving.
func (s *Service) SetPresenceEnabled(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.presenceOff = !on
}

// PresenceEnabled reports whether presence is on.
func (s *Service) PresenceEnabled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.presenceOff
}

// Bounds of what other servers may make this one hold.
const (
	// maxRemotePresence bounds the presence entries of other servers'
	// users; past it (once the stale ones are gone) newcomers are not
	// recorded.
	maxRemotePresence = 20_000
	// RemotePresenceTimeout is how long another server's word on a user
	// holds: without news for that long the user is offline (Synapse's
	// servers repeat an online user's presence every 25 minutes).
	RemotePresenceTimeout = 30 * time.Minute
	// forgetRemotePresenceAfter drops an offline remote user's entry.
	forgetRemotePresenceAfter = 2 * RemotePresenceTimeout
)

// SetRemoteTyping records a typing notification of another server's user
// (federation checked the user is joined to the room), lasting timeout
// unless stopped or repeated. It reports whether anything changed (false
// also when the bound on typers is reached).
func (s *Service) SetRemoteTyping(roomNID int64, roomID, userID string, typing bool, timeout time.Duration) bool {
	changed := s.setTyping(roomNID, roomID, userID, typing, timeout, false)
	if changed && s.remote != nil {
		s.remote.RemoteTypingChanged(roomID, userID)
	}
	return changed
}

// RemoteListener hears of changes of other servers' users' typing and
// presence (appservices do; federation only speaks for local users).
type RemoteListener interface {
	RemoteTypingChanged(roomID, userID string)
	RemotePresenceChanged(userID string)
}

// SetRemoteListener makes l hear of other servers' users' typing and
// presence changes. Call before serving.
func (s *Service) SetRemoteListener(l RemoteListener) { s.remote = l }

// RemotePresence is another server's word on its user's presence (the
// fields of an m.presence EDU's push entry).
type RemotePresence struct {
	Presence        string
	StatusMsg       string
	LastActiveAgo   *int64 // ms; nil: not said
	CurrentlyActive bool
}

// SetRemotePresence records another server's user's presence (federation
// checked the user shares a room with this server) and wakes whom it
// concerns. It reports whether anything changed; it refuses invalid
// states and, when presence is off, takes nothing.
func (s *Service) SetRemotePresence(userID string, p RemotePresence) (bool, error) {
	if !validPresence(p.Presence) {
		return false, refuse(ErrInvalid, "presence must be online, unavailable or offline")
	}
	changed := s.setRemotePresence(userID, p)
	if changed {
		s.wakePresence(userID)
		if s.remote != nil {
			s.remote.RemotePresenceChanged(userID)
		}
	}
	return changed, nil
}

func (s *Service) setRemotePresence(userID string, in RemotePresence) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.presenceOff {
		return false
	}
	now := s.now()
	p := s.presence[userID]
	if p == nil {
		if s.remotePresence >= maxRemotePresence {
			s.forgetRemotePresence(now, RemotePresenceTimeout)
			if s.remotePresence >= maxRemotePresence {
				return false
			}
		}
		p = &presenceState{presence: "offline", remote: true}
		s.presence[userID] = p
		s.remotePresence++
	}
	if !p.remote {
		return false
	}
	lastActive := p.lastActive
	if in.LastActiveAgo != nil {
		lastActive = now.Add(-time.Duration(max(*in.LastActiveAgo, 0)) * time.Millisecond)
	}
	changed := p.presence != in.Presence || p.statusMsg != in.StatusMsg || p.currentlyActive != in.CurrentlyActive ||
		(!in.CurrentlyActive && lastActive.Sub(p.lastActive) > time.Minute)
	p.presence, p.statusMsg, p.currentlyActive, p.lastActive, p.heard = in.Presence, in.StatusMsg, in.CurrentlyActive, lastActive, now
	if changed {
		s.version++
		p.version = s.version
		s.lastPresence = p.version
	}
	return changed
}

// remoteView is a remote user's presence as clients see it.
func (p *presenceState) remoteView(now time.Time) Presence {
	out := Presence{Presence: p.presence, StatusMsg: p.statusMsg, CurrentlyActive: p.presence == "online" && p.currentlyActive}
	if !p.lastActive.IsZero() {
		out.LastActiveAgo = max(now.Sub(p.lastActive).Milliseconds(), 0)
	}
	return out
}

// ExpireRemotePresence turns other servers' users not heard of for
// RemotePresenceTimeout offline (waking whom that concerns) and forgets
// those offline for long. Federation calls it now and then.
func (s *Service) ExpireRemotePresence() {
	s.mu.Lock()
	now := s.now()
	var expired []string
	for u, p := range s.presence {
		if p.remote && p.presence != "offline" && now.Sub(p.heard) > RemotePresenceTimeout {
			p.presence, p.currentlyActive = "offline", false
			s.version++
			p.version = s.version
			s.lastPresence = p.version
			expired = append(expired, u)
		}
	}
	s.forgetRemotePresence(now, forgetRemotePresenceAfter)
	s.mu.Unlock()
	s.wakePresence(expired...)
}

// forgetRemotePresence drops the entries of remote users not heard of for
// age (s.mu held).
func (s *Service) forgetRemotePresence(now time.Time, age time.Duration) {
	for u, p := range s.presence {
		if p.remote && now.Sub(p.heard) > age {
			delete(s.presence, u)
			s.remotePresence--
		}
	}
}

// PutRemoteReceipts stores read receipts of other servers' users in a
// room (federation checked the sending server speaks for the users, and
// that they are joined). A receipt is kept only for an event of the room
// this server holds in its timeline, with no thread or a thread of the
// room (others are dropped: there is nothing to show them against); like
// local ones they only move forward. It reports how many were stored.
func (s *Service) PutRemoteReceipts(ctx context.Context, roomID string, receipts []Receipt) (int, error) {
	info, err := s.db.Room(ctx, roomID)
	if errors.Is(err, storage.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var rows []storage.Receipt
	for _, r := range receipts {
		if r.Type != ReceiptTypes[0] {
			continue // only public receipts travel
		}
		e, err := s.timelineEvent(ctx, info.NID, r.EventID)
		if err != nil || e == nil {
			if err != nil {
				return 0, err
			}
			continue
		}
		if ok, err := s.threadOf(ctx, info.NID, r.ThreadID); err != nil || !ok {
			if err != nil {
				return 0, err
			}
			continue
		}
		ts := r.TS
		if ts <= 0 {
			ts = s.now().UnixMilli()
		}
		rows = append(rows, storage.Receipt{RoomNID: info.NID, UserID: r.UserID, Type: r.Type, ThreadID: r.ThreadID,
			EventID: e.EventID, EventPos: e.StreamPos, TS: ts})
	}
	if len(rows) == 0 {
		return 0, nil
	}
	stored := 0
	err = s.db.Write(ctx, func(tx *storage.Tx) error {
		stored = 0
		for _, row := range rows {
			ok, err := tx.PutReceipt(ctx, row)
			if err != nil {
				return err
			}
			if ok {
				stored++
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("storing receipts of room %s: %w", roomID, err)
	}
	return stored, nil
}

// timelineEvent loads an event of the room in its timeline (nil if there
// is no such event).
func (s *Service) timelineEvent(ctx context.Context, roomNID int64, eventID string) (*storage.Event, error) {
	if !strings.HasPrefix(eventID, "$") || len(eventID) > 255 {
		return nil, nil
	}
	e, err := s.db.EventByID(ctx, eventID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if e.RoomNID != roomNID || e.StreamPos == 0 || e.Status != storage.EventAccepted {
		return nil, nil
	}
	return e, nil
}

// threadOf reports whether a receipt's thread ID is one it may carry: none,
// "main", or an event of the room.
func (s *Service) threadOf(ctx context.Context, roomNID int64, threadID string) (bool, error) {
	if threadID == "" || threadID == "main" {
		return true, nil
	}
	e, err := s.timelineEvent(ctx, roomNID, threadID)
	return e != nil, err
}
