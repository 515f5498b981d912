package httputil

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRouterPrefixesFallbacksAndPathIDs(t *testing.T) {
	rt := NewRouter()
	echo := Handler(func(r *http.Request) (any, error) {
		return map[string]string{"room": PathVar(r, "roomId")}, nil
	})
	rt.Client(http.MethodGet, "/rooms/{roomId}/x", echo)
	rt.V1(http.MethodGet, "/only/v1", echo)
	rt.Handle("/media/{mediaId}", echo, http.MethodGet, http.MethodHead)

	for _, tc := range []struct {
		method, path string
		status       int
		errcode      string
		room         string
	}{
		{"GET", "/_matrix/client/v3/rooms/%21a%3Ahs/x", 200, "", "!a:hs"},
		{"GET", "/_matrix/client/r0/rooms/%21a%3Ahs/x", 200, "", "!a:hs"},
		{"GET", "/_matrix/client/v1/rooms/%21a%3Ahs/x", 404, "M_UNRECOGNIZED", ""},
		{"GET", "/_matrix/client/v3/rooms/not-a-room/x", 400, "M_INVALID_PARAM", ""},
		{"PUT", "/_matrix/client/v3/rooms/%21a%3Ahs/x", 405, "M_UNRECOGNIZED", ""},
		{"GET", "/_matrix/client/v1/only/v1", 200, "", ""},
		{"HEAD", "/media/abc", 200, "", ""},
		{"GET", "/nowhere", 404, "M_UNRECOGNIZED", ""},
	} {
		rec := httptest.NewRecorder()
		rt.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		var body map[string]string
		json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != tc.status || body["errcode"] != tc.errcode || (tc.status == 200 && tc.method == "GET" && body["room"] != tc.room) {
			t.Errorf("%s %s: %d %v, want %d %s %q", tc.method, tc.path, rec.Code, body, tc.status, tc.errcode, tc.room)
		}
	}
	routes := rt.Routes()
	if len(routes) != 5 || routes[0] != (Route{"GET", "/_matrix/client/v3/rooms/{roomId}/x"}) {
		t.Errorf("Routes() = %v", routes)
	}
}
