package storage

import (
	"context"
	"errors"
	"slices"
	"testing"
)

func TestAccountData(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	var p1, p2, p3 int64
	mustWrite(t, db, func(tx *Tx) error {
		var err error
		if p1, err = tx.PutAccountData(ctx, "@a:x", "", "m.direct", []byte(`{"a":1}`)); err != nil {
			return err
		}
		if p2, err = tx.PutAccountData(ctx, "@a:x", "!r:x", "m.tag", []byte(`{"t":1}`)); err != nil {
			return err
		}
		p3, err = tx.PutAccountData(ctx, "@b:x", "", "m.direct", []byte(`{"b":1}`))
		return err
	})
	if !(p1 < p2 && p2 < p3) {
		t.Fatalf("positions not increasing: %d %d %d", p1, p2, p3)
	}
	if c, err := db.AccountData(ctx, "@a:x", "", "m.direct"); err != nil || string(c) != `{"a":1}` {
		t.Fatalf("global = %s, %v", c, err)
	}
	if _, err := db.AccountData(ctx, "@a:x", "", "m.tag"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("room data leaked into global: %v", err)
	}
	mustWrite(t, db, func(tx *Tx) error {
		_, err := tx.PutAccountData(ctx, "@a:x", "", "m.direct", []byte(`{"a":2}`))
		return err
	})
	changes, err := db.AccountDataChanges(ctx, "@a:x", p1, db.StreamPosition())
	if err != nil || len(changes) != 2 || changes[0].Type != "m.tag" || string(changes[1].Content) != `{"a":2}` {
		t.Fatalf("changes since %d = %+v, %v", p1, changes, err)
	}
}

func TestFilters(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	ids := make([]int64, 3)
	mustWrite(t, db, func(tx *Tx) error {
		var err error
		if ids[0], err = tx.InsertFilter(ctx, "@a:x", []byte(`{"x":1}`)); err != nil {
			return err
		}
		if ids[1], err = tx.InsertFilter(ctx, "@a:x", []byte(`{"x":2}`)); err != nil {
			return err
		}
		ids[2], err = tx.InsertFilter(ctx, "@a:x", []byte(`{"x":1}`))
		return err
	})
	if ids[0] != 0 || ids[1] != 1 || ids[2] != 0 {
		t.Fatalf("filter ids = %v, want [0 1 0] (identical filter reuses its id)", ids)
	}
	if f, err := db.Filter(ctx, "@a:x", 1); err != nil || string(f) != `{"x":2}` {
		t.Fatalf("Filter = %s, %v", f, err)
	}
	if _, err := db.Filter(ctx, "@b:x", 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other user's filter err = %v", err)
	}
}

func TestPushRulesDocument(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	if r, err := db.PushRules(ctx, "@a:x"); err != nil || r != nil {
		t.Fatalf("fresh user rules = %s, %v; want nil", r, err)
	}
	mustWrite(t, db, func(tx *Tx) error { _, err := tx.PutPushRules(ctx, "@a:x", []byte(`{"v":1}`)); return err })
	mustWrite(t, db, func(tx *Tx) error { _, err := tx.PutPushRules(ctx, "@a:x", []byte(`{"v":2}`)); return err })
	if r, err := db.PushRules(ctx, "@a:x"); err != nil || string(r) != `{"v":2}` {
		t.Fatalf("rules = %s, %v", r, err)
	}
}

func TestRegistrationTokens(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	mustWrite(t, db, func(tx *Tx) error {
		if err := tx.InsertRegistrationToken(ctx, RegistrationToken{Token: "once", UsesAllowed: 1, CreatedTS: 1}); err != nil {
			return err
		}
		if err := tx.InsertRegistrationToken(ctx, RegistrationToken{Token: "old", ExpiryTS: 100, CreatedTS: 2}); err != nil {
			return err
		}
		return tx.InsertRegistrationToken(ctx, RegistrationToken{Token: "free", CreatedTS: 3})
	})
	if err := db.Write(ctx, func(tx *Tx) error {
		return tx.InsertRegistrationToken(ctx, RegistrationToken{Token: "once", CreatedTS: 4})
	}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate token err = %v", err)
	}
	use := func(tok string, now int64) error {
		return db.Write(ctx, func(tx *Tx) error { return tx.UseRegistrationToken(ctx, tok, now) })
	}
	if err := use("once", 50); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if err := use("once", 50); !errors.Is(err, ErrTokenUnusable) {
		t.Fatalf("second use of single-use token err = %v", err)
	}
	if err := use("old", 100); !errors.Is(err, ErrTokenUnusable) {
		t.Fatalf("expired token err = %v", err)
	}
	if err := use("nope", 1); !errors.Is(err, ErrTokenUnusable) {
		t.Fatalf("unknown token err = %v", err)
	}
	for i := 0; i < 3; i++ {
		if err := use("free", 1e15); err != nil {
			t.Fatalf("unlimited token use %d: %v", i, err)
		}
	}
	tok, err := db.RegistrationToken(ctx, "once")
	if err != nil || tok.Completed != 1 || tok.Usable(0) {
		t.Fatalf("once = %+v, %v", tok, err)
	}
	all, err := db.RegistrationTokens(ctx)
	if err != nil || len(all) != 3 || all[2].Completed != 3 {
		t.Fatalf("list = %+v, %v", all, err)
	}
	mustWrite(t, db, func(tx *Tx) error { return tx.DeleteRegistrationToken(ctx, "free") })
	if err := db.Write(ctx, func(tx *Tx) error { return tx.DeleteRegistrationToken(ctx, "free") }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete err = %v", err)
	}
}

