package fedephemeral

import (
	"net/http"
	"testing"
	"time"

	"matrixhs/tests/fedtest"
)

const destinationsPath = "/_synapse/admin/v1/federation/destinations"

// TestFederationAdminDestinations drives Synapse's federation admin API
// over raw HTTP: the destinations hs1 sends to (paged, filtered, ordered),
// one destination, its rooms, and reset_connection, which retries a
// failing destination at once; errors and non-admins answered as Synapse.
func TestFederationAdminDestinations(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2, hs3 := n.Start("hs1"), n.Start("hs2"), n.Start("hs3")
	admin, alice := newAdmin(t, hs1, "admin"), newUser(t, hs1, "alice")
	bob, carol := newUser(t, hs2, "bob"), newUser(t, hs3, "carol")
	roomID := shareRoom(t, alice, bob, carol)
	alice.say(roomID, "to everyone")
	delivered := func(dest string) func() bool {
		return func() bool {
			r := admin.raw("GET", destinationsPath+"/"+dest, nil)
			return r.Status == http.StatusOK && r.Body["last_successful_stream_ordering"] != nil
		}
	}
	waitFor(t, "delivery to hs2", delivered("hs2"))
	waitFor(t, "delivery to hs3", delivered("hs3"))

	// Admins only.
	for _, req := range []struct{ method, path string }{
		{"GET", destinationsPath}, {"GET", destinationsPath + "/hs2"}, {"GET", destinationsPath + "/hs2/rooms"},
		{"POST", destinationsPath + "/hs2/reset_connection"},
	} {
		alice.raw(req.method, req.path, map[string]any{}).want(t, http.StatusForbidden, "M_FORBIDDEN")
	}

	// The list, its pages, order and filter.
	all := admin.raw("GET", destinationsPath, nil)
	all.want(t, http.StatusOK, "")
	if all.Body["total"] != float64(2) || len(fedtest.List(all.Body["destinations"])) != 2 || all.Body["next_token"] != nil {
		t.Fatalf("destinations = %s", all.Raw)
	}
	d := fedtest.List(all.Body["destinations"])[0].(map[string]any)
	if d["destination"] != "hs2" || d["retry_last_ts"] != float64(0) || d["retry_interval"] != float64(0) ||
		d["failure_ts"] != nil || d["last_successful_stream_ordering"] == nil {
		t.Fatalf("hs2 = %v", d)
	}
	first := admin.raw("GET", destinationsPath+"?limit=1", nil)
	if dests := fedtest.List(first.Body["destinations"]); len(dests) != 1 || fedtest.Get(dests[0], "destination") != "hs2" || first.Body["next_token"] != "1" {
		t.Fatalf("first page = %s", first.Raw)
	}
	second := admin.raw("GET", destinationsPath+"?limit=1&from=1", nil)
	if dests := fedtest.List(second.Body["destinations"]); len(dests) != 1 || fedtest.Get(dests[0], "destination") != "hs3" || second.Body["next_token"] != nil {
		t.Fatalf("second page = %s", second.Raw)
	}
	back := admin.raw("GET", destinationsPath+"?dir=b&order_by=last_successful_stream_ordering", nil)
	if dests := fedtest.List(back.Body["destinations"]); len(dests) != 2 {
		t.Fatalf("backwards = %s", back.Raw)
	}
	if f := admin.raw("GET", destinationsPath+"?destination=HS3", nil); f.Body["total"] != float64(1) ||
		fedtest.Get(fedtest.List(f.Body["destinations"])[0], "destination") != "hs3" {
		t.Fatalf("filtered = %s", f.Raw)
	}
	if f := admin.raw("GET", destinationsPath+"?destination=nowhere", nil); f.Body["total"] != float64(0) || fedtest.List(f.Body["destinations"]) == nil {
		t.Fatalf("filtered to nothing = %s", f.Raw)
	}
	for _, q := range []string{"order_by=name", "dir=x", "from=-1", "limit=many"} {
		admin.raw("GET", destinationsPath+"?"+q, nil).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	}

	// One destination, and its rooms.
	one := admin.raw("GET", destinationsPath+"/hs2", nil)
	one.want(t, http.StatusOK, "")
	if one.Body["destination"] != "hs2" || one.Body["failure_ts"] != nil || one.Body["retry_last_ts"] != float64(0) {
		t.Fatalf("hs2 = %s", one.Raw)
	}
	admin.raw("GET", destinationsPath+"/nowhere.example", nil).want(t, http.StatusNotFound, "M_NOT_FOUND")
	rooms := admin.raw("GET", destinationsPath+"/hs2/rooms", nil)
	rooms.want(t, http.StatusOK, "")
	if rs := fedtest.List(rooms.Body["rooms"]); rooms.Body["total"] != float64(1) || len(rs) != 1 || fedtest.Get(rs[0], "room_id") != roomID ||
		fedtest.Get(rs[0], "stream_ordering") == nil {
		t.Fatalf("rooms of hs2 = %s", rooms.Raw)
	}
	admin.raw("GET", destinationsPath+"/nowhere.example/rooms", nil).want(t, http.StatusNotFound, "M_NOT_FOUND")
	admin.raw("GET", destinationsPath+"/hs2/rooms?dir=sideways", nil).want(t, http.StatusBadRequest, "M_INVALID_PARAM")

	// Nothing to reset while a destination answers; unknown ones are 404.
	admin.raw("POST", destinationsPath+"/hs2/reset_connection", map[string]any{}).want(t, http.StatusBadRequest, "")
	admin.raw("POST", destinationsPath+"/nowhere.example/reset_connection", map[string]any{}).want(t, http.StatusNotFound, "M_NOT_FOUND")

	// hs3 goes down: hs1 fails to reach it and backs off.
	hs3.Stop()
	missed := alice.say(roomID, "while hs3 is down")
	status := func() map[string]any { return admin.raw("GET", destinationsPath+"/hs3", nil).Body }
	waitFor(t, "hs1 to fail reaching hs3", func() bool { s := status(); return s["failure_ts"] != nil && s["retry_last_ts"] != float64(0) })
	failedSince := status()["failure_ts"].(float64)
	// A reset retries at once: the failure run starts again (still down).
	resetAt := float64(time.Now().UnixMilli())
	admin.raw("POST", destinationsPath+"/hs3/reset_connection", map[string]any{}).want(t, http.StatusOK, "")
	waitFor(t, "the retry after the reset", func() bool {
		f, ok := status()["failure_ts"].(float64)
		return ok && f >= resetAt && f > failedSince
	})
	// Back up, hs3 gets what it missed; the failure is cleared.
	hs3.Restart()
	if r := admin.raw("POST", destinationsPath+"/hs3/reset_connection", map[string]any{}); r.Status != http.StatusOK && r.Status != http.StatusBadRequest {
		t.Fatalf("reset after the restart: %d %s", r.Status, r.Raw)
	}
	carol.syncUntil("the message hs3 missed", func(s map[string]any) bool {
		for _, e := range fedtest.List(fedtest.Get(s, "rooms", "join", roomID, "timeline", "events")) {
			if fedtest.Get(e, "event_id") == missed {
				return true
			}
		}
		return false
	})
	waitFor(t, "the failure to clear", func() bool {
		s := status()
		return s["failure_ts"] == nil && s["retry_last_ts"] == float64(0) && s["retry_interval"] == float64(0)
	})
}
