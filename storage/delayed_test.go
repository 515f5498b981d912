package storage

import (
	"errors"
	"slices"
	"testing"
)

func delayIDs(ds []DelayedEvent) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, d.DelayID)
	}
	return out
}

// Delayed events (MSC4140): a per-user limit, listed soonest first, due by
// time, restarted, read back only by their owner, deleted.
func TestDelayedEvents(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := t.Context()
	if _, ok, err := db.NextDelayedSendTS(ctx); ok || err != nil {
		t.Fatalf("next send with none scheduled: %v, %v", ok, err)
	}
	mustWrite(t, db, func(tx *Tx) error {
		for _, d := range []DelayedEvent{
			{DelayID: "late", UserID: "@a:x", DeviceID: "D", RoomID: "!r:x", Type: "m.room.message", Content: []byte(`{"body":"x"}`),
				DelayMS: 500, RunningSince: 1000, SendTS: 1500},
			{DelayID: "soon", UserID: "@a:x", RoomID: "!r:x", Type: "m.room.topic", StateKey: ptr(""), Content: []byte(`{}`),
				DelayMS: 100, RunningSince: 1000, SendTS: 1100},
		} {
			if err := tx.InsertDelayedEvent(ctx, d, 2); err != nil {
				return err
			}
		}
		if err := tx.InsertDelayedEvent(ctx, DelayedEvent{DelayID: "over", UserID: "@a:x", Content: []byte(`{}`)}, 2); !errors.Is(err, ErrLimit) {
			t.Errorf("a third event past a limit of two: %v, want ErrLimit", err)
		}
		return tx.InsertDelayedEvent(ctx, DelayedEvent{DelayID: "b", UserID: "@b:x", RoomID: "!r:x", Type: "m.room.topic",
			StateKey: ptr(""), Content: []byte(`{}`), SendTS: 5000}, 2)
	})
	ds, err := db.DelayedEventsOf(ctx, "@a:x")
	if err != nil || !slices.Equal(delayIDs(ds), []string{"soon", "late"}) {
		t.Fatalf("DelayedEventsOf = %v, %v", delayIDs(ds), err)
	}
	if late := ds[1]; late.DeviceID != "D" || late.StateKey != nil || string(late.Content) != `{"body":"x"}` || late.DelayMS != 500 {
		t.Fatalf("stored delayed event = %+v", late)
	}
	if next, ok, err := db.NextDelayedSendTS(ctx); !ok || err != nil || next != 1100 {
		t.Fatalf("next send = %d, %v, %v", next, ok, err)
	}
	if due, err := db.DueDelayedEvents(ctx, 1500, 10); err != nil || !slices.Equal(delayIDs(due), []string{"soon", "late"}) {
		t.Fatalf("due at 1500 = %v, %v", delayIDs(due), err)
	}
	if due, _ := db.DueDelayedEvents(ctx, 1500, 1); !slices.Equal(delayIDs(due), []string{"soon"}) {
		t.Fatalf("due at 1500, one = %v", delayIDs(due))
	}
	mustWrite(t, db, func(tx *Tx) error {
		if err := tx.RestartDelayedEvent(ctx, "@a:x", "soon", 2000); err != nil {
			return err
		}
		if err := tx.RestartDelayedEvent(ctx, "@b:x", "soon", 2000); !errors.Is(err, ErrNotFound) {
			t.Errorf("restarting another user's event: %v", err)
		}
		if _, err := tx.DelayedEvent(ctx, "@b:x", "soon"); !errors.Is(err, ErrNotFound) {
			t.Errorf("reading another user's event: %v", err)
		}
		d, err := tx.DelayedEvent(ctx, "@a:x", "soon")
		if err != nil || d.RunningSince != 2000 || d.SendTS != 2100 {
			t.Errorf("restarted event = %+v, %v; want running since 2000, due 2100", d, err)
		}
		return tx.DeleteDelayedEvent(ctx, "late")
	})
	if ds, _ := db.DelayedEventsOf(ctx, "@a:x"); !slices.Equal(delayIDs(ds), []string{"soon"}) {
		t.Fatalf("after delete and restart: %v", delayIDs(ds))
	}
	// Someone else setting the topic voids the others' scheduled topics.
	mustWrite(t, db, func(tx *Tx) error { return tx.CancelDelayedStateEvents(ctx, "!r:x", "m.room.topic", "", "@b:x") })
	if ds, _ := db.DelayedEventsOf(ctx, "@a:x"); len(ds) != 0 {
		t.Fatalf("a's topic survived b's change: %v", delayIDs(ds))
	}
	if ds, _ := db.DelayedEventsOf(ctx, "@b:x"); !slices.Equal(delayIDs(ds), []string{"b"}) {
		t.Fatalf("b's own scheduled topic was voided: %v", delayIDs(ds))
	}
}
