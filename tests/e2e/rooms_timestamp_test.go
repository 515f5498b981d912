package e2e

import (
	"fmt"
	"testing"

	"maunium.net/go/mautrix"
)

func TestTimestampToEvent(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	first := text(t, alice, room, "first")
	ev := eventOK(t, s, alice.AccessToken, room, first)
	second := text(t, alice, room, "second")
	url := func(ts int64, dir string) string {
		return cs(s, "v1", "rooms", string(room), "timestamp_to_event") + fmt.Sprintf("?ts=%d&dir=%s", ts, dir)
	}
	r := do(t, "GET", url(ev.OriginServerTS, "f"), alice.AccessToken, nil).want(t, 200, "")
	if r.Body["event_id"] != first {
		t.Fatalf("dir=f at the first message's ts = %v, want %s", r.Body, first)
	}
	r = do(t, "GET", url(ev.OriginServerTS+3_600_000, "b"), alice.AccessToken, nil).want(t, 200, "")
	if r.Body["event_id"] != second {
		t.Fatalf("dir=b an hour later = %v, want %s", r.Body, second)
	}
	do(t, "GET", url(ev.OriginServerTS+3_600_000, "f"), alice.AccessToken, nil).want(t, 404, "M_NOT_FOUND")
	do(t, "GET", url(1, "sideways"), alice.AccessToken, nil).want(t, 400, "M_INVALID_PARAM")
	outsider := newUser(t, s, "outsider")
	do(t, "GET", url(1, "f"), outsider.AccessToken, nil).want(t, 403, "M_FORBIDDEN")
}
