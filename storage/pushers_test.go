package storage

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
)

// pushFixture is a room with a joined user who has a device, for the
// pusher tests.
type pushFixture struct {
	t    *testing.T
	db   *DB
	room int64
	ts   int64
}

const pushUser = "@bob:x"

func newPushFixture(t *testing.T) *pushFixture {
	t.Helper()
	ctx := context.Background()
	f := &pushFixture{t: t}
	f.db, _ = openTestDB(t)
	mustWrite(t, f.db, func(tx *Tx) error {
		for _, u := range []string{pushUser, "@carol:x"} {
			if err := tx.InsertAccount(ctx, Account{UserID: u, Localpart: u[1 : len(u)-2], CreatedTS: 1}); err != nil {
				return err
			}
			for _, d := range []string{"D1", "D2"} {
				if err := tx.UpsertDevice(ctx, Device{UserID: u, DeviceID: d, CreatedTS: 1},
					DeviceTokens{AccessHash: []byte(u + d)}); err != nil {
					return err
				}
			}
		}
		var err error
		f.room, err = tx.InsertRoom(ctx, "!r:x", "10", 1)
		return err
	})
	f.state("m.room.member", pushUser, map[string]any{"membership": "join", "displayname": "Bob"}, "join")
	f.state("m.room.member", "@alice:x", map[string]any{"membership": "join", "displayname": "Alice A."}, "join")
	f.state("m.room.name", "", map[string]any{"name": "Lounge"}, "")
	f.state("m.room.canonical_alias", "", map[string]any{"alias": "#lounge:x"}, "")
	return f
}

// event stores a timeline event and returns its NID and position.
func (f *pushFixture) event(id, typ string, stateKey *string, content map[string]any) (int64, int64) {
	f.t.Helper()
	f.ts++
	raw, _ := json.Marshal(map[string]any{"type": typ, "sender": "@alice:x", "content": content, "state_key": stateKey})
	var nid, pos int64
	mustWrite(f.t, f.db, func(tx *Tx) (err error) {
		nid, pos, err = tx.InsertEvent(context.Background(), NewEvent{RoomNID: f.room, EventID: id, Type: typ, StateKey: stateKey,
			Sender: "@alice:x", OriginTS: f.ts, JSON: raw})
		return err
	})
	return nid, pos
}

func (f *pushFixture) state(typ, key string, content map[string]any, membership string) {
	f.t.Helper()
	nid, pos := f.event("$state"+typ+key, typ, &key, content)
	mustWrite(f.t, f.db, func(tx *Tx) error {
		return tx.SetCurrentState(context.Background(), f.room, StateKey{Type: typ, StateKey: key}, nid, membership, pos)
	})
}

