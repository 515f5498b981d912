package storage

import (
	"errors"
	"slices"
	"testing"
)

// Aliases: unique, owned by their creator, listed per room, moved on
// upgrade, deleted once.
func TestAliases(t *testing.T) {
	db, _ := openTestDB(t)
	a := newRoomKit(t, db, "!a:x")
	b := newRoomKit(t, db, "!b:x")
	mustWrite(t, db, func(tx *Tx) error {
		for _, al := range []string{"#two:x", "#one:x"} {
			if err := tx.InsertAlias(a.ctx, al, a.nid, "@alice:x"); err != nil {
				return err
			}
		}
		if err := tx.InsertAlias(a.ctx, "#one:x", b.nid, "@bob:x"); !errors.Is(err, ErrExists) {
			t.Errorf("taking a used alias: %v, want ErrExists", err)
		}
		return nil
	})
	if id, err := db.AliasRoom(a.ctx, "#one:x"); err != nil || id != "!a:x" {
		t.Fatalf("AliasRoom = %q, %v", id, err)
	}
	if c, err := db.AliasCreator(a.ctx, "#one:x"); err != nil || c != "@alice:x" {
		t.Fatalf("AliasCreator = %q, %v", c, err)
	}
	if got, err := db.RoomAliases(a.ctx, a.nid); err != nil || !slices.Equal(got, []string{"#one:x", "#two:x"}) {
		t.Fatalf("RoomAliases = %v, %v", got, err)
	}
	mustWrite(t, db, func(tx *Tx) error { return tx.MoveAliases(a.ctx, a.nid, b.nid) })
	if got, _ := db.RoomAliases(a.ctx, a.nid); len(got) != 0 {
		t.Fatalf("aliases left on the old room: %v", got)
	}
	if id, _ := db.AliasRoom(a.ctx, "#two:x"); id != "!b:x" {
		t.Fatalf("moved alias resolves to %q", id)
	}
	mustWrite(t, db, func(tx *Tx) error {
		if err := tx.DeleteAlias(a.ctx, "#two:x"); err != nil {
			return err
		}
		if err := tx.DeleteAlias(a.ctx, "#two:x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleting twice: %v, want ErrNotFound", err)
		}
		return nil
	})
	for _, f := range []func() error{
		func() error { _, err := db.AliasRoom(a.ctx, "#two:x"); return err },
		func() error { _, err := db.AliasCreator(a.ctx, "#two:x"); return err },
	} {
		if err := f(); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleted alias: %v, want ErrNotFound", err)
		}
	}
}

// Blocking a room by ID (it need not exist); the first blocker stays.
func TestBlockedRooms(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := t.Context()
	if by, err := db.RoomBlockedBy(ctx, "!r:x"); err != nil || by != "" {
		t.Fatalf("unblocked room: %q, %v", by, err)
	}
	for _, step := range []struct {
		blocked bool
		by      string
		want    string
	}{{true, "@admin:x", "@admin:x"}, {true, "@other:x", "@admin:x"}, {false, "", ""}} {
		mustWrite(t, db, func(tx *Tx) error { return tx.SetRoomBlocked(ctx, "!r:x", step.blocked, step.by, 1) })
		if by, err := db.RoomBlockedBy(ctx, "!r:x"); err != nil || by != step.want {
			t.Fatalf("after SetRoomBlocked(%v, %s): blocked by %q, %v; want %q", step.blocked, step.by, by, err, step.want)
		}
	}
}

// The admin room list reads each room's directory fields from its state.
func TestAdminRooms(t *testing.T) {
	db, _ := openTestDB(t)
	a := newRoomKit(t, db, "!a:x")
	a.create("@alice:x", "public", "world_readable")
	a.member("@bob:x", "join")
	a.setState("m.room.name", "", "@alice:x", map[string]any{"name": "Lobby"})
	a.setState("m.room.encryption", "", "@alice:x", map[string]any{"algorithm": "m.megolm.v1.aes-sha2"})
	a.setState("m.room.guest_access", "", "@alice:x", map[string]any{"guest_access": "can_join"})
	a.setState("m.room.canonical_alias", "", "@alice:x", map[string]any{"alias": 5}) // not a string
	b := newRoomKit(t, db, "!b:x")
	b.setState("m.room.create", "", "@bob:x", map[string]any{"type": "m.space"})

	all, err := db.AdminRooms(a.ctx, "")
	if err != nil || len(all) != 2 {
		t.Fatalf("AdminRooms = %+v, %v", all, err)
	}
	want := AdminRoom{RoomID: "!a:x", Version: "11", JoinedMembers: 2, StateEvents: 9, Name: "Lobby", Creator: "@alice:x",
		Encryption: "m.megolm.v1.aes-sha2", JoinRules: "public", GuestAccess: "can_join", HistoryVisibility: "world_readable"}
	if all[0] != want {
		t.Fatalf("room a:\n got %+v\nwant %+v", all[0], want)
	}
	one, err := db.AdminRooms(a.ctx, "!b:x")
	if err != nil || len(one) != 1 || one[0].RoomType != "m.space" || one[0].Creator != "@bob:x" || one[0].JoinRules != "" {
		t.Fatalf("AdminRooms(b) = %+v, %v", one, err)
	}
	if _, err := db.AdminRooms(a.ctx, "!missing:x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown room: %v", err)
	}
}

// A user's server notices room is the newest room the notices user is
// joined to where the user has any membership.
func TestNoticesRoom(t *testing.T) {
	db, _ := openTestDB(t)
	const notices = "@notices:x"
	if _, err := db.NoticesRoom(t.Context(), notices, "@u:x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("no notices room yet: %v", err)
	}
	old := newRoomKit(t, db, "!old:x")
	old.create(notices, "invite", "shared")
	old.setState("m.room.member", "@u:x", notices, map[string]any{"membership": "invite"})
	other := newRoomKit(t, db, "!other:x") // the user is not in it
	other.create(notices, "invite", "shared")
	if id, err := db.NoticesRoom(t.Context(), notices, "@u:x"); err != nil || id != "!old:x" {
		t.Fatalf("NoticesRoom = %q, %v", id, err)
	}
	old.member("@u:x", "leave") // a user who left keeps the room
	newer := newRoomKit(t, db, "!new:x")
	newer.create(notices, "invite", "shared")
	newer.setState("m.room.member", "@u:x", notices, map[string]any{"membership": "invite"})
	if id, err := db.NoticesRoom(t.Context(), notices, "@u:x"); err != nil || id != "!new:x" {
		t.Fatalf("NoticesRoom with two = %q, %v; want the newest", id, err)
	}
	newer.member(notices, "leave") // the notices user left: not a notices room any more
	if id, err := db.NoticesRoom(t.Context(), notices, "@u:x"); err != nil || id != "!old:x" {
		t.Fatalf("NoticesRoom after the notices user left = %q, %v", id, err)
	}
}
