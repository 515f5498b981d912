package storage

import (
	"context"
	"testing"
)

func TestReportsStoredAndListed(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	score := int64(-100)
	in := []Report{
		{Kind: ReportEvent, Reporter: "@a:hs", RoomID: "!r:hs", EventID: "$e", UserID: "@b:hs", Reason: "spam", Score: &score, TS: 10},
		{Kind: ReportRoom, Reporter: "@a:hs", RoomID: "!r:hs", Reason: "bad room", TS: 11},
		{Kind: ReportUser, Reporter: "@c:hs", UserID: "@b:hs", TS: 12},
	}
	var ids []int64
	for _, r := range in {
		var id int64
		err := db.Write(ctx, func(tx *Tx) (err error) { id, err = tx.InsertReport(ctx, r); return err })
		if err != nil {
			t.Fatalf("InsertReport: %v", err)
		}
		ids = append(ids, id)
	}
	if !(ids[0] < ids[1] && ids[1] < ids[2]) {
		t.Fatalf("report IDs not increasing: %v", ids)
	}
	got, err := db.Reports(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("got %d reports, want 3: %+v", len(got), got)
	}
	// Newest first.
	for i, r := range got {
		want := in[2-i]
		want.ID = ids[2-i]
		if r.ID != want.ID || r.Kind != want.Kind || r.Reporter != want.Reporter || r.RoomID != want.RoomID ||
			r.EventID != want.EventID || r.UserID != want.UserID || r.Reason != want.Reason || r.TS != want.TS ||
			(r.Score == nil) != (want.Score == nil) || (r.Score != nil && *r.Score != *want.Score) {
			t.Errorf("report %d = %+v, want %+v", i, r, want)
		}
	}
	page, err := db.Reports(ctx, ids[2], 1)
	if err != nil || len(page) != 1 || page[0].ID != ids[1] {
		t.Fatalf("Reports(before %d, 1) = %+v, %v; want report %d", ids[2], page, err, ids[1])
	}
}
