package e2e

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"maunium.net/go/mautrix/appservice"
)

// regFor is a registration of its own namespace pointing at url.
func regFor(id, url string) *appservice.Registration {
	r := appservice.CreateRegistration()
	r.ID, r.URL, r.SenderLocalpart = id, url, id+"bot"
	return r
}

// TestAppServicePingFailures: ping reports an appservice without a URL,
// one answering an error (with its status and body) and one that cannot
// be reached; the admin view shows the one without a URL as such.
func TestAppServicePingFailures(t *testing.T) {
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte(`{"errcode":"M_UNKNOWN","error":"on fire"}`))
	}))
	defer failing.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + ln.Addr().String()
	ln.Close()
	hanging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The body read, the server notices the client hanging up.
		io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	}))
	defer hanging.Close()
	nourl, broken, closed, slow := regFor("nourl", ""), regFor("broken", failing.URL), regFor("closed", closedURL), regFor("slow", hanging.URL)
	opts := fastAppServices
	opts.AppServices.RequestTimeout = 200 * time.Millisecond
	s := startWithAppServices(t, opts, nourl, broken, closed, slow)
	ping := func(r *appservice.Registration) *resp {
		return do(t, "POST", cs(s, "v1", "appservice", r.ID, "ping"), r.AppToken, map[string]any{"transaction_id": "p"})
	}
	ping(nourl).want(t, 400, "M_URL_NOT_SET")
	r := ping(broken).want(t, 502, "M_BAD_STATUS")
	if r.Body["status"] != float64(500) || r.Body["body"] != `{"errcode":"M_UNKNOWN","error":"on fire"}` {
		t.Fatalf("bad status answer = %s", r.Raw)
	}
	ping(closed).want(t, 502, "M_CONNECTION_FAILED")
	ping(slow).want(t, 504, "M_CONNECTION_TIMEOUT")

	admin := newAdmin(t, s, "root")
	r = do(t, "GET", s.URL()+"/_synapse/admin/v1/appservices", admin.AccessToken, nil).want(t, 200, "")
	states := map[string]any{}
	for _, a := range r.Body["appservices"].([]any) {
		m := a.(map[string]any)
		states[m["id"].(string)] = m["state"]
	}
	if states["nourl"] != "no_url" || len(states) != 4 {
		t.Fatalf("admin view states = %v", states)
	}
}
