package storage

import (
	"context"
	"reflect"
	"testing"
)

// Local device changes are noted per device for the publisher, at the
// position of the device list change; the latest position is the user's
// stream ID.
func TestDeviceChangesOutbound(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	e2eeUsers(t, db, map[string][]string{"@a:x": {"D1", "D2"}})
	changes, err := db.DeviceChangesOutbound(ctx, 0, db.StreamPosition())
	if err != nil || len(changes) != 2 || changes[0].DeviceID != "D1" || changes[1].DeviceID != "D2" {
		t.Fatalf("changes after two new devices: %+v %v", changes, err)
	}
	var pos int64
	mustWrite(t, db, func(tx *Tx) (err error) {
		pos, err = tx.MarkDevicesChanged(ctx, "@a:x", "D1", "")
		return err
	})
	if latest, _ := db.LatestDeviceListChange(ctx, "@a:x"); latest != pos {
		t.Fatalf("latest change %d, want %d", latest, pos)
	}
	changes, _ = db.DeviceChangesOutbound(ctx, changes[1].StreamPos, pos)
	if len(changes) != 2 || changes[0].DeviceID != "" || changes[1].DeviceID != "D1" || changes[0].StreamPos != pos {
		t.Fatalf("changes after a key change: %+v", changes)
	}
	mustWrite(t, db, func(tx *Tx) error { return tx.DeleteDeviceChangesOutbound(ctx, pos) })
	if changes, _ = db.DeviceChangesOutbound(ctx, 0, pos); len(changes) != 0 {
		t.Fatalf("changes after publishing: %+v", changes)
	}
}

// A remote user's cached device list: replaced whole, updated per device,
// marked stale, forgotten with the user's cross-signing keys.
func TestRemoteDeviceListCache(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	const bob = "@bob:remote"
	if st, err := db.RemoteDeviceListState(ctx, bob); err != nil || st.Cached {
		t.Fatalf("before anything: %+v %v", st, err)
	}
	mustWrite(t, db, func(tx *Tx) error {
		if err := tx.ReplaceRemoteDevices(ctx, bob, []RemoteDevice{{DeviceID: "B1", DisplayName: "one", KeyJSON: []byte(`{"k":1}`)},
			{DeviceID: "B2"}}, 7); err != nil {
			return err
		}
		return tx.SetCrossSigningKey(ctx, bob, KeyTypeMaster, []byte(`{"m":1}`))
	})
	devs, err := db.RemoteDevices(ctx, bob, nil)
	want := []RemoteDevice{{DeviceID: "B1", DisplayName: "one", KeyJSON: []byte(`{"k":1}`)}, {DeviceID: "B2"}}
	if err != nil || !reflect.DeepEqual(devs, want) {
		t.Fatalf("devices = %+v %v", devs, err)
	}
	if st, _ := db.RemoteDeviceListState(ctx, bob); !st.Cached || st.Stale || st.StreamID != 7 {
		t.Fatalf("state = %+v", st)
	}
	mustWrite(t, db, func(tx *Tx) error {
		if err := tx.DeleteRemoteDevice(ctx, bob, "B1"); err != nil {
			return err
		}
		if err := tx.SetRemoteDevice(ctx, bob, RemoteDevice{DeviceID: "B2", KeyJSON: []byte(`{"k":2}`)}); err != nil {
			return err
		}
		return tx.SetRemoteDeviceListStreamID(ctx, bob, 9)
	})
	if devs, _ = db.RemoteDevices(ctx, bob, []string{"B1", "B2"}); len(devs) != 1 || string(devs[0].KeyJSON) != `{"k":2}` {
		t.Fatalf("devices after updates = %+v", devs)
	}
	mustWrite(t, db, func(tx *Tx) error { return tx.MarkRemoteDeviceListStale(ctx, bob) })
	if stale, _ := db.StaleRemoteDeviceLists(ctx, 10); !reflect.DeepEqual(stale, []string{bob}) {
		t.Fatalf("stale lists = %v", stale)
	}
	if st, _ := db.RemoteDeviceListState(ctx, bob); !st.Stale || st.StreamID != 9 {
		t.Fatalf("state when stale = %+v", st)
	}
	mustWrite(t, db, func(tx *Tx) error { return tx.ForgetRemoteDeviceList(ctx, bob) })
	st, _ := db.RemoteDeviceListState(ctx, bob)
	devs, _ = db.RemoteDevices(ctx, bob, nil)
	cs, _ := db.CrossSigningKeys(ctx, bob)
	if st.Cached || len(devs) != 0 || len(cs) != 0 {
		t.Fatalf("after forgetting: %+v %+v %v", st, devs, cs)
	}
}