// notify stores a message that notifies user (highlighting when hl).
func (f *pushFixture) notify(id, user, thread string, hl bool) int64 {
	f.t.Helper()
	nid, pos := f.event(id, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": id})
	mustWrite(f.t, f.db, func(tx *Tx) error {
		return tx.InsertPushActions(context.Background(), f.room, nid, pos, []PushAction{
			{UserID: user, Highlight: hl, ThreadID: thread, Actions: []byte(`["notify"]`)},
		})
	})
	return pos
}

func (f *pushFixture) receipt(thread string, pos int64) {
	f.t.Helper()
	mustWrite(f.t, f.db, func(tx *Tx) error {
		_, err := tx.PutReceipt(context.Background(), Receipt{RoomNID: f.room, UserID: pushUser, Type: "m.read", ThreadID: thread,
			EventID: "$x", EventPos: pos, TS: 1})
		return err
	})
}

func (f *pushFixture) setPusher(user, device, app, key string, appendOthers bool) {
	f.t.Helper()
	mustWrite(f.t, f.db, func(tx *Tx) error {
		return tx.SetPusher(context.Background(), Pusher{
			PusherKey: PusherKey{UserID: user, AppID: app, PushKey: key}, DeviceID: device, Kind: "http",
			AppDisplayName: "App", DeviceDisplayName: "Phone", Lang: "en", Data: []byte(`{"url":"http://gw/_matrix/push/v1/notify"}`),
			PushKeyTS: 5000,
		}, appendOthers)
	})
}

func pusherKeys(t *testing.T, db *DB, user string) []string {
	t.Helper()
	list, err := db.Pushers(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range list {
		out = append(out, p.AppID+"/"+p.PushKey)
	}
	return out
}

func TestPushersSetAppendDelete(t *testing.T) {
	ctx := context.Background()
	f := newPushFixture(t)
	db := f.db
	f.setPusher(pushUser, "D1", "app", "k1", false)
	f.setPusher(pushUser, "D1", "app", "k1", false) // an update, not a second pusher
	f.setPusher(pushUser, "D2", "app", "k2", false)
	if got := pusherKeys(t, db, pushUser); !slices.Equal(got, []string{"app/k1", "app/k2"}) {
		t.Fatalf("pushers = %v", got)
	}
	p, err := db.Pusher(ctx, PusherKey{pushUser, "app", "k1"})
	if err != nil || p.LastPos != db.StreamPosition() || p.DeviceID != "D1" || p.PushKeyTS != 5000 || p.Orphaned {
		t.Fatalf("pusher = %+v, %v (stream at %d)", p, err, db.StreamPosition())
	}

	// append true keeps bob's pusher of the same app and pushkey; false removes it.
	f.setPusher("@carol:x", "D1", "app", "k1", true)
	if got := pusherKeys(t, db, pushUser); len(got) != 2 {
		t.Fatalf("append=true removed bob's pusher: %v", got)
	}
	f.setPusher("@carol:x", "D1", "app", "k2", false)
	if got := pusherKeys(t, db, pushUser); !slices.Equal(got, []string{"app/k1"}) {
		t.Fatalf("append=false left bob with %v", got)
	}
	if got := pusherKeys(t, db, "@carol:x"); !slices.Equal(got, []string{"app/k1", "app/k2"}) {
		t.Fatalf("carol's pushers = %v", got)
	}

	mustWrite(t, db, func(tx *Tx) error {
		ok, err := tx.DeletePusher(ctx, PusherKey{"@carol:x", "app", "k1"})
		if err == nil && !ok {
			t.Error("DeletePusher found nothing")
		}
		return err
	})
	if _, err := db.Pusher(ctx, PusherKey{"@carol:x", "app", "k1"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted pusher still read: %v", err)
	}

	// A deleted device orphans its pusher: hidden at once, removed on cleanup.
	mustWrite(t, db, func(tx *Tx) error { _, err := tx.DeleteDevices(ctx, "@carol:x", []string{"D1"}, ""); return err })
	if got := pusherKeys(t, db, "@carol:x"); len(got) != 0 {
		t.Fatalf("orphaned pushers listed: %v", got)
	}
	if _, orphans, err := db.PushersDue(ctx, db.StreamPosition()); err != nil || !orphans {
		t.Fatalf("PushersDue orphans = %v, %v", orphans, err)
	}
	mustWrite(t, db, func(tx *Tx) error {
		n, err := tx.DeleteOrphanedPushers(ctx)
		if err == nil && n != 1 {
			t.Errorf("deleted %d orphaned pushers, want 1", n)
		}
		return err
	})
	if _, orphans, _ := db.PushersDue(ctx, db.StreamPosition()); orphans {
		t.Fatal("orphans remain")
	}
}

func TestPushersPendingAndCounts(t *testing.T) {
	ctx := context.Background()
	f := newPushFixture(t)
	db := f.db
	before := f.notify("$before", pushUser, "main", false) // before the pusher: never sent
	f.setPusher(pushUser, "D1", "app", "k1", false)
	key := PusherKey{pushUser, "app", "k1"}
	if due, _, _ := db.PushersDue(ctx, db.StreamPosition()); len(due) != 0 {
		t.Fatalf("due right after set: %v", due)
	}
	p1 := f.notify("$one", pushUser, "main", false)
	f.notify("$carol", "@carol:x", "main", false) // another user's
	p2 := f.notify("$two", pushUser, "$root", true)
	due, _, err := db.PushersDue(ctx, db.StreamPosition())
	if err != nil || !slices.Equal(due, []PusherKey{key}) {
		t.Fatalf("due = %v, %v", due, err)
	}
	if due, _, _ := db.PushersDue(ctx, p1-1); len(due) != 0 {
		t.Fatalf("due before the first action: %v", due)
	}
	p, _ := db.Pusher(ctx, key)
	pending, err := db.PendingPushes(ctx, pushUser, p.LastPos, db.StreamPosition(), 10)
	if err != nil || len(pending) != 2 {
		t.Fatalf("pending = %+v, %v", pending, err)
	}
	if pending[0].Event.EventID != "$one" || pending[0].StreamPos != p1 || pending[0].Highlight || pending[0].Read ||
		string(pending[0].Actions) != `["notify"]` || pending[0].Event.RoomID != "!r:x" {
		t.Fatalf("first pending = %+v", pending[0])
	}
	if pending[1].Event.EventID != "$two" || !pending[1].Highlight {
		t.Fatalf("second pending = %+v", pending[1])
	}
	if got, _ := db.PendingPushes(ctx, pushUser, p.LastPos, db.StreamPosition(), 1); len(got) != 1 {
		t.Fatalf("limit ignored: %d", len(got))
	}

	// Counts: everything unread ($before included), as of a position.
	if n, err := db.UnreadNotificationTotal(ctx, pushUser, p1); err != nil || n != 2 {
		t.Fatalf("unread at $one = %d, %v; want 2", n, err)
	}
	if n, _ := db.UnreadNotificationTotal(ctx, pushUser, p2); n != 3 {
		t.Fatalf("unread at $two = %d, want 3", n)
	}
	// A main-timeline receipt at $one reads $before and $one but not the
	// thread; the thread's own receipt reads $two.
	f.receipt("main", p1)
	if n, _ := db.UnreadNotificationTotal(ctx, pushUser, p2); n != 1 {
		t.Fatalf("unread after main receipt = %d, want 1", n)
	}
	pending, _ = db.PendingPushes(ctx, pushUser, p.LastPos, db.StreamPosition(), 10)
	if !pending[0].Read || pending[1].Read {
		t.Fatalf("read flags = %v %v, want true false", pending[0].Read, pending[1].Read)
	}
	f.receipt("$root", p2)
	if n, _ := db.UnreadNotificationTotal(ctx, pushUser, p2); n != 0 {
		t.Fatalf("unread after thread receipt = %d, want 0", n)
	}
	// An unthreaded receipt reads everything up to it.
	p3 := f.notify("$three", pushUser, "$root", false)
	f.notify("$four", pushUser, "main", false)
	f.receipt("", p3)
	if n, _ := db.UnreadNotificationTotal(ctx, pushUser, db.StreamPosition()); n != 1 {
		t.Fatalf("unread after unthreaded receipt = %d, want 1", n)
	}
	_ = before

	// Advancing never moves back; the pusher is no longer due once past.
	mustWrite(t, db, func(tx *Tx) error { return tx.AdvancePusher(ctx, key, db.StreamPosition()) })
	mustWrite(t, db, func(tx *Tx) error { return tx.AdvancePusher(ctx, key, p1) })
	if p, _ := db.Pusher(ctx, key); p.LastPos != db.StreamPosition() {
		t.Fatalf("last_pos = %d, want %d", p.LastPos, db.StreamPosition())
	}
	if due, _, _ := db.PushersDue(ctx, db.StreamPosition()); len(due) != 0 {
		t.Fatalf("still due: %v", due)
	}
}

func TestPushRoomState(t *testing.T) {
	f := newPushFixture(t)
	st, err := f.db.PushRoomState(context.Background(), f.room, "@alice:x")
	if err != nil || st.Name == nil || st.CanonicalAlias == nil || st.SenderMember == nil {
		t.Fatalf("state = %+v, %v", st, err)
	}
	var m struct {
		Content map[string]string `json:"content"`
	}
	json.Unmarshal(st.SenderMember, &m)
	if m.Content["displayname"] != "Alice A." {
		t.Fatalf("sender member = %s", st.SenderMember)
	}
	st, _ = f.db.PushRoomState(context.Background(), f.room, "@nobody:x")
	if st.SenderMember != nil {
		t.Fatalf("member of a stranger: %s", st.SenderMember)
	}
}
