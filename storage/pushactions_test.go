package storage

import (
	"context"
	"fmt"
	"maps"
	"math/rand"
	"testing"
)

// The unread cache must give exactly what a fresh count gives, whatever
// order notifications and receipts (main, unthreaded, per thread) come in.
func TestUnreadCountsCachedMatchFresh(t *testing.T) {
	ctx := context.Background()
	f := newPushFixture(t)
	db := f.db
	rng := rand.New(rand.NewSource(7))
	threads := []string{"main", "$t1", "$t2"}
	var positions []int64
	fresh := func(perThread bool, upTo int64) (UnreadCounts, map[string]UnreadCounts) {
		saved := db.unread.entries
		db.unread.entries = nil
		main, th, err := db.UnreadCounts(ctx, f.room, pushUser, perThread, upTo)
		if err != nil {
			t.Fatal(err)
		}
		db.unread.entries = saved
		return main, th
	}
	nonZero := 0
	for step := 0; step < 300; step++ {
		if rng.Intn(4) == 0 && len(positions) > 0 {
			pos := positions[rng.Intn(len(positions))]
			thread := []string{"", "main", "$t1", "$t2"}[rng.Intn(4)]
			mustWrite(t, db, func(tx *Tx) error {
				_, err := tx.PutReceipt(ctx, Receipt{RoomNID: f.room, UserID: pushUser, Type: "m.read", ThreadID: thread,
					EventID: "$x", EventPos: pos, TS: 1})
				return err
			})
		} else {
			positions = append(positions, f.notify(fmt.Sprintf("$e%d", step), pushUser, threads[rng.Intn(len(threads))], rng.Intn(5) == 0))
		}
		upTo := db.StreamPosition()
		for _, perThread := range []bool{false, true} {
			gotMain, gotThreads, err := db.UnreadCounts(ctx, f.room, pushUser, perThread, upTo)
			if err != nil {
				t.Fatal(err)
			}
			wantMain, wantThreads := fresh(perThread, upTo)
			if gotMain != wantMain || !maps.Equal(gotThreads, wantThreads) {
				t.Fatalf("step %d perThread=%v: cached %+v %+v, fresh %+v %+v", step, perThread, gotMain, gotThreads, wantMain, wantThreads)
			}
			if gotMain.Notifications > 0 {
				nonZero++
			}
		}
	}
	if nonZero == 0 || len(db.unread.entries) != 1 {
		t.Fatalf("test exercised nothing: nonZero=%d entries=%d", nonZero, len(db.unread.entries))
	}
	// A sync that read receipts newer than its own position (committed while
	// it ran) must not let later syncs add on top of its counts.
	db.unread.entries = nil
	p1 := f.notify("$late1", pushUser, "main", false)
	p2 := f.notify("$late2", pushUser, "main", false)
	p3 := f.notify("$late3", pushUser, "main", false)
	mustWrite(t, db, func(tx *Tx) error {
		_, err := tx.PutReceipt(ctx, Receipt{RoomNID: f.room, UserID: pushUser, Type: "m.read", EventID: "$late2", EventPos: p2, TS: 1})
		return err
	})
	if _, _, err := db.UnreadCounts(ctx, f.room, pushUser, false, p1); err != nil {
		t.Fatal(err)
	}
	if main, _, err := db.UnreadCounts(ctx, f.room, pushUser, false, p3); err != nil || main.Notifications != 1 {
		t.Fatalf("after a receipt ahead of the cached position: %+v, %v; want 1", main, err)
	}
	// A sync at an older position than the cache must not read it.
	main, _, err := db.UnreadCounts(ctx, f.room, pushUser, false, positions[0]-1)
	if err != nil || main.Notifications != 0 {
		t.Fatalf("counts before the first notification = %+v, %v", main, err)
	}
}

// MembershipsAt reads current memberships from current_state, and from the
// event history when asked about a position before the latest change.
func TestMembershipsAtCurrentAndPast(t *testing.T) {
	ctx := context.Background()
	f := newPushFixture(t) // pushUser joined
	joined, err := f.db.MembershipsAt(ctx, pushUser, f.db.StreamPosition())
	if err != nil || len(joined) != 1 || joined[0].Membership != "join" || joined[0].RoomID != "!r:x" {
		t.Fatalf("current memberships = %+v, %v", joined, err)
	}
	joinPos := joined[0].StreamPos
	key := pushUser
	nid, pos := f.event("$leave", "m.room.member", &key, map[string]any{"membership": "leave"})
	mustWrite(t, f.db, func(tx *Tx) error {
		return tx.SetCurrentState(ctx, f.room, StateKey{Type: "m.room.member", StateKey: pushUser}, nid, "leave", pos)
	})
	now, err := f.db.MembershipsAt(ctx, pushUser, f.db.StreamPosition())
	if err != nil || len(now) != 1 || now[0].Membership != "leave" || now[0].StreamPos <= joinPos {
		t.Fatalf("after leaving = %+v, %v", now, err)
	}
	then, err := f.db.MembershipsAt(ctx, pushUser, joinPos)
	if err != nil || len(then) != 1 || then[0].Membership != "join" || then[0].StreamPos != joinPos || then[0].EventNID != joined[0].EventNID {
		t.Fatalf("as of the join = %+v, %v; want %+v", then, err, joined[0])
	}
	if none, err := f.db.MembershipsAt(ctx, pushUser, joinPos-1); err != nil || len(none) != 0 {
		t.Fatalf("before the join = %+v, %v", none, err)
	}
}

// A thread's receipt lowers the room's count also for a client that does
// not ask for counts per thread (the sum of the main timeline and the
// threads, each against its own receipt, as Synapse counts).
func TestUnreadCountsSumThreadsAgainstTheirReceipts(t *testing.T) {
	ctx := context.Background()
	f := newPushFixture(t)
	db := f.db
	f.notify("$m1", pushUser, "main", false)
	t1 := f.notify("$t1", pushUser, "$root", false)
	f.notify("$t2", pushUser, "$root", true)
	f.notify("$m2", pushUser, "main", false)
	count := func(perThread bool) (UnreadCounts, map[string]UnreadCounts) {
		main, th, err := db.UnreadCounts(ctx, f.room, pushUser, perThread, db.StreamPosition())
		if err != nil {
			t.Fatal(err)
		}
		return main, th
	}
	if main, _ := count(false); main != (UnreadCounts{Notifications: 4, Highlights: 1}) {
		t.Fatalf("before any receipt: %+v", main)
	}
	mustWrite(t, db, func(tx *Tx) error {
		_, err := tx.PutReceipt(ctx, Receipt{RoomNID: f.room, UserID: pushUser, Type: "m.read", ThreadID: "$root", EventID: "$t1", EventPos: t1, TS: 1})
		return err
	})
	if main, _ := count(false); main != (UnreadCounts{Notifications: 3, Highlights: 1}) {
		t.Fatalf("summed after the thread's receipt: %+v, want 3 notifications, 1 highlight", main)
	}
	main, threads := count(true)
	if main != (UnreadCounts{Notifications: 2}) || threads["$root"] != (UnreadCounts{Notifications: 1, Highlights: 1}) {
		t.Fatalf("per thread after the thread's receipt: %+v %+v", main, threads)
	}
}
