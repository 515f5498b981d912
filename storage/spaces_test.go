package storage

import (
	"context"
	"errors"
	"testing"
)

func TestRoomPreview(t *testing.T) {
	db, _ := openTestDB(t)
	f := &dirFixture{t: t, db: db}
	ctx := context.Background()
	nid := f.room("!space:hs", false)
	f.state(nid, "m.room.create", "", map[string]any{"type": "m.space"})
	f.state(nid, "m.room.name", "", map[string]any{"name": "The Space"})
	f.state(nid, "m.room.topic", "", map[string]any{"topic": 42}) // not a string: absent
	f.state(nid, "m.room.join_rules", "", map[string]any{"join_rule": "restricted",
		"allow": []any{map[string]any{"type": "m.room_membership", "room_id": "!parent:hs"}}})
	f.state(nid, "m.room.encryption", "", map[string]any{"algorithm": "m.megolm.v1.aes-sha2"})
	f.state(nid, "m.room.history_visibility", "", map[string]any{"history_visibility": "world_readable"})
	f.state(nid, "m.room.member", "@a:hs", map[string]any{"membership": "join"})
	f.state(nid, "m.room.member", "@b:hs", map[string]any{"membership": "invite"})

	p, err := db.RoomPreview(ctx, "!space:hs")
	if err != nil {
		t.Fatal(err)
	}
	if p.NID != nid || p.RoomID != "!space:hs" || p.Version != "11" || p.JoinedMembers != 1 || p.Name != "The Space" ||
		p.Topic != "" || p.RoomType != "m.space" || p.JoinRule != "restricted" || p.Encryption != "m.megolm.v1.aes-sha2" ||
		p.HistoryVisibility != "world_readable" {
		t.Fatalf("preview = %+v", p)
	}
	if string(p.Allow) != `[{"room_id":"!parent:hs","type":"m.room_membership"}]` {
		t.Fatalf("allow = %s", p.Allow)
	}

	plain := f.room("!plain:hs", false)
	p, err = db.RoomPreview(ctx, "!plain:hs")
	if err != nil || p.NID != plain || p.JoinRule != "" || p.Allow != nil || p.Encryption != "" || p.RoomType != "" {
		t.Fatalf("plain preview = %+v, %v", p, err)
	}
	if _, err := db.RoomPreview(ctx, "!nope:hs"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown room: err = %v, want ErrNotFound", err)
	}
}

func TestTxAccountData(t *testing.T) {
	db, _ := openTestDB(t)
	ctx := context.Background()
	err := db.Write(ctx, func(tx *Tx) error {
		if _, err := tx.AccountData(ctx, "@a:hs", "!r:hs", "m.tag"); !errors.Is(err, ErrNotFound) {
			t.Errorf("absent: err = %v", err)
		}
		if _, err := tx.PutAccountData(ctx, "@a:hs", "!r:hs", "m.tag", []byte(`{"tags":{}}`)); err != nil {
			return err
		}
		got, err := tx.AccountData(ctx, "@a:hs", "!r:hs", "m.tag")
		if err != nil || string(got) != `{"tags":{}}` {
			t.Errorf("read back in the write: %s, %v", got, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
