package storage

import (
	"slices"
	"testing"
)

// The membership reads of /sync: memberships as of a position (from the
// current state, or from the history when it changed since), room mates,
// changed rooms and newly joined members.
func TestSyncMembershipReads(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := t.Context()
	a := newRoomKit(t, db, "!a:x")
	b := newRoomKit(t, db, "!b:x")
	a.create("@alice:x", "public", "shared")
	b.create("@bob:x", "public", "shared")
	_, bobInA := a.member("@bob:x", "join")
	joinedBoth := db.StreamPosition()
	_, carolInB := b.member("@carol:x", "join")
	_, bobLeft := a.member("@bob:x", "leave")

	now, err := db.MembershipsAt(ctx, "@bob:x", db.StreamPosition())
	if err != nil || len(now) != 2 || now[0].RoomID != "!b:x" || now[1].RoomID != "!a:x" || now[1].Membership != "leave" || now[1].StreamPos != bobLeft.StreamPos {
		t.Fatalf("bob's memberships now = %+v, %v", now, err)
	}
	then, err := db.MembershipsAt(ctx, "@bob:x", joinedBoth)
	if err != nil || len(then) != 2 || then[1].RoomID != "!a:x" || then[1].Membership != "join" || then[1].EventNID != bobInA.NID {
		t.Fatalf("bob's memberships as of %d = %+v, %v", joinedBoth, then, err)
	}

	mates, err := db.RoomMates(ctx, "@carol:x")
	slices.Sort(mates)
	if err != nil || !slices.Equal(mates, []string{"@bob:x", "@carol:x"}) {
		t.Fatalf("carol's room mates = %v, %v", mates, err)
	}

	changed, err := db.RoomsChangedSince(ctx, joinedBoth, db.StreamPosition())
	if err != nil || !changed.Rooms[a.nid] || !changed.Rooms[b.nid] || !changed.Members[b.nid] {
		t.Fatalf("rooms changed since %d = %+v, %v", joinedBoth, changed, err)
	}
	msgOnly := db.StreamPosition()
	a.message("@alice:x", "hi")
	if changed, _ := db.RoomsChangedSince(ctx, msgOnly, db.StreamPosition()); !changed.Rooms[a.nid] || changed.Members[a.nid] || changed.Rooms[b.nid] {
		t.Fatalf("rooms changed by a message = %+v", changed)
	}

	// Newly joined: carol's join in b is after joinedBoth; every member of
	// a room in "all" counts whatever the age.
	nj, err := db.NewlyJoined(ctx, []int64{b.nid}, nil, joinedBoth)
	if err != nil || !slices.Equal(nj, []string{"@carol:x"}) {
		t.Fatalf("newly joined in b = %v, %v", nj, err)
	}
	nj, _ = db.NewlyJoined(ctx, []int64{b.nid}, []int64{a.nid}, carolInB.StreamPos)
	slices.Sort(nj)
	if !slices.Equal(nj, []string{"@alice:x"}) {
		t.Fatalf("newly joined with a in all = %v, want alice (b's joins are old)", nj)
	}
	if nj, err := db.NewlyJoined(ctx, nil, nil, 0); err != nil || nj != nil {
		t.Fatalf("newly joined in no rooms = %v, %v", nj, err)
	}
	if pos, err := db.PushRulesPos(ctx, "@alice:x"); err != nil || pos != 0 {
		t.Fatalf("push rules position before any = %d, %v", pos, err)
	}
	var put int64
	mustWrite(t, db, func(tx *Tx) (err error) { put, err = tx.PutPushRules(ctx, "@alice:x", []byte(`{}`)); return })
	if pos, err := db.PushRulesPos(ctx, "@alice:x"); err != nil || pos != put || put == 0 {
		t.Fatalf("push rules position = %d, %v; want %d", pos, err, put)
	}
	if raw, err := db.PushRules(ctx, "@alice:x"); err != nil || string(raw) != `{}` {
		t.Fatalf("PushRules = %s, %v", raw, err)
	}
}
