package e2e

import (
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"matrixhs/tests/testserver"
)

// uploadText uploads a text file and returns its media ID.
func uploadText(t *testing.T, s *testserver.Server, token, body string) string {
	t.Helper()
	r := upload(t, s, token, "?filename=f.txt", "text/plain", strings.NewReader(body), int64(len(body))).want(t, 200, "")
	uri, _ := r.Body["content_uri"].(string)
	return uri[strings.LastIndex(uri, "/")+1:]
}

func download(s *testserver.Server, id string) string {
	return s.URL() + "/_matrix/client/v1/media/download/hs.test/" + id
}

// Quarantine (by ID, room and user), protection, room media lists, media
// details, deletion by age and size, and usage statistics.
func TestAdminMediaModeration(t *testing.T) {
	s := start(t, nil)
	admin := newAdmin(t, s, "root")
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	room := mkRoomRaw(t, s, alice.AccessToken, map[string]any{"preset": "public_chat"})
	inRoom := uploadText(t, s, alice.AccessToken, "posted in the room")
	thumb := uploadText(t, s, alice.AccessToken, "a thumbnail")
	same := uploadText(t, s, bob.AccessToken, "posted in the room") // same content as inRoom
	bobs := uploadText(t, s, bob.AccessToken, "bob's other file, a long one")
	protected := uploadText(t, s, bob.AccessToken, "protected")
	relSend(t, alice, room, "m.room.message", map[string]any{"msgtype": "m.file", "body": "f", "url": "mxc://hs.test/" + inRoom,
		"info": map[string]any{"thumbnail_url": "mxc://hs.test/" + thumb}})
	relSend(t, alice, room, "m.room.message", map[string]any{"msgtype": "m.image", "body": "i", "url": "mxc://elsewhere.example/abc"})
	tok := admin.AccessToken

	// The room's media.
	do(t, "GET", adminURL(s, "/v1/room/"+url.PathEscape(string(room))+"/media"), alice.AccessToken, nil).want(t, 403, "M_FORBIDDEN")
	rm := do(t, "GET", adminURL(s, "/v1/room/"+url.PathEscape(string(room))+"/media"), tok, nil).want(t, 200, "")
	if l, r := rm.Body["local"].([]any), rm.Body["remote"].([]any); len(l) != 2 || len(r) != 1 || r[0] != "mxc://elsewhere.example/abc" {
		t.Fatalf("room media = %s", rm.Raw)
	}
	do(t, "GET", adminURL(s, "/v1/room/"+url.PathEscape("!nope:hs.test")+"/media"), tok, nil).want(t, 404, "M_NOT_FOUND")

	// Protect one, then quarantine the room's media: the room's two files
	// go, and bob's upload of the same content with them.
	do(t, "POST", adminURL(s, "/v1/media/protect/"+protected), tok, map[string]any{}).want(t, 200, "")
	do(t, "POST", adminURL(s, "/v1/media/protect/nope"), tok, map[string]any{}).want(t, 404, "M_NOT_FOUND")
	q := do(t, "POST", adminURL(s, "/v1/room/"+url.PathEscape(string(room))+"/media/quarantine"), tok, map[string]any{}).want(t, 200, "")
	if q.Body["num_quarantined"] != float64(3) {
		t.Fatalf("room quarantine = %s", q.Raw)
	}
	for _, id := range []string{inRoom, thumb, same} {
		do(t, "GET", download(s, id), alice.AccessToken, nil).want(t, 404, "M_NOT_FOUND")
	}
	info := do(t, "GET", adminURL(s, "/v1/media/hs.test/"+inRoom), tok, nil).want(t, 200, "")
	if mi := info.Body["media_info"].(map[string]any); mi["quarantined_by"] != string(admin.UserID) || mi["user_id"] != string(alice.UserID) {
		t.Fatalf("media info = %s", info.Raw)
	}
	// The same content uploaded again is quarantined at once.
	again := uploadText(t, s, bob.AccessToken, "posted in the room")
	do(t, "GET", download(s, again), bob.AccessToken, nil).want(t, 404, "M_NOT_FOUND")
	// Lifted by ID (with its copies).
	do(t, "POST", adminURL(s, "/v1/media/unquarantine/hs.test/"+inRoom), tok, map[string]any{}).want(t, 200, "")
	do(t, "GET", download(s, inRoom), alice.AccessToken, nil).want(t, 200, "")
	do(t, "POST", adminURL(s, "/v1/media/quarantine/hs.test/"+thumb), tok, map[string]any{}).want(t, 200, "")

	// A user's media: everything but the protected file, and alice's copy
	// of the same content as one of them.
	q = do(t, "POST", adminURL(s, "/v1/user/"+url.PathEscape(string(bob.UserID))+"/media/quarantine"), tok, map[string]any{}).want(t, 200, "")
	if q.Body["num_quarantined"] != float64(4) {
		t.Fatalf("user quarantine = %s", q.Raw)
	}
	do(t, "GET", download(s, bobs), bob.AccessToken, nil).want(t, 404, "M_NOT_FOUND")
	do(t, "GET", download(s, protected), bob.AccessToken, nil).want(t, 200, "")

	// Statistics.
	st := do(t, "GET", adminURL(s, "/v1/statistics/users/media?order_by=media_count&dir=b"), tok, nil).want(t, 200, "")
	users := st.Body["users"].([]any)
	if st.Body["total"] != float64(2) || users[0].(map[string]any)["user_id"] != string(bob.UserID) || users[0].(map[string]any)["media_count"] != float64(4) {
		t.Fatalf("statistics = %s", st.Raw)
	}
	do(t, "GET", adminURL(s, "/v1/statistics/users/media?order_by=nope"), tok, nil).want(t, 400, "M_INVALID_PARAM")

	// Deleting by age and size: not quarantined or protected media, nor avatars.
	avatar := uploadText(t, s, alice.AccessToken, "my face, big enough")
	do(t, "PUT", v3(s, "profile", string(alice.UserID), "avatar_url"), alice.AccessToken, map[string]any{"avatar_url": "mxc://hs.test/" + avatar}).want(t, 200, "")
	small := uploadText(t, s, alice.AccessToken, "tiny")
	big := uploadText(t, s, alice.AccessToken, "a file of more than twenty bytes")
	later := strconv.FormatInt(time.Now().Add(time.Minute).UnixMilli(), 10)
	do(t, "POST", adminURL(s, "/v1/media/delete"), tok, map[string]any{}).want(t, 400, "M_MISSING_PARAM")
	do(t, "POST", adminURL(s, "/v1/media/delete?before_ts=x"), tok, map[string]any{}).want(t, 400, "M_INVALID_PARAM")
	do(t, "POST", adminURL(s, "/v1/media/other.example/delete?before_ts=1"), tok, map[string]any{}).want(t, 400, "M_INVALID_PARAM")
	del := do(t, "POST", adminURL(s, "/v1/media/hs.test/delete?before_ts="+later+"&size_gt=20"), tok, map[string]any{}).want(t, 200, "")
	if got := del.Body["deleted_media"].([]any); del.Body["total"] != float64(1) || got[0] != big {
		t.Fatalf("delete by size = %s", del.Raw)
	}
	del = do(t, "POST", adminURL(s, "/v1/media/delete?before_ts="+later), tok, map[string]any{}).want(t, 200, "")
	deleted := map[any]bool{}
	for _, id := range del.Body["deleted_media"].([]any) {
		deleted[id] = true
	}
	if !deleted[small] || deleted[inRoom] || deleted[avatar] || deleted[protected] || deleted[bobs] {
		t.Fatalf("delete by age = %s", del.Raw)
	}
	do(t, "GET", download(s, small), alice.AccessToken, nil).want(t, 404, "M_NOT_FOUND")
	do(t, "GET", download(s, avatar), alice.AccessToken, nil).want(t, 200, "")
	del = do(t, "POST", adminURL(s, "/v1/media/delete?keep_profiles=false&before_ts="+later), tok, map[string]any{}).want(t, 200, "")
	if del.Body["total"] != float64(1) || del.Body["deleted_media"].([]any)[0] != avatar {
		t.Fatalf("delete with profiles = %s", del.Raw)
	}

	// A user's media, all of it.
	ud := do(t, "DELETE", adminURL(s, "/v1/users/"+url.PathEscape(string(bob.UserID))+"/media"), tok, nil).want(t, 200, "")
	if ud.Body["total"] != float64(4) {
		t.Fatalf("delete user media = %s", ud.Raw)
	}
	if r := do(t, "GET", adminURL(s, "/v1/users/"+url.PathEscape(string(bob.UserID))+"/media"), tok, nil).want(t, 200, ""); r.Body["total"] != float64(0) {
		t.Fatalf("bob's media after the delete = %s", r.Raw)
	}
}