// Room account data of some rooms as of a position: rooms not asked for
// and entries written after the position are left out.
func TestRoomAccountData(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	var upTo int64
	mustWrite(t, db, func(tx *Tx) error {
		for _, e := range [][3]string{{"!a:x", "m.tag", `{"a":1}`}, {"!b:x", "m.tag", `{"b":1}`}, {"!c:x", "m.tag", `{"c":1}`}, {"", "m.direct", `{}`}} {
			pos, err := tx.PutAccountData(ctx, "@u:x", e[0], e[1], []byte(e[2]))
			if err != nil {
				return err
			}
			upTo = max(upTo, pos)
		}
		_, err := tx.PutAccountData(ctx, "@other:x", "!a:x", "m.tag", []byte(`{"o":1}`))
		return err
	})
	mustWrite(t, db, func(tx *Tx) error {
		_, err := tx.PutAccountData(ctx, "@u:x", "!a:x", "m.fully_read", []byte(`{}`))
		return err
	})
	got, err := db.RoomAccountData(ctx, "@u:x", []string{"!a:x", "!c:x"}, upTo)
	var rooms []string
	for _, a := range got {
		rooms = append(rooms, a.RoomID+" "+a.Type+" "+string(a.Content))
	}
	slices.Sort(rooms)
	if err != nil || !slices.Equal(rooms, []string{`!a:x m.tag {"a":1}`, `!c:x m.tag {"c":1}`}) {
		t.Fatalf("RoomAccountData = %v, %v", rooms, err)
	}
	if got, err := db.RoomAccountData(ctx, "@u:x", nil, upTo); err != nil || len(got) != 0 {
		t.Fatalf("RoomAccountData of no rooms = %v, %v", got, err)
	}
}

// A token's limits are replaced (0 lifts them); unknown tokens are not found.
func TestRegistrationTokenLimits(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	mustWrite(t, db, func(tx *Tx) error {
		return tx.InsertRegistrationToken(ctx, RegistrationToken{Token: "t", UsesAllowed: 1, ExpiryTS: 100, CreatedTS: 1})
	})
	for _, lim := range [][2]int64{{5, 500}, {0, 0}} {
		mustWrite(t, db, func(tx *Tx) error { return tx.SetRegistrationTokenLimits(ctx, "t", lim[0], lim[1]) })
		tok, err := db.RegistrationToken(ctx, "t")
		if err != nil || tok.UsesAllowed != lim[0] || tok.ExpiryTS != lim[1] {
			t.Fatalf("after SetRegistrationTokenLimits(%v): %+v, %v", lim, tok, err)
		}
	}
	if err := db.Write(ctx, func(tx *Tx) error { return tx.SetRegistrationTokenLimits(ctx, "nope", 1, 1) }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("limits of an unknown token: %v", err)
	}
}

// Push rules read inside a write see the write's own change.
func TestTxPushRules(t *testing.T) {
	ctx := context.Background()
	db, _ := openTestDB(t)
	mustWrite(t, db, func(tx *Tx) error {
		if raw, err := tx.PushRules(ctx, "@u:x"); err != nil || raw != nil {
			t.Errorf("push rules before any = %s, %v", raw, err)
		}
		if _, err := tx.PutPushRules(ctx, "@u:x", []byte(`{"r":1}`)); err != nil {
			return err
		}
		if raw, err := tx.PushRules(ctx, "@u:x"); err != nil || string(raw) != `{"r":1}` {
			t.Errorf("push rules in the write = %s, %v", raw, err)
		}
		return nil
	})
}
