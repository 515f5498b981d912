package storage

import (
	"context"
	"errors"
	"testing"
)

func memberEvent(id, sender, target, membership string) NewEvent {
	return NewEvent{
		EventID: id, Type: "m.room.member", StateKey: &target, Sender: sender, Depth: 3,
		JSON: []byte(`{"type":"m.room.member","sender":"` + sender + `","state_key":"` + target + `","content":{"membership":"` + membership + `"}}`),
	}
}

// TestOutOfBandMemberships: an out-of-band invite creates the room's row,
// is an outlier, and is the user's current membership at a new position
// (also for the history reader); a later leave replaces it; the room's
// head stays empty, and the room can be adopted by a join (its version
// corrected) while it has no state.
func TestOutOfBandMemberships(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	store := func(e NewEvent, stripped string) StoredEvent {
		t.Helper()
		var out StoredEvent
		err := db.Write(ctx, func(tx *Tx) error {
			var err error
			var s []byte
			if stripped != "" {
				s = []byte(stripped)
			}
			out, err = tx.StoreOutOfBand(ctx, OutOfBandWrite{RoomID: "!r:remote", RoomVersion: "9", Event: e, StrippedState: s, Now: 1})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	inv := store(memberEvent("$inv", "@a:remote", "@b:here", "invite"), `[{"type":"m.room.name","state_key":"","sender":"@a:remote","content":{"name":"N"}}]`)
	if inv.StreamPos <= 0 {
		t.Fatalf("invite stored at %d", inv.StreamPos)
	}
	room, err := db.Room(ctx, "!r:remote")
	if err != nil || room.Version != "9" || room.Snapshot != 0 || len(room.Extremities) != 0 {
		t.Fatalf("room row %+v, %v", room, err)
	}
	if e, err := db.EventByID(ctx, "$inv"); err != nil || e.Status != EventOutlier || e.StreamPos != 0 {
		t.Fatalf("invite event %+v, %v", e, err)
	}
	oob, err := db.CurrentOutOfBand(ctx, "!r:remote", "@b:here")
	if err != nil || oob.Membership != "invite" || oob.Sender != "@a:remote" || oob.StreamPos != inv.StreamPos || string(oob.StrippedState) == "" {
		t.Fatalf("current out-of-band membership %+v, %v", oob, err)
	}
	ms, err := db.MembershipsAt(ctx, "@b:here", inv.StreamPos)
	if err != nil || len(ms) != 1 || ms[0].Membership != "invite" || ms[0].StreamPos != inv.StreamPos {
		t.Fatalf("memberships %+v, %v", ms, err)
	}

	leave := store(memberEvent("$leave", "@b:here", "@b:here", "leave"), "")
	// The history reader (a sync bounded below the latest change) sees the
	// invite up to its position and the leave after.
	for _, c := range []struct {
		upTo int64
		want string
	}{{inv.StreamPos, "invite"}, {leave.StreamPos, "leave"}} {
		ms, err := db.membershipHistoryAt(ctx, "@b:here", c.upTo)
		if err != nil || len(ms) != 1 || ms[0].Membership != c.want {
			t.Fatalf("history at %d: %+v, %v", c.upTo, ms, err)
		}
	}
	if got, err := db.OutOfBandByEvent(ctx, oob.EventNID); err != nil || got.EventID != "$inv" {
		t.Fatalf("record of the invite %+v, %v", got, err)
	}

	// A join adopts the row while the room has no state, with its version.
	err = db.Write(ctx, func(tx *Tx) error {
		nid, err := tx.AdoptRoom(ctx, "!r:remote", "10", 2)
		if err != nil || nid != room.NID {
			t.Errorf("adopted %d, %v (row %d)", nid, err, room.NID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if room, err = db.Room(ctx, "!r:remote"); err != nil || room.Version != "10" {
		t.Fatalf("room row after adoption %+v, %v", room, err)
	}
	// A room with state is not adopted.
	err = db.Write(ctx, func(tx *Tx) error {
		if _, err := tx.exec(ctx, `UPDATE rooms SET state_snapshot = 1 WHERE room_nid = $1`, room.NID); err != nil {
			return err
		}
		if _, err := tx.AdoptRoom(ctx, "!r:remote", "11", 3); !errors.Is(err, ErrExists) {
			t.Errorf("adopting a room with state: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestOutOfBandLeavesTimelineEventsAlone: an event already in a room's
// timeline is not turned into an out-of-band membership.
func TestOutOfBandLeavesTimelineEventsAlone(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	var pos int64
	err := db.Write(ctx, func(tx *Tx) error {
		nid, err := tx.InsertRoom(ctx, "!r:here", "10", 1)
		if err != nil {
			return err
		}
		e := memberEvent("$join", "@b:here", "@b:here", "join")
		e.RoomNID = nid
		_, pos, err = tx.InsertEvent(ctx, e)
		if err != nil {
			return err
		}
		st, err := tx.StoreOutOfBand(ctx, OutOfBandWrite{RoomID: "!r:here", RoomVersion: "10", Event: memberEvent("$join", "@b:here", "@b:here", "join"), Now: 1})
		if err != nil || st.StreamPos != pos {
			t.Errorf("out-of-band store of a timeline event: %+v, %v (its position %d)", st, err, pos)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.CurrentOutOfBand(ctx, "!r:here", "@b:here"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a timeline event became out of band: %v", err)
	}
}
