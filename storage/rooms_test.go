package storage

import (
	"errors"
	"maps"
	"slices"
	"testing"
)

// A room's row: inserted once, its head and directory flag updated.
func TestRoomRow(t *testing.T) {
	db, _ := openTestDB(t)
	k := newRoomKit(t, db, "!row:x")
	mustWrite(t, db, func(tx *Tx) error {
		if _, err := tx.InsertRoom(k.ctx, "!row:x", "10", 2); !errors.Is(err, ErrExists) {
			t.Errorf("inserting a room twice: %v, want ErrExists", err)
		}
		return nil
	})
	if _, err := db.Room(k.ctx, "!missing:x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown room: %v", err)
	}
	k.create("@alice:x", "public", "shared")
	var snap int64
	mustWrite(t, db, func(tx *Tx) error {
		var err error
		if snap, err = tx.InsertSnapshot(k.ctx, k.nid, 0, 0, k.state); err != nil {
			return err
		}
		if err := tx.UpdateRoomHead(k.ctx, k.nid, snap, []string{"$a", "$b"}, 42); err != nil {
			return err
		}
		return tx.SetRoomPublished(k.ctx, k.nid, true)
	})
	r, err := db.Room(k.ctx, k.id)
	if err != nil || r.NID != k.nid || r.Version != "11" || r.Snapshot != snap || !slices.Equal(r.Extremities, []string{"$a", "$b"}) ||
		r.MaxDepth != 42 || !r.Published || r.ChainLen != 0 {
		t.Fatalf("room = %+v, %v", r, err)
	}
}

// Memberships as current_state records them: per user, per room, counted.
func TestRoomMemberships(t *testing.T) {
	db, _ := openTestDB(t)
	a := newRoomKit(t, db, "!a:x")
	b := newRoomKit(t, db, "!b:x")
	a.create("@alice:x", "public", "shared")
	b.create("@bob:x", "invite", "shared")
	a.member("@bob:x", "join")
	a.member("@carol:x", "invite")
	a.member("@dan:x", "knock")
	b.setState("m.room.member", "@alice:x", "@bob:x", map[string]any{"membership": "invite"})
	b.member("@carol:x", "join")
	b.member("@carol:x", "leave")

	for user, want := range map[string][]string{"@alice:x": {"!a:x"}, "@bob:x": {"!a:x", "!b:x"}, "@carol:x": {}} {
		got, err := db.JoinedRooms(a.ctx, user)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("JoinedRooms(%s) = %v, %v; want %v", user, got, err, want)
		}
	}
	for _, c := range []struct {
		room *roomKit
		user string
		want string
	}{{a, "@bob:x", "join"}, {a, "@carol:x", "invite"}, {b, "@carol:x", "leave"}, {b, "@dan:x", ""}} {
		if got, err := db.Membership(a.ctx, c.room.nid, c.user); err != nil || got != c.want {
			t.Errorf("Membership(%s, %s) = %q, %v; want %q", c.room.id, c.user, got, err, c.want)
		}
	}
	if j, i, err := db.MemberCounts(a.ctx, a.nid); err != nil || j != 2 || i != 1 {
		t.Fatalf("MemberCounts(a) = %d joined, %d invited, %v", j, i, err)
	}
	for user, want := range map[string][]int64{"@alice:x": {a.nid, b.nid}, "@dan:x": {a.nid}, "@carol:x": {a.nid}, "@eve:x": nil} {
		got, err := db.ListeningRooms(a.ctx, user)
		slices.Sort(got)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ListeningRooms(%s) = %v, %v; want %v", user, got, err, want)
		}
	}
	if got, err := db.JoinedMembers(a.ctx, a.nid); err != nil || !slices.Equal(got, []string{"@alice:x", "@bob:x"}) {
		t.Fatalf("JoinedMembers(a) = %v, %v", got, err)
	}
	evs, err := db.JoinedMemberEvents(a.ctx, "@bob:x")
	if err != nil || len(evs) != 2 || evs[0].RoomID != "!a:x" || evs[1].RoomID != "!b:x" {
		t.Fatalf("JoinedMemberEvents(bob) = %v, %v", eventIDs(evs), err)
	}

	// SetCurrentState and DeleteCurrentState edit the rows directly.
	mustWrite(t, db, func(tx *Tx) error {
		if err := tx.SetCurrentState(a.ctx, a.nid, StateKey{"m.room.member", "@dan:x"}, a.ids["$a:x-7"], "join", 99); err != nil {
			return err
		}
		return tx.DeleteCurrentState(a.ctx, a.nid, StateKey{"m.room.member", "@carol:x"})
	})
	if m, _ := db.Membership(a.ctx, a.nid, "@dan:x"); m != "join" {
		t.Fatalf("membership set directly = %q", m)
	}
	if m, _ := db.Membership(a.ctx, a.nid, "@carol:x"); m != "" {
		t.Fatalf("deleted membership = %q", m)
	}
}

