package storage

import (
	"errors"
	"maps"
	"testing"
)

// Thread subscriptions (MSC4306): each change takes a stream position and
// wakes the user; an unsubscription is kept, and only subscribers count.
func TestThreadSubscriptions(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := t.Context()
	var woken []string
	db.OnWake(func(w WakeTargets) { woken = append(woken, w.Users...) })
	if _, err := db.ThreadSubscription(ctx, "@a:x", "!r:x", "$root"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("never subscribed: %v", err)
	}
	set := func(user string, subscribed, automatic bool) {
		t.Helper()
		mustWrite(t, db, func(tx *Tx) error { return tx.SetThreadSubscription(ctx, user, "!r:x", "$root", subscribed, automatic) })
	}
	set("@a:x", true, true)
	first, err := db.ThreadSubscription(ctx, "@a:x", "!r:x", "$root")
	if err != nil || !first.Subscribed || !first.Automatic || first.StreamPos != db.StreamPosition() {
		t.Fatalf("subscription = %+v, %v", first, err)
	}
	set("@b:x", true, false)
	set("@a:x", false, false)
	mustWrite(t, db, func(tx *Tx) error {
		s, err := tx.ThreadSubscription(ctx, "@a:x", "!r:x", "$root")
		if err != nil || s.Subscribed || s.StreamPos <= first.StreamPos {
			t.Errorf("unsubscription = %+v, %v; want kept at a later position", s, err)
		}
		return nil
	})
	subs, err := db.ThreadSubscribers(ctx, "!r:x", "$root")
	if err != nil || !maps.Equal(subs, map[string]bool{"@b:x": true}) {
		t.Fatalf("subscribers = %v, %v", subs, err)
	}
	if len(woken) != 3 || woken[0] != "@a:x" || woken[1] != "@b:x" {
		t.Fatalf("woken %v, want each change's user", woken)
	}
}
