package roomserver

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"matrixhs/internal/dbtest"
	"path/filepath"
	"strings"
	"testing"

	"matrixhs/storage"
)

// localKit drives a roomserver the way the client API does: local users
// creating rooms, sending events and changing memberships.
type localKit struct {
	t   *testing.T
	rs  *Roomserver
	db  *storage.DB
	ctx context.Context
}

// newLocalKit opens a roomserver for server a.test; opts may adjust its
// options (server notices).
func newLocalKit(t *testing.T, opts ...func(*Options)) *localKit {
	t.Helper()
	db, err := dbtest.Open(t, context.Background(), filepath.Join(t.TempDir(), "rs.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	o := Options{ServerName: "a.test", KeyID: "ed25519:a", PrivateKey: key}
	for _, f := range opts {
		f(&o)
	}
	return &localKit{t: t, rs: New(db, o), db: db, ctx: context.Background()}
}

// account creates a local account with a display name.
func (k *localKit) account(userID, displayName string) {
	k.t.Helper()
	local, _, _ := strings.Cut(strings.TrimPrefix(userID, "@"), ":")
	err := k.db.Write(k.ctx, func(tx *storage.Tx) error {
		return tx.InsertAccount(k.ctx, storage.Account{UserID: userID, Localpart: local, CreatedTS: 1, DisplayName: displayName})
	})
	if err != nil {
		k.t.Fatal(err)
	}
}

func (k *localKit) createRoom(req CreateRoomRequest) string {
	k.t.Helper()
	if req.Version == "" {
		req.Version = "10"
	}
	id, err := k.rs.CreateRoom(k.ctx, req)
	if err != nil {
		k.t.Fatalf("creating a room: %v", err)
	}
	return id
}

func (k *localKit) trySend(roomID, sender, typ string, stateKey *string, content any) (Sent, error) {
	raw, err := json.Marshal(content)
	if err != nil {
		k.t.Fatal(err)
	}
	return k.rs.Send(k.ctx, LocalEvent{RoomID: roomID, Sender: sender, Type: typ, StateKey: stateKey, Content: raw})
}

// send sends an event and returns its ID.
func (k *localKit) send(roomID, sender, typ string, stateKey *string, content any) string {
	k.t.Helper()
	s, err := k.trySend(roomID, sender, typ, stateKey, content)
	if err != nil {
		k.t.Fatalf("sending %s as %s: %v", typ, sender, err)
	}
	return s.EventID
}

func (k *localKit) message(roomID, sender, body string) string {
	k.t.Helper()
	return k.send(roomID, sender, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": body})
}

// member changes a membership and fails the test if it is refused.
func (k *localKit) member(roomID, sender, target, membership string) string {
	k.t.Helper()
	s, err := k.rs.SetMembership(k.ctx, MembershipRequest{RoomID: roomID, Sender: sender, Target: target, Membership: membership})
	if err != nil {
		k.t.Fatalf("%s setting %s's membership to %s: %v", sender, target, membership, err)
	}
	return s.EventID
}

func (k *localKit) membership(roomID, userID string) string {
	k.t.Helper()
	m, err := k.rs.Membership(k.ctx, roomID, userID)
	if err != nil {
		k.t.Fatal(err)
	}
	return m
}

func (k *localKit) event(eventID string) *storage.Event {
	k.t.Helper()
	e, err := k.db.EventByID(k.ctx, eventID)
	if err != nil {
		k.t.Fatalf("loading %s: %v", eventID, err)
	}
	return e
}

// content decodes an event's content.
func (k *localKit) content(eventID string) map[string]any {
	k.t.Helper()
	var ev struct {
		Content map[string]any `json:"content"`
	}
	if err := json.Unmarshal(k.event(eventID).JSON, &ev); err != nil {
		k.t.Fatal(err)
	}
	return ev.Content
}

func (k *localKit) roomNID(roomID string) int64 {
	k.t.Helper()
	r, err := k.db.Room(k.ctx, roomID)
	if err != nil {
		k.t.Fatal(err)
	}
	return r.NID
}

// wantForbidden checks that err refuses with a reason containing reason
// ("" for any) and, when code is not "", that errcode.
func wantForbidden(t *testing.T, what string, err error, reason, code string) {
	t.Helper()
	var fe *ForbiddenError
	if !errors.As(err, &fe) {
		t.Fatalf("%s: %v, want a ForbiddenError", what, err)
	}
	if !strings.Contains(fe.Reason, reason) || fe.Code != code {
		t.Fatalf("%s: refused with %q (code %q), want %q (code %q)", what, fe.Reason, fe.Code, reason, code)
	}
}