// A remote to-device message is delivered once per origin and message ID.
func TestQueueRemoteToDevice(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	e2eeUsers(t, db, map[string][]string{"@a:x": {"D1", "D2"}})
	msgs := []ToDeviceMessage{{UserID: "@a:x", DeviceID: "*", Content: []byte(`{"n":1}`)}}
	queue := func(origin, id string) (n int, dup bool) {
		mustWrite(t, db, func(tx *Tx) (err error) {
			n, dup, err = tx.QueueRemoteToDevice(ctx, origin, id, "@s:"+origin, "m.test", msgs, 1000)
			return err
		})
		return n, dup
	}
	if n, dup := queue("remote", "m1"); n != 2 || dup {
		t.Fatalf("first: %d %v", n, dup)
	}
	if n, dup := queue("remote", "m1"); n != 0 || !dup {
		t.Fatalf("repeat: %d %v", n, dup)
	}
	if n, dup := queue("other", "m1"); n != 2 || dup {
		t.Fatalf("another origin's m1: %d %v", n, dup)
	}
	got, _ := db.ToDeviceMessages(ctx, "@a:x", "D1", 0, db.StreamPosition())
	if len(got) != 2 || got[0].Sender != "@s:remote" || got[1].Sender != "@s:other" {
		t.Fatalf("D1's messages = %+v", got)
	}
}

// Who shares rooms with whom, and the member events the publisher reads.
func TestRoomSharingQueries(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	k := newRoomKit(t, db, "!r:hs1")
	k.create("@a:hs1", "public", "shared")
	from := db.StreamPosition()
	k.member("@b:hs2", "join")
	k.member("@c:hs3", "join")
	if got, _ := db.ServersSharingRooms(ctx, "@a:hs1"); !reflect.DeepEqual(got, []string{"hs1", "hs2", "hs3"}) {
		t.Fatalf("servers sharing a room with a = %v", got)
	}
	if got, _ := db.ServersJoinedToRoomOnly(ctx, "@b:hs2", k.nid); !reflect.DeepEqual(got, []string{"hs1", "hs2", "hs3"}) {
		t.Fatalf("servers new to b = %v", got)
	}
	if ok, _ := db.SharesRoomWithServer(ctx, "@b:hs2", "hs1"); !ok {
		t.Fatal("b does not share a room with hs1")
	}
	mustWrite(t, db, func(tx *Tx) error { return tx.ReplaceRemoteDevices(ctx, "@b:hs2", nil, 1) })
	if got, _ := db.TrackedMembersOfRoom(ctx, k.nid); !reflect.DeepEqual(got, []string{"@b:hs2"}) {
		t.Fatalf("tracked members = %v", got)
	}
	// The roomserver gives a member event its predecessor's content.
	a := "@a:hs1"
	leave := k.event("m.room.member", &a, a, map[string]any{"membership": "leave"})
	leave.UnsignedExtra = []byte(`{"prev_content":{"membership":"join"}}`)
	k.store(EventWrite{Event: leave, Placement: Timeline, Extends: true})
	if ok, _ := db.SharesRoomWithServer(ctx, "@b:hs2", "hs1"); ok {
		t.Fatal("b shares a room with hs1 after a left")
	}
	changes, err := db.MemberChangesAfter(ctx, from, db.StreamPosition(), 10)
	if err != nil || len(changes) != 3 {
		t.Fatalf("member changes = %+v %v", changes, err)
	}
	if c := changes[2]; c.UserID != "@a:hs1" || c.Membership != "leave" || c.PrevMembership != "join" || c.RoomNID != k.nid {
		t.Fatalf("a's leave = %+v", c)
	}
	if c := changes[0]; c.UserID != "@b:hs2" || c.Membership != "join" || c.PrevMembership != "" {
		t.Fatalf("b's join = %+v", c)
	}
	if changes, _ = db.MemberChangesAfter(ctx, from, db.StreamPosition(), 1); len(changes) != 1 {
		t.Fatalf("limit: %+v", changes)
	}
}
