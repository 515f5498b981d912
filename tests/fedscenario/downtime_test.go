package fedscenario

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"testing"

	"github.com/matrix-org/gomatrixserverlib/spec"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"matrixhs/tests/fedtest"
)

// threeInARoom starts hs1..hs3 with alice, bob and carol, and a public
// room of alice's (with the alias #room:hs1) that bob and carol joined by
// alias; it waits until all three servers hold both joins.
func threeInARoom(t *testing.T) (hs []*fedtest.Server, users []*fedtest.MautrixUser, roomID string) {
	t.Helper()
	n := fedtest.NewNetwork(t)
	hs = n.StartN(3)
	alice, bob, carol := hs[0].NewUser(t, "alice"), hs[1].NewUser(t, "bob"), hs[2].NewUser(t, "carol")
	created, err := alice.CreateRoom(alice.Ctx(), &mautrix.ReqCreateRoom{
		Preset: "public_chat", RoomAliasName: "room", Name: "Before",
		PowerLevelOverride: &event.PowerLevelsEventContent{Users: map[id.UserID]int{id.UserID(alice.ID): 100, id.UserID(bob.ID): 100}},
	})
	if err != nil {
		t.Fatal(err)
	}
	roomID = string(created.RoomID)
	for _, u := range []*fedtest.MautrixUser{bob, carol} {
		if _, err := u.JoinRoom(u.Ctx(), "#room:hs1", nil); err != nil {
			t.Fatalf("%s joining #room:hs1: %v", u.ID, err)
		}
	}
	users = []*fedtest.MautrixUser{alice, bob, carol}
	group{newWatcher(alice), newWatcher(bob), newWatcher(carol)}.waitFor(t, roomID,
		stateEventID(t, bob, roomID, spec.MRoomMember, bob.ID), stateEventID(t, carol, roomID, spec.MRoomMember, carol.ID))
	return hs, users, roomID
}

// heardFrom has a user of hs make a federation request to each server of
// others (resolving one of its aliases through /query/directory): a
// server that was down makes itself known as it would by any request, so
// the others retry it at once instead of after their backoff.
func heardFrom(t *testing.T, u *fedtest.MautrixUser, aliases ...string) {
	t.Helper()
	for _, alias := range aliases {
		if _, err := u.ResolveAlias(u.Ctx(), id.RoomAlias(alias)); err != nil {
			t.Fatalf("%s resolving %s: %v", u.ID, alias, err)
		}
	}
}

// TestDowntimeCatchUp: hs3 is down while hs1 and hs2 exchange 200
// messages, rename the room, change its power levels and let a new member
// in. When hs3 is back (and has been heard from), the others' queues
// deliver what they hold (the newest events: the destination missed too
// many), hs3 fills the gap before them with /get_missing_events and the
// state before them, and its users' /messages backfills the rest: hs3
// ends with the same current state, the same newest timeline in /sync
// and the same history through /messages, back past the downtime and
// without a gap, as hs1 and hs2.
func TestDowntimeCatchUp(t *testing.T) {
	hs, users, roomID := threeInARoom(t)
	alice, bob, carol := users[0], users[1], users[2]
	bob.Must("PUT", "/directory/room/"+url.PathEscape("#bobs:hs2"), map[string]any{"room_id": roomID})
	all := group{newWatcher(alice), newWatcher(bob), newWatcher(carol)}
	var lastBefore string
	for _, u := range users {
		lastBefore = send(t, u, roomID, "before the downtime from "+string(u.HS.Name))
		all.waitFor(t, roomID, lastBefore)
	}

	hs[2].Stop()
	up := group{all[0], all[1]}
	dave := hs[1].NewUser(t, "dave")
	var during []string
	var rename, pl, join string
	for round := 0; round < 10; round++ {
		for _, u := range []*fedtest.MautrixUser{alice, bob} {
			for i := 0; i < 10; i++ {
				during = append(during, send(t, u, roomID, fmt.Sprintf("round %d, %s's message %d", round, u.HS.Name, i)))
			}
			up.waitFor(t, roomID, during[len(during)-1])
		}
		switch round {
		case 3:
			rename = setState(t, bob, roomID, spec.MRoomName, "", map[string]any{"name": "During"})
			during = append(during, rename)
		case 5:
			content := powerLevels(t, alice, roomID)
			content["users"].(map[string]any)[dave.ID] = 50
			pl = setState(t, alice, roomID, spec.MRoomPowerLevels, "", content)
			during = append(during, pl)
		case 7:
			if _, err := dave.JoinRoom(dave.Ctx(), "#room:hs1", nil); err != nil {
				t.Fatal(err)
			}
			join = stateEventID(t, bob, roomID, spec.MRoomMember, dave.ID)
			during = append(during, join)
		default:
			continue
		}
		up.waitFor(t, roomID, during[len(during)-1])
	}

	hs[2].Restart()
	carol.Follow()
	heardFrom(t, carol, "#room:hs1", "#bobs:hs2")
	newWatcher(carol).waitFor(t, roomID, during[len(during)-1])

	// carol's client syncs on from before the downtime: the newest events
	// come with a gap (limited), and it pages back through the gap to
	// where it was, seeing everything it missed in order.
	res := carol.Sync(all[2].since, `{"room":{"timeline":{"limit":10}}}`, 0)
	timeline := fedtest.Get(res, "rooms", "join", roomID, "timeline")
	prevBatch, _ := fedtest.Get(timeline, "prev_batch").(string)
	if fedtest.Get(timeline, "limited") != true || prevBatch == "" {
		t.Fatalf("carol's sync after the downtime: %v", timeline)
	}
	missed := messagesBackTo(t, carol, roomID, prevBatch, lastBefore)
	slices.Reverse(missed)
	missed = append(missed, idsOf(evs(t, fedtest.List(fedtest.Get(timeline, "events"))))...)
	if !slices.Equal(missed, during) {
		t.Fatalf("carol's client saw %d events after the downtime; want the %d sent:\n%v\n%v", len(missed), len(during), missed, during)
	}

	state := agreeOnState(t, roomID, users)
	if state[spec.MRoomMember+"|"+dave.ID] != join || state[spec.MRoomName+"|"] != rename || state[spec.MRoomPowerLevels+"|"] != pl {
		t.Fatalf("state after the downtime: %v", state)
	}
	history := agreeOnRoom(t, roomID, 10, users)
	ids := idsOf(history)
	if len(ids) < len(during) || !slices.Equal(ids[len(ids)-len(during):], during) {
		t.Fatalf("history has %d events; want it to end with the %d sent during the downtime", len(ids), len(during))
	}
}