// Snapshots written by hand: a delta over a parent reads back merged, the
// nearest entry winning.
func TestSnapshotChains(t *testing.T) {
	db, _ := openTestDB(t)
	k := newRoomKit(t, db, "!snap:x")
	base := map[StateKey]int64{{"m.room.create", ""}: 1, {"m.room.member", "@a:x"}: 2}
	var full, delta, delta2 int64
	mustWrite(t, db, func(tx *Tx) (err error) {
		if full, err = tx.InsertSnapshot(k.ctx, k.nid, 0, 0, base); err != nil {
			return err
		}
		if delta, err = tx.InsertSnapshot(k.ctx, k.nid, full, 1, map[StateKey]int64{{"m.room.member", "@a:x"}: 3}); err != nil {
			return err
		}
		delta2, err = tx.InsertSnapshot(k.ctx, k.nid, delta, 2, map[StateKey]int64{{"m.room.topic", ""}: 4})
		return err
	})
	want := maps.Clone(base)
	k.wantSnapshot("full", full, want)
	want[StateKey{"m.room.member", "@a:x"}] = 3
	k.wantSnapshot("delta", delta, want)
	want[StateKey{"m.room.topic", ""}] = 4
	k.wantSnapshot("delta of a delta", delta2, want)
	k.wantSnapshot("no snapshot", 0, map[StateKey]int64{})
}

// Client transaction IDs and forgotten rooms.
func TestTxnIDsAndForgottenRooms(t *testing.T) {
	db, _ := openTestDB(t)
	k := newRoomKit(t, db, "!txn:x")
	mustWrite(t, db, func(tx *Tx) error {
		if err := tx.InsertTxnID(k.ctx, "@a:x", "D", "send", "t1", "$first"); err != nil {
			return err
		}
		// A repeat keeps the first event.
		return tx.InsertTxnID(k.ctx, "@a:x", "D", "send", "t1", "$second")
	})
	if id, err := db.TxnEventID(k.ctx, "@a:x", "D", "send", "t1"); err != nil || id != "$first" {
		t.Fatalf("TxnEventID = %q, %v", id, err)
	}
	for _, other := range [][4]string{{"@b:x", "D", "send", "t1"}, {"@a:x", "E", "send", "t1"}, {"@a:x", "D", "redact", "t1"}} {
		if _, err := db.TxnEventID(k.ctx, other[0], other[1], other[2], other[3]); !errors.Is(err, ErrNotFound) {
			t.Errorf("TxnEventID%v: %v, want ErrNotFound", other, err)
		}
	}
	for _, forget := range []bool{true, true, false} {
		mustWrite(t, db, func(tx *Tx) error { return tx.SetForgotten(k.ctx, "@a:x", k.nid, forget) })
		if got, err := db.Forgotten(k.ctx, "@a:x", k.nid); err != nil || got != forget {
			t.Fatalf("Forgotten after SetForgotten(%v) = %v, %v", forget, got, err)
		}
	}
}
