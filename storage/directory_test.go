package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
)

// dirFixture writes rooms and current state straight through the storage API.
type dirFixture struct {
	t   *testing.T
	db  *DB
	seq int
}

func (f *dirFixture) room(id string, published bool) int64 {
	f.t.Helper()
	var nid int64
	err := f.db.Write(context.Background(), func(tx *Tx) error {
		var err error
		if nid, err = tx.InsertRoom(context.Background(), id, "11", 1); err != nil {
			return err
		}
		return tx.SetRoomPublished(context.Background(), nid, published)
	})
	if err != nil {
		f.t.Fatalf("inserting room %s: %v", id, err)
	}
	return nid
}

// state stores a state event and makes it the current value of its key.
func (f *dirFixture) state(roomNID int64, typ, key string, content any) {
	f.t.Helper()
	f.seq++
	raw, _ := json.Marshal(map[string]any{"type": typ, "state_key": key, "content": content})
	membership := ""
	if typ == "m.room.member" {
		membership, _ = content.(map[string]any)["membership"].(string)
	}
	ctx := context.Background()
	err := f.db.Write(ctx, func(tx *Tx) error {
		k := key
		nid, pos, err := tx.InsertEvent(ctx, NewEvent{RoomNID: roomNID, EventID: fmt.Sprintf("$ev%d", f.seq), Type: typ,
			StateKey: &k, Sender: "@a:hs", JSON: raw})
		if err != nil {
			return err
		}
		return tx.SetCurrentState(ctx, roomNID, StateKey{Type: typ, StateKey: key}, nid, membership, pos)
	})
	if err != nil {
		f.t.Fatalf("storing %s: %v", typ, err)
	}
}

func TestDirectoryPublishedRooms(t *testing.T) {
	db, _ := openTestDB(t)
	f := &dirFixture{t: t, db: db}
	join := map[string]any{"membership": "join"}

	big := f.room("!big:hs", true)
	f.state(big, "m.room.create", "", map[string]any{"room_version": "11", "type": "m.space"})
	f.state(big, "m.room.name", "", map[string]any{"name": "Old name"})
	f.state(big, "m.room.name", "", map[string]any{"name": "Big room"}) // replaces the first
	f.state(big, "m.room.topic", "", map[string]any{"topic": "All the things"})
	f.state(big, "m.room.avatar", "", map[string]any{"url": "mxc://hs/av"})
	f.state(big, "m.room.canonical_alias", "", map[string]any{"alias": "#big:hs", "alt_aliases": []string{"#b:hs"}})
	f.state(big, "m.room.join_rules", "", map[string]any{"join_rule": "public"})
	f.state(big, "m.room.history_visibility", "", map[string]any{"history_visibility": "world_readable"})
	f.state(big, "m.room.guest_access", "", map[string]any{"guest_access": "can_join"})
	for _, u := range []string{"@a:hs", "@b:hs", "@c:hs"} {
		f.state(big, "m.room.member", u, join)
	}
	f.state(big, "m.room.member", "@inv:hs", map[string]any{"membership": "invite"})
	f.state(big, "m.room.member", "@gone:hs", map[string]any{"membership": "leave"})

	// Two rooms with equal counts sort by room ID; a non-string name is ignored.
	z := f.room("!zz:hs", true)
	f.state(z, "m.room.create", "", map[string]any{"room_version": "11"})
	f.state(z, "m.room.name", "", map[string]any{"name": 5})
	f.state(z, "m.room.member", "@a:hs", join)
	y := f.room("!yy:hs", true)
	f.state(y, "m.room.member", "@a:hs", join)

	hidden := f.room("!hidden:hs", false)
	f.state(hidden, "m.room.name", "", map[string]any{"name": "Secret"})
	f.state(hidden, "m.room.member", "@a:hs", join)

	got, err := db.PublishedRooms(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []DirectoryRoom{
		{RoomID: "!big:hs", JoinedMembers: 3, Name: "Big room", Topic: "All the things", AvatarURL: "mxc://hs/av",
			CanonicalAlias: "#big:hs", JoinRule: "public", HistoryVisibility: "world_readable", GuestAccess: "can_join", RoomType: "m.space"},
		{RoomID: "!yy:hs", JoinedMembers: 1},
		{RoomID: "!zz:hs", JoinedMembers: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("PublishedRooms:\n got  %+v\n want %+v", got, want)
	}

	// Unpublishing removes a room.
	if err := db.Write(context.Background(), func(tx *Tx) error { return tx.SetRoomPublished(context.Background(), big, false) }); err != nil {
		t.Fatal(err)
	}
	got, err = db.PublishedRooms(context.Background())
	if err != nil || len(got) != 2 || got[0].RoomID != "!yy:hs" {
		t.Fatalf("after unpublishing: %+v, %v", got, err)
	}
}

func TestDirectoryJoinedMemberEvents(t *testing.T) {
	db, _ := openTestDB(t)
	f := &dirFixture{t: t, db: db}
	r1, r2, r3 := f.room("!one:hs", false), f.room("!two:hs", false), f.room("!three:hs", false)
	f.state(r1, "m.room.member", "@me:hs", map[string]any{"membership": "join", "displayname": "Old"})
	f.state(r1, "m.room.member", "@me:hs", map[string]any{"membership": "join", "displayname": "New"})
	f.state(r2, "m.room.member", "@me:hs", map[string]any{"membership": "leave"})
	f.state(r3, "m.room.member", "@me:hs", map[string]any{"membership": "join"})
	f.state(r2, "m.room.member", "@other:hs", map[string]any{"membership": "join"})

	evs, err := db.JoinedMemberEvents(context.Background(), "@me:hs")
	if err != nil {
		t.Fatal(err)
	}
	var rooms []string
	for _, e := range evs {
		rooms = append(rooms, e.RoomID)
		if *e.StateKey != "@me:hs" || e.Type != "m.room.member" {
			t.Fatalf("unexpected event %+v", e)
		}
	}
	if !reflect.DeepEqual(rooms, []string{"!one:hs", "!three:hs"}) {
		t.Fatalf("rooms = %v", rooms)
	}
	var c struct {
		Content map[string]any `json:"content"`
	}
	json.Unmarshal(evs[0].JSON, &c)
	if c.Content["displayname"] != "New" {
		t.Fatalf("first room's member event is not the current one: %s", evs[0].JSON)
	}
}
