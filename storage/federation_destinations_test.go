package storage

import (
	"context"
	"slices"
	"testing"
)

// A failure run records its start, the last attempt and the wait; a
// delivered transaction records its rooms and newest event and clears the
// failure timing; reset clears it too.
func TestFederationDestinationStatus(t *testing.T) {
	ctx := context.Background()
	f := newFedFixture(t)
	f.member("@a:x", "join")
	m1 := f.store("@a:x", "m.room.message", nil, map[string]any{"body": "1"})
	m2 := f.store("@a:x", "m.room.message", nil, map[string]any{"body": "2"})
	if _, found, err := f.db.FederationDestinationStatus(ctx, "y"); err != nil || found {
		t.Fatalf("unknown destination: found %v, %v", found, err)
	}
	mustWrite(t, f.db, func(tx *Tx) error {
		return tx.QueueFederationPDUs(ctx, []QueuedPDU{{Destination: "y", EventNID: m1.NID, RoomNID: f.room},
			{Destination: "y", EventNID: m2.NID, RoomNID: f.room}})
	})
	id := startTxn(t, f.db, "y", 1000)
	mustWrite(t, f.db, func(tx *Tx) error { return tx.RecordFederationFailure(ctx, "y", 1, 5000, 6000) })
	mustWrite(t, f.db, func(tx *Tx) error { return tx.RecordFederationFailure(ctx, "y", 2, 7000, 9000) })
	d, found, err := f.db.FederationDestinationStatus(ctx, "y")
	if err != nil || !found || d.RetryLastTS != 7000 || d.RetryInterval != 2000 || d.FailureTS == nil || *d.FailureTS != 5000 ||
		d.LastSuccessPos != nil {
		t.Fatalf("after two failures: %+v (found %v, %v)", d, found, err)
	}
	if st, _ := f.db.FederationDestination(ctx, "y"); st.Failures != 2 || st.RetryAt != 9000 || st.TxnID != id {
		t.Fatalf("sender state = %+v", st)
	}
	mustWrite(t, f.db, func(tx *Tx) error {
		if err := tx.RecordFederationDelivered(ctx, "y", id); err != nil {
			return err
		}
		return tx.FinishFederationTxn(ctx, "y", id)
	})
	d, _, _ = f.db.FederationDestinationStatus(ctx, "y")
	if d.RetryLastTS != 0 || d.RetryInterval != 0 || d.FailureTS != nil || d.LastSuccessPos == nil || *d.LastSuccessPos != m2.StreamPos {
		t.Fatalf("after delivery: %+v", d)
	}
	rooms, total, err := f.db.FederationDestinationRooms(ctx, "y", 0, 10, false)
	if err != nil || total != 1 || len(rooms) != 1 || rooms[0] != (DestinationRoom{RoomID: "!fed:x", StreamPos: m2.StreamPos}) {
		t.Fatalf("rooms = %+v (total %d), %v", rooms, total, err)
	}
	// A reset after a failure clears the timing.
	mustWrite(t, f.db, func(tx *Tx) error { return tx.RecordFederationFailure(ctx, "y", 1, 10000, 11000) })
	mustWrite(t, f.db, func(tx *Tx) error { return tx.SetFederationBackoff(ctx, "y", 0, 0) })
	if d, _, _ = f.db.FederationDestinationStatus(ctx, "y"); d.RetryLastTS != 0 || d.FailureTS != nil || *d.LastSuccessPos != m2.StreamPos {
		t.Fatalf("after a reset: %+v", d)
	}
}

// Destinations page, filter (case-insensitively, literally) and sort as
// Synapse's admin API does.
func TestFederationDestinationsList(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	for i, name := range []string{"b.example", "a.example", "c.other", "x_y.test"} {
		mustWrite(t, db, func(tx *Tx) error { return tx.RecordFederationFailure(ctx, name, 1, int64(100-i), int64(200)) })
	}
	names := func(q DestinationQuery) ([]string, int) {
		t.Helper()
		ds, total, err := db.FederationDestinations(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range ds {
			out = append(out, d.Destination)
		}
		return out, total
	}
	if got, total := names(DestinationQuery{Limit: 2}); !slices.Equal(got, []string{"a.example", "b.example"}) || total != 4 {
		t.Fatalf("first page = %v of %d", got, total)
	}
	if got, _ := names(DestinationQuery{Limit: 10, From: 3}); !slices.Equal(got, []string{"x_y.test"}) {
		t.Fatalf("last page = %v", got)
	}
	if got, total := names(DestinationQuery{Limit: 10, Search: "EXAMPLE"}); !slices.Equal(got, []string{"a.example", "b.example"}) || total != 2 {
		t.Fatalf("search = %v of %d", got, total)
	}
	if got, _ := names(DestinationQuery{Limit: 10, Search: "_"}); !slices.Equal(got, []string{"x_y.test"}) {
		t.Fatalf("search for _ = %v (matched as a wildcard?)", got)
	}
	if got, _ := names(DestinationQuery{Limit: 10, OrderBy: "retry_last_ts"}); !slices.Equal(got, []string{"x_y.test", "c.other", "a.example", "b.example"}) {
		t.Fatalf("by retry_last_ts = %v", got)
	}
	if got, _ := names(DestinationQuery{Limit: 10, OrderBy: "destination", Backwards: true}); !slices.Equal(got, []string{"x_y.test", "c.other", "b.example", "a.example"}) {
		t.Fatalf("backwards = %v", got)
	}
	if _, _, err := db.FederationDestinations(ctx, DestinationQuery{OrderBy: "nonsense; DROP TABLE rooms"}); err == nil {
		t.Fatal("an unknown order was accepted")
	}
}

// The servers a user's presence goes to, and whether a user shares a room
// with a server.
func TestServersSharingRooms(t *testing.T) {
	ctx := context.Background()
	f := newFedFixture(t)
	f.member("@a:x", "join")
	f.member("@b:y", "join")
	f.member("@c:z", "invite")
	got, err := f.db.ServersSharingRooms(ctx, "@a:x")
	if err != nil || !slices.Equal(got, []string{"x", "y"}) {
		t.Fatalf("servers sharing with @a:x = %v, %v", got, err)
	}
	for _, tc := range []struct {
		user, server string
		want         bool
	}{{"@b:y", "x", true}, {"@b:y", "z", false}, {"@c:z", "x", false}, {"@nobody:y", "x", false}} {
		if ok, err := f.db.SharesRoomWithServer(ctx, tc.user, tc.server); err != nil || ok != tc.want {
			t.Errorf("SharesRoomWithServer(%s, %s) = %v, %v", tc.user, tc.server, ok, err)
		}
	}
}