// messagesBackTo pages /messages backwards from a token until the event
// stop, and returns the IDs of the events before it (newest first).
func messagesBackTo(t *testing.T, u *fedtest.MautrixUser, roomID, from, stop string) []string {
	t.Helper()
	var out []string
	for page := 0; page < 100; page++ {
		res := u.Must("GET", fedtest.RoomPath(roomID, "/messages?"+url.Values{"dir": {"b"}, "limit": {"30"}, "from": {from}}.Encode()), nil)
		for _, e := range evs(t, fedtest.List(res["chunk"])) {
			if e.ID == stop {
				return out
			}
			out = append(out, e.ID)
		}
		if from, _ = res["end"].(string); from == "" {
			break
		}
	}
	t.Fatalf("%s: /messages never reached %s (saw %d events)", u.HS.Name, stop, len(out))
	return nil
}

// TestQueueSurvivesRestart: while hs3 is down, alice (hs1) sends messages
// and changes the topic, and hs1 restarts before hs3 is back: what hs1
// queued for hs3 is in its database, and once hs3 is back (and heard
// from) it receives all of it, in order, without anyone sending anything
// new.
func TestQueueSurvivesRestart(t *testing.T) {
	hs, users, roomID := threeInARoom(t)
	alice, bob, carol := users[0], users[1], users[2]
	hs[2].Stop()
	var sent []string
	for i := range 12 {
		sent = append(sent, send(t, alice, roomID, fmt.Sprintf("while hs3 is down %d", i)))
		if i == 5 {
			sent = append(sent, setState(t, alice, roomID, spec.MRoomTopic, "", map[string]any{"topic": "while hs3 is down"}))
		}
	}
	up := group{newWatcher(alice), newWatcher(bob)}
	up.waitFor(t, roomID, sent[len(sent)-1])

	hs[0].Restart()
	alice.Follow()
	if pdus, _, err := hs[0].DB.FederationQueueCounts(context.Background(), "hs3"); err != nil || pdus == 0 {
		t.Fatalf("hs1's queue for hs3 after its restart: %d events, %v", pdus, err)
	}
	hs[2].Restart()
	carol.Follow()
	heardFrom(t, carol, "#room:hs1")
	newWatcher(carol).waitFor(t, roomID, sent...)
	agreeOnState(t, roomID, users)
	tail := idsOf(syncTimeline(t, carol, roomID, len(sent)))
	if !slices.Equal(tail, sent) {
		t.Fatalf("hs3's timeline ends with %v\nwant %v", tail, sent)
	}
	// hs1 records hs3's answer just after hs3 took the events.
	waitUntil(t, "hs1's queue for hs3 to empty", func() bool {
		pdus, edus, err := hs[0].DB.FederationQueueCounts(context.Background(), "hs3")
		return err == nil && pdus+edus == 0
	})
}
