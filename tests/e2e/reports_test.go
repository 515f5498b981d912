package e2e

import (
	"net/http"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"matrixhs/storage"
)

// TestReportContent reports an event, a room and a user; the reports are
// stored, and events the reporter may not see are 404.
func TestReportContent(t *testing.T) {
	s := start(t, nil)
	alice, bob, carol := newUser(t, s, "alice"), newUser(t, s, "bob"), newUser(t, s, "carol")
	room := mkRoomRaw(t, s, alice.AccessToken, map[string]any{
		"preset": "public_chat",
		"initial_state": []any{map[string]any{"type": "m.room.history_visibility", "state_key": "",
			"content": map[string]any{"history_visibility": "joined"}}},
	})
	before := text(t, alice, room, "sent before bob joined")
	join(t, bob, room)
	bad := text(t, alice, room, "something offensive")

	// Through mautrix (reason only), and raw with a score.
	if err := bob.ReportEvent(ctxT(t), room, id.EventID(bad), "offensive"); err != nil {
		t.Fatalf("ReportEvent: %v", err)
	}
	do(t, "POST", roomURL(s, room, "report", bad), bob.AccessToken, map[string]any{"reason": "really", "score": -100}).want(t, 200, "")
	if err := bob.ReportRoom(ctxT(t), room, "bad room"); err != nil {
		t.Fatalf("ReportRoom: %v", err)
	}
	if err := carol.ReportUser(ctxT(t), alice.UserID, "spammer"); err != nil {
		t.Fatalf("ReportUser: %v", err)
	}

	reports, err := s.DB.Reports(ctxT(t), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(reports) != 4 {
		t.Fatalf("%d reports stored, want 4: %+v", len(reports), reports)
	}
	// Newest first.
	want := []storage.Report{
		{Kind: storage.ReportUser, Reporter: string(carol.UserID), UserID: string(alice.UserID), Reason: "spammer"},
		{Kind: storage.ReportRoom, Reporter: string(bob.UserID), RoomID: string(room), Reason: "bad room"},
		{Kind: storage.ReportEvent, Reporter: string(bob.UserID), RoomID: string(room), EventID: bad, UserID: string(alice.UserID), Reason: "really"},
		{Kind: storage.ReportEvent, Reporter: string(bob.UserID), RoomID: string(room), EventID: bad, UserID: string(alice.UserID), Reason: "offensive"},
	}
	for i, w := range want {
		g := reports[i]
		if g.Kind != w.Kind || g.Reporter != w.Reporter || g.RoomID != w.RoomID || g.EventID != w.EventID || g.UserID != w.UserID ||
			g.Reason != w.Reason || g.TS == 0 {
			t.Errorf("report %d = %+v, want %+v", i, g, w)
		}
	}
	if reports[2].Score == nil || *reports[2].Score != -100 || reports[3].Score != nil {
		t.Errorf("scores = %v, %v; want -100 and none", reports[2].Score, reports[3].Score)
	}

	// Events the reporter cannot see are 404: from before bob joined (the
	// room's history is joined-only), unknown ones, and any event for a
	// non-member.
	do(t, "POST", roomURL(s, room, "report", before), bob.AccessToken, map[string]any{"reason": "x"}).want(t, http.StatusNotFound, "M_NOT_FOUND")
	do(t, "POST", roomURL(s, room, "report", "$nope"), bob.AccessToken, map[string]any{}).want(t, http.StatusNotFound, "M_NOT_FOUND")
	do(t, "POST", roomURL(s, room, "report", bad), carol.AccessToken, map[string]any{"reason": "x"}).want(t, http.StatusNotFound, "M_NOT_FOUND")
	other := mkRoom(t, carol, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	do(t, "POST", roomURL(s, other, "report", bad), carol.AccessToken, map[string]any{}).want(t, http.StatusNotFound, "M_NOT_FOUND")
	// After leaving, bob can no longer report in the room.
	if _, err := bob.LeaveRoom(ctxT(t), room); err != nil {
		t.Fatal(err)
	}
	do(t, "POST", roomURL(s, room, "report", bad), bob.AccessToken, map[string]any{}).want(t, http.StatusNotFound, "M_NOT_FOUND")
	// Unknown rooms and users; malformed bodies.
	do(t, "POST", roomURL(s, "!nope:hs.test", "report"), bob.AccessToken, map[string]any{"reason": "x"}).want(t, http.StatusNotFound, "M_NOT_FOUND")
	do(t, "POST", v3(s, "users", "@nobody:hs.test", "report"), bob.AccessToken, map[string]any{"reason": "x"}).want(t, http.StatusNotFound, "M_NOT_FOUND")
	do(t, "POST", v3(s, "users", "nobody", "report"), bob.AccessToken, map[string]any{}).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	do(t, "POST", roomURL(s, room, "report"), bob.AccessToken, map[string]any{"reason": 5}).want(t, http.StatusBadRequest, "M_BAD_JSON")
	do(t, "POST", roomURL(s, room, "report", bad), alice.AccessToken, map[string]any{"score": "bad"}).want(t, http.StatusBadRequest, "M_BAD_JSON")
	do(t, "POST", roomURL(s, room, "report"), "", map[string]any{}).want(t, http.StatusUnauthorized, "M_MISSING_TOKEN")
	if reports, _ := s.DB.Reports(ctxT(t), 0, 100); len(reports) != 4 {
		t.Fatalf("refused reports were stored: %d reports", len(reports))
	}
}
