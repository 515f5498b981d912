package storage

import (
	"slices"
	"testing"
)

// Receipts move forward only, per type and thread; the main timeline's
// read marker is the furthest unthreaded or "main" receipt.
func TestReceipts(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := t.Context()
	k := newRoomKit(t, db, "!rcpt:x")
	if pos, err := db.ReadUpTo(ctx, k.nid, "@a:x"); err != nil || pos != 0 {
		t.Fatalf("ReadUpTo with no receipt = %d, %v", pos, err)
	}
	var wakes [][]int64
	db.OnWake(func(w WakeTargets) { wakes = append(wakes, w.Rooms) })
	start := db.StreamPosition()
	put := func(typ, thread string, eventPos int64) bool {
		t.Helper()
		var stored bool
		mustWrite(t, db, func(tx *Tx) (err error) {
			stored, err = tx.PutReceipt(ctx, Receipt{RoomNID: k.nid, UserID: "@a:x", Type: typ, ThreadID: thread,
				EventID: "$e", EventPos: eventPos, TS: 7})
			return err
		})
		return stored
	}
	for _, c := range []struct {
		typ, thread string
		pos         int64
		stored      bool
	}{
		{"m.read", "", 10, true},
		{"m.read", "", 10, false}, // not forward
		{"m.read", "", 5, false},  // backwards
		{"m.read", "", 12, true},
		{"m.read.private", "", 11, true}, // another type is its own
		{"m.read", "$thread", 40, true},  // another thread too
		{"m.read", "main", 15, true},
	} {
		if got := put(c.typ, c.thread, c.pos); got != c.stored {
			t.Fatalf("PutReceipt(%s, %q, %d) stored %v, want %v", c.typ, c.thread, c.pos, got, c.stored)
		}
	}
	if len(wakes) != 5 || !slices.Equal(wakes[0], []int64{k.nid}) {
		t.Fatalf("wakes %v, want the room once per stored receipt", wakes)
	}
	if pos, err := db.ReadUpTo(ctx, k.nid, "@a:x"); err != nil || pos != 15 {
		t.Fatalf("ReadUpTo = %d, %v; want 15 (the thread's 40 does not count)", pos, err)
	}
	all, err := db.ReceiptsSince(ctx, k.nid, start, db.StreamPosition())
	if err != nil || len(all) != 4 {
		t.Fatalf("ReceiptsSince = %+v, %v; want the four receipts", all, err)
	}
	var threads []string
	for i, r := range all {
		if i > 0 && r.StreamPos <= all[i-1].StreamPos {
			t.Fatalf("receipts out of stream order: %+v", all)
		}
		threads = append(threads, r.Type+"/"+r.ThreadID)
	}
	if !slices.Equal(threads, []string{"m.read/", "m.read.private/", "m.read/$thread", "m.read/main"}) {
		t.Fatalf("receipts %v", threads)
	}
	if later, _ := db.ReceiptsSince(ctx, k.nid, all[2].StreamPos, db.StreamPosition()); len(later) != 1 || later[0].ThreadID != "main" {
		t.Fatalf("receipts after the third = %+v", later)
	}
}
