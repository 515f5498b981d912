package roomserver

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

const noticesUser = "@notices:a.test"

func newNoticesKit(t *testing.T, cfg NoticesConfig) *localKit {
	k := newLocalKit(t, func(o *Options) {
		o.ServerNoticesUser = noticesUser
		o.ServerNotices = cfg
	})
	if err := k.rs.EnsureNoticesUser(k.ctx); err != nil {
		t.Fatal(err)
	}
	return k
}

func notice(user, body string) Notice {
	return Notice{UserID: user, Type: "m.room.message", Content: mustJSON(map[string]any{"msgtype": "m.server_notice", "body": body})}
}

// The notices user exists without a password and follows the configured
// profile; notices go to local users only, and need the feature on.
func TestNoticesUserAndRecipients(t *testing.T) {
	k := newNoticesKit(t, NoticesConfig{DisplayName: "Server", RoomVersion: "10"})
	acc, err := k.db.Account(k.ctx, noticesUser)
	if err != nil || acc.PasswordHash != "" || acc.DisplayName != "Server" {
		t.Fatalf("notices account %+v, %v", acc, err)
	}
	k.rs.noticesCfg.DisplayName, k.rs.noticesCfg.AvatarURL = "Admin", "mxc://a.test/logo"
	if err := k.rs.EnsureNoticesUser(k.ctx); err != nil {
		t.Fatal(err)
	}
	if acc, _ := k.db.Account(k.ctx, noticesUser); acc.DisplayName != "Admin" || acc.AvatarURL != "mxc://a.test/logo" {
		t.Fatalf("notices account after a config change: %+v", acc)
	}
	var bad *BadRequestError
	for _, to := range []string{"@remote:b.test", noticesUser} {
		if _, err := k.rs.SendServerNotice(k.ctx, notice(to, "x")); !errors.As(err, &bad) {
			t.Fatalf("a notice to %s: %v", to, err)
		}
	}
	off := newLocalKit(t)
	if err := off.rs.EnsureNoticesUser(off.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := off.rs.SendServerNotice(off.ctx, notice(bob, "x")); !errors.Is(err, ErrNoticesDisabled) {
		t.Fatalf("a notice with notices off: %v", err)
	}
}

// The first notice makes the user's notices room (named, tagged, users
// mute) and invites them; the invite cannot be rejected, and after leaving
// the next notice brings them back into the same room.
func TestNoticesRoomLifecycle(t *testing.T) {
	k := newNoticesKit(t, NoticesConfig{DisplayName: "Server", RoomName: "Notices", RoomTopic: "from the admins", RoomVersion: "10"})
	k.account(bob, "Bob")
	first, err := k.rs.SendServerNotice(k.ctx, notice(bob, "one"))
	if err != nil {
		t.Fatal(err)
	}
	room := k.event(first.EventID).RoomID
	if m := k.membership(room, bob); m != "invite" {
		t.Fatalf("bob in the notices room: %q, want invited", m)
	}
	tags, err := k.db.AccountData(k.ctx, bob, room, "m.tag")
	if err != nil || !strings.Contains(string(tags), noticeRoomTag) {
		t.Fatalf("bob's tags for the room: %s, %v", tags, err)
	}
	second, err := k.rs.SendServerNotice(k.ctx, notice(bob, "two"))
	if err != nil || k.event(second.EventID).RoomID != room {
		t.Fatalf("second notice: %+v, %v; want the same room", second, err)
	}
	_, err = k.rs.SetMembership(k.ctx, MembershipRequest{RoomID: room, Sender: bob, Target: bob, Membership: "leave"})
	wantForbidden(t, "rejecting the notices invite", err, "cannot reject", "M_CANNOT_LEAVE_SERVER_NOTICE_ROOM")
	_, err = k.rs.SetMembership(k.ctx, MembershipRequest{RoomID: room, Sender: bob, Target: noticesUser, Membership: "invite"})
	wantForbidden(t, "inviting the notices user", err, "cannot invite this user", "")

	k.member(room, bob, bob, "join")
	if _, err := k.trySend(room, bob, "m.room.message", nil, map[string]any{"body": "reply"}); err == nil {
		t.Fatal("the recipient could write in the notices room")
	}
	k.member(room, bob, bob, "leave")
	third, err := k.rs.SendServerNotice(k.ctx, notice(bob, "three"))
	if err != nil || k.event(third.EventID).RoomID != room || k.membership(room, bob) != "invite" {
		t.Fatalf("a notice after leaving: %+v, %v; want bob re-invited to %s", third, err, room)
	}

	// A notice with a transaction ID is sent once.
	n := notice(bob, "once")
	n.TxnID, n.TxnScope = "t1", "notice"
	a, errA := k.rs.SendServerNotice(k.ctx, n)
	b, errB := k.rs.SendServerNotice(k.ctx, n)
	if errA != nil || errB != nil || a.EventID != b.EventID {
		t.Fatalf("a repeated notice transaction: %s (%v), %s (%v)", a.EventID, errA, b.EventID, errB)
	}
}

// With auto_join the recipient is joined at once; a configuration change
// (room name, topic, avatar, the notices user's profile) reaches the room
// with the next notice.
func TestNoticesAutoJoinAndRefresh(t *testing.T) {
	k := newNoticesKit(t, NoticesConfig{DisplayName: "Server", RoomName: "Notices", AutoJoin: true, RoomVersion: "10"})
	k.account(bob, "Bob")
	first, err := k.rs.SendServerNotice(k.ctx, notice(bob, "one"))
	if err != nil {
		t.Fatal(err)
	}
	room := k.event(first.EventID).RoomID
	if m := k.membership(room, bob); m != "join" {
		t.Fatalf("bob with auto_join: %q", m)
	}
	k.rs.noticesCfg = NoticesConfig{DisplayName: "Admins", RoomName: "Announcements", RoomTopic: "news",
		RoomAvatarURL: "mxc://a.test/room", AutoJoin: true, RoomVersion: "10"}
	if _, err := k.rs.SendServerNotice(k.ctx, notice(bob, "two")); err != nil {
		t.Fatal(err)
	}
	current := func(typ, key string) map[string]any {
		t.Helper()
		evs, err := k.db.CurrentStateEvents(k.ctx, k.roomNID(room), typ)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if *e.StateKey == key {
				var ev struct {
					Content map[string]any `json:"content"`
				}
				json.Unmarshal(e.JSON, &ev)
				return ev.Content
			}
		}
		t.Fatalf("no %s %q in the room", typ, key)
		return nil
	}
	if current("m.room.name", "")["name"] != "Announcements" || current("m.room.topic", "")["topic"] != "news" ||
		current("m.room.avatar", "")["url"] != "mxc://a.test/room" || current("m.room.member", noticesUser)["displayname"] != "Admins" {
		t.Fatal("the notices room did not follow the configuration")
	}
	// Nothing changed: the next notice sends no state.
	pos := k.db.StreamPosition()
	third, err := k.rs.SendServerNotice(k.ctx, notice(bob, "three"))
	if err != nil || third.StreamPos != pos+1 {
		t.Fatalf("a notice with nothing to refresh took positions %d..%d", pos, third.StreamPos)
	}
}
