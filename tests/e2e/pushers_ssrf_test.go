package e2e

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"matrixhs/storage"
	"matrixhs/tests/testserver"
)

// pusherPos reads how far a pusher has dealt with its user's push actions.
func pusherPos(t *testing.T, s *testserver.Server, userID, appID, pushkey string) int64 {
	t.Helper()
	p, err := s.DB.Pusher(context.Background(), storage.PusherKey{UserID: userID, AppID: appID, PushKey: pushkey})
	if err != nil {
		t.Fatalf("pusher %s/%s: %v", appID, pushkey, err)
	}
	return p.LastPos
}

// waitPusherPast waits until the pusher has dealt with everything after pos.
func waitPusherPast(t *testing.T, s *testserver.Server, userID, appID, pushkey string, pos int64) {
	t.Helper()
	deadline := time.Now().Add(pushWait)
	for pusherPos(t, s, userID, appID, pushkey) <= pos {
		if time.Now().After(deadline) {
			t.Fatalf("pusher %s/%s never moved past %d", appID, pushkey, pos)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPusherInternalAddressGetsNothing: as in Synapse, a pusher whose URL
// points at loopback (or another internal address) can be set, but without
// ip_range_whitelist nothing is ever sent there, whatever form the address
// takes; the notifications are dropped, not retried forever.
func TestPusherInternalAddressGetsNothing(t *testing.T) {
	s := startPushWithConfig(t, "")
	gw := newFakeGateway(t)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	room := pushRoom(t, alice, bob)
	_, port, _ := net.SplitHostPort(gw.Listener.Addr().String())
	urls := map[string]string{
		"loopback": gw.url(),
		"name":     "http://localhost:" + port + "/_matrix/push/v1/notify",
		"mapped":   "http://[::ffff:127.0.0.1]:" + port + "/_matrix/push/v1/notify",
		"compat":   "http://[::127.0.0.1]:" + port + "/_matrix/push/v1/notify",
	}
	before := map[string]int64{}
	for key, u := range urls {
		setPusher(t, s, bob.AccessToken, pusher(u, "org.example."+key, key, "")).want(t, 200, "")
		before[key] = pusherPos(t, s, bob.UserID.String(), "org.example."+key, key)
	}
	text(t, alice, room, "a secret message body")
	for key := range urls {
		waitPusherPast(t, s, bob.UserID.String(), "org.example."+key, key, before[key])
	}
	gw.mu.Lock()
	n := len(gw.attempts)
	gw.mu.Unlock()
	if n != 0 {
		t.Fatalf("the internal gateway got %d requests", n)
	}
}

// TestPusherRedirectNotFollowed: a whitelisted gateway that answers with a
// redirect cannot send the server elsewhere: the notification is dropped.
func TestPusherRedirectNotFollowed(t *testing.T) {
	s := startPush(t)
	var stolen atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { stolen.Add(1) }))
	t.Cleanup(target.Close)
	var asked atomic.Int32
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		http.Redirect(w, r, target.URL+"/internal/admin", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(gw.Close)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	room := pushRoom(t, alice, bob)
	setPusher(t, s, bob.AccessToken, pusher(gw.URL+"/_matrix/push/v1/notify", "org.example", "key", "")).want(t, 200, "")
	pos := pusherPos(t, s, bob.UserID.String(), "org.example", "key")
	text(t, alice, room, "hello")
	waitPusherPast(t, s, bob.UserID.String(), "org.example", "key", pos)
	if asked.Load() != 1 || stolen.Load() != 0 {
		t.Fatalf("gateway asked %d times, redirect target hit %d times; want 1 and 0", asked.Load(), stolen.Load())
	}
}
