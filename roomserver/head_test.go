package roomserver

import (
	"errors"
	"maps"
	"slices"
	"testing"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

// A room head rebuilt from storage (a restart, or a head the cache let
// go) has the same state, memberships, power and DAG head as the one that
// wrote it, and the room goes on from there.
func TestRoomHeadReloadsFromStorage(t *testing.T) {
	k := newLocalKit(t)
	k.account(bob, "Bob")
	room := k.createRoom(CreateRoomRequest{Creator: alice, Preset: PresetPublicChat})
	if _, err := k.rs.SetMembership(k.ctx, MembershipRequest{RoomID: room, Sender: bob, Target: bob, Membership: spec.Join, DisplayName: "Bob"}); err != nil {
		t.Fatal(err)
	}
	k.member(room, alice, carol, "ban")
	k.send(room, alice, "m.room.topic", ptrTo(""), map[string]any{"topic": "t"})
	last := k.message(room, bob, "hello")
	before := mustRoom(t, k.rs, room)
	before.mu.Lock()
	wantState, wantExt, wantDepth, wantLocal := maps.Clone(before.state), slices.Clone(before.extremities), before.maxDepth, maps.Clone(before.local)
	before.mu.Unlock()

	// A second roomserver on the same database, with room for one head.
	rs := New(k.db, Options{ServerName: "a.test", KeyID: "ed25519:a", PrivateKey: k.rs.key, RoomCacheSize: 1})
	r := mustRoom(t, rs, room)
	r.mu.Lock()
	if !maps.Equal(r.state, wantState) || !slices.Equal(r.extremities, wantExt) || r.maxDepth != wantDepth || !maps.Equal(r.local, wantLocal) || r.local[bob] != "Bob" {
		r.mu.Unlock()
		t.Fatalf("reloaded head: %d keys, extremities %v at depth %d, bob %q; want %d keys, %v at %d",
			len(r.state), r.extremities, r.maxDepth, r.local[bob], len(wantState), wantExt, wantDepth)
	}
	r.mu.Unlock()
	if m, _ := rs.Membership(k.ctx, room, carol); m != spec.Ban {
		t.Fatalf("carol after the reload: %q", m)
	}
	next, err := rs.Send(k.ctx, LocalEvent{RoomID: room, Sender: bob, Type: "m.room.message", Content: mustJSON(map[string]any{"body": "after"})})
	if err != nil {
		t.Fatal(err)
	}
	pdu, err := ParseEvent(k.event(next.EventID))
	if err != nil || !slices.Equal(pdu.PrevEventIDs(), []string{last}) || pdu.Depth() != wantDepth+1 {
		t.Fatalf("the next event: prev %v at depth %d (%v); want [%s] at %d", pdu.PrevEventIDs(), pdu.Depth(), err, last, wantDepth+1)
	}
	_, err = rs.Send(k.ctx, LocalEvent{RoomID: room, Sender: bob, Type: "m.room.power_levels", StateKey: ptrTo(""), Content: mustJSON(map[string]any{})})
	wantForbidden(t, "bob changing power levels after the reload", err, "", "")

	// Another room pushes this head out of the cache; it comes back intact.
	other := k.createRoom(CreateRoomRequest{Creator: alice, Preset: PresetPublicChat})
	if _, err := rs.Send(k.ctx, LocalEvent{RoomID: other, Sender: alice, Type: "m.room.message", Content: mustJSON(map[string]any{})}); err != nil {
		t.Fatal(err)
	}
	if m, _ := rs.Membership(k.ctx, room, bob); m != spec.Join {
		t.Fatalf("bob after the head came back: %q", m)
	}
	if _, err := rs.Membership(k.ctx, "!missing:a.test", bob); !errors.Is(err, ErrRoomNotFound) {
		t.Fatalf("an unknown room: %v", err)
	}
}

// Local redactions: one's own events, others' with the redact power; the
// target must be in the room; a redacted state event is seen redacted by
// the auth rules at once.
func TestLocalRedactions(t *testing.T) {
	k := newLocalKit(t)
	room := k.createRoom(CreateRoomRequest{Creator: alice, Preset: PresetPublicChat})
	other := k.createRoom(CreateRoomRequest{Creator: alice, Preset: PresetPublicChat})
	k.member(room, bob, bob, "join")
	mine, theirs := k.message(room, bob, "mine"), k.message(room, alice, "theirs")
	elsewhere := k.message(other, alice, "elsewhere")
	redact := func(sender, target string) error {
		_, err := k.rs.Send(k.ctx, LocalEvent{RoomID: room, Sender: sender, Type: spec.MRoomRedaction, Redacts: target, Content: mustJSON(map[string]any{})})
		return err
	}
	if err := redact(bob, mine); err != nil {
		t.Fatalf("redacting one's own message: %v", err)
	}
	if e := k.event(mine); e.RedactedBy == "" {
		t.Fatal("bob's message was not redacted")
	}
	wantForbidden(t, "bob redacting alice's message", redact(bob, theirs), "only redact your own", "")
	var bad *BadRequestError
	if err := redact(alice, elsewhere); !errors.As(err, &bad) {
		t.Fatalf("redacting an event of another room: %v", err)
	}
	if err := redact(alice, ""); !errors.As(err, &bad) {
		t.Fatalf("a redaction without a target: %v", err)
	}
	if err := redact(alice, "$not-here-yet"); err != nil {
		t.Fatalf("redacting an unknown event (applies when it arrives): %v", err)
	}

	// Redacting the power levels of a v10 room drops their invite level
	// (the redaction algorithm keeps it only from v11): bob, who could not
	// invite, can at once.
	_, err := k.rs.SetMembership(k.ctx, MembershipRequest{RoomID: room, Sender: bob, Target: dave, Membership: spec.Invite})
	wantForbidden(t, "bob inviting under the power levels", err, "", "")
	pl, err := k.db.CurrentStateEvents(k.ctx, k.roomNID(room), spec.MRoomPowerLevels)
	if err != nil || len(pl) != 1 {
		t.Fatal(pl, err)
	}
	if err := redact(alice, pl[0].EventID); err != nil {
		t.Fatal(err)
	}
	k.member(room, bob, dave, spec.Invite)
}
