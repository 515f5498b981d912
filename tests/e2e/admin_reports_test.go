package e2e

import (
	"strconv"
	"testing"
)

// Event reports: listed (filtered, paged), shown with the event, deleted;
// and the background work status.
func TestAdminEventReports(t *testing.T) {
	s := start(t, nil)
	admin := newAdmin(t, s, "root")
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	room := mkRoomRaw(t, s, alice.AccessToken, map[string]any{"preset": "public_chat", "name": "Reported"})
	join(t, bob, room)
	bad := text(t, alice, room, "bad words")
	worse := text(t, alice, room, "worse words")
	do(t, "POST", roomURL(s, room, "report", bad), bob.AccessToken, map[string]any{"reason": "rude", "score": -50}).want(t, 200, "")
	do(t, "POST", roomURL(s, room, "report", worse), bob.AccessToken, map[string]any{"reason": "ruder"}).want(t, 200, "")
	do(t, "POST", roomURL(s, room, "report"), bob.AccessToken, map[string]any{"reason": "a room report is not an event report"}).want(t, 200, "")

	u := adminURL(s, "/v1/event_reports")
	do(t, "GET", u, bob.AccessToken, nil).want(t, 403, "M_FORBIDDEN")
	r := do(t, "GET", u+"?limit=1", admin.AccessToken, nil).want(t, 200, "")
	reps := r.Body["event_reports"].([]any)
	newest := reps[0].(map[string]any)
	if r.Body["total"] != float64(2) || r.Body["next_token"] != float64(1) || newest["event_id"] != worse ||
		newest["user_id"] != string(bob.UserID) || newest["sender"] != string(alice.UserID) || newest["name"] != "Reported" || newest["score"] != nil {
		t.Fatalf("reports = %s", r.Raw)
	}
	r = do(t, "GET", u+"?dir=f&event_sender_user_id="+string(alice.UserID), admin.AccessToken, nil).want(t, 200, "")
	if reps := r.Body["event_reports"].([]any); len(reps) != 2 || reps[0].(map[string]any)["event_id"] != bad {
		t.Fatalf("oldest first = %s", r.Raw)
	}
	if r := do(t, "GET", u+"?user_id=@nobody:hs.test", admin.AccessToken, nil).want(t, 200, ""); r.Body["total"] != float64(0) {
		t.Fatalf("filtered = %s", r.Raw)
	}
	do(t, "GET", u+"?dir=x", admin.AccessToken, nil).want(t, 400, "M_INVALID_PARAM")

	id := strconv.FormatInt(int64(newest["id"].(float64)), 10)
	one := do(t, "GET", u+"/"+id, admin.AccessToken, nil).want(t, 200, "")
	if ev := one.Body["event_json"].(map[string]any); ev["event_id"] != worse && ev["content"].(map[string]any)["body"] != "worse words" {
		t.Fatalf("report = %s", one.Raw)
	}
	do(t, "GET", u+"/x", admin.AccessToken, nil).want(t, 400, "M_INVALID_PARAM")
	do(t, "GET", u+"/999", admin.AccessToken, nil).want(t, 404, "M_NOT_FOUND")
	do(t, "DELETE", u+"/"+id, bob.AccessToken, nil).want(t, 403, "M_FORBIDDEN")
	do(t, "DELETE", u+"/"+id, admin.AccessToken, nil).want(t, 200, "")
	do(t, "GET", u+"/"+id, admin.AccessToken, nil).want(t, 404, "M_NOT_FOUND")
	do(t, "DELETE", u+"/"+id, admin.AccessToken, nil).want(t, 404, "M_NOT_FOUND")

	bg := do(t, "GET", adminURL(s, "/v1/background_updates/status"), admin.AccessToken, nil).want(t, 200, "")
	if bg.Body["enabled"] != true || len(bg.Body["current_updates"].(map[string]any)) != 0 {
		t.Fatalf("background status = %s", bg.Raw)
	}
	do(t, "POST", adminURL(s, "/v1/background_updates/enabled"), admin.AccessToken, map[string]any{"enabled": false}).want(t, 400, "M_INVALID_PARAM")
	do(t, "POST", adminURL(s, "/v1/background_updates/enabled"), admin.AccessToken, map[string]any{"enabled": true}).want(t, 200, "")
	do(t, "POST", adminURL(s, "/v1/background_updates/start_job"), admin.AccessToken, map[string]any{"job_name": "nope"}).want(t, 400, "M_INVALID_PARAM")
}
