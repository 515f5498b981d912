package fedinbound

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"testing"
)

type messagesPage struct {
	Chunk []syncEvent `json:"chunk"`
	End   string      `json:"end"`
}

func (u *user) messages(t testing.TB, roomID, from string, limit int) messagesPage {
	t.Helper()
	path := fmt.Sprintf("/rooms/%s/messages?dir=b&limit=%d", url.PathEscape(roomID), limit)
	if from != "" {
		path += "&from=" + url.QueryEscape(from)
	}
	var page messagesPage
	u.mustDo(t, "GET", path, nil, &page)
	return page
}

// TestMessagesBackfillsFromOtherServers: hs2 joined late (it holds the
// state and bob's join, not the history before); bob paging back past the
// join has hs2 backfill from hs1, and pages on through alice's history in
// order, down to the room's creation. The backfilled events never reach
// /sync. When no other server answers, the page ends where hs2's history
// does.
func TestMessagesBackfillsFromOtherServers(t *testing.T) {
	s := newPair(t)
	s.roomID = s.alice.createRoom(t, map[string]any{"preset": "public_chat", "room_version": "11"})
	var history []string
	for i := 1; i <= 12; i++ {
		history = append(history, s.alice.send(t, s.roomID, fmt.Sprintf("history %d", i)))
	}
	since := s.bob.since(t)
	s.bobJoin = joinLateFromHS2(t, s.hs1, s.hs2, s.roomID, s.bob)
	if statusOn(t, s.hs2, history[0]) != -1 {
		t.Fatal("hs2 holds history before the join")
	}

	var seen []string
	page := s.bob.messages(t, s.roomID, "", 5)
	seen = append(seen, ids(page.Chunk)...)
	for page.End != "" && len(seen) < 100 {
		page = s.bob.messages(t, s.roomID, page.End, 5)
		seen = append(seen, ids(page.Chunk)...)
	}
	want := []string{s.bobJoin.EventID()}
	for i := len(history) - 1; i >= 0; i-- {
		want = append(want, history[i])
	}
	if len(seen) < len(want) || !slices.Equal(seen[:len(want)], want) {
		t.Fatalf("bob paged %v\nwant it to start %v", seen, want)
	}
	create := stateID(t, s.hs1, s.roomID, "m.room.create", "")
	if seen[len(seen)-1] != create {
		t.Fatalf("paging ended at %s, not the room's creation (%s)", seen[len(seen)-1], create)
	}
	for _, id := range history {
		if e, err := s.hs2.DB.EventByID(context.Background(), id); err != nil || e.StreamPos >= 0 {
			t.Fatalf("backfilled %s: %+v, %v", id, e, err)
		}
	}
	// /sync delivers bob's join and nothing of the backfilled history.
	for _, e := range s.bob.syncUntil(t, since, s.roomID, s.bobJoin.EventID()) {
		if slices.Contains(history, e.EventID) {
			t.Fatalf("backfilled %s reached /sync", e.EventID)
		}
	}

	// A second late room, whose only other server is gone: the page stops
	// at the join, at once and without an error, and again after that.
	other := s.alice.createRoom(t, map[string]any{"preset": "public_chat", "room_version": "11"})
	s.alice.send(t, other, "unreachable history")
	join := joinLateFromHS2(t, s.hs1, s.hs2, other, s.bob)
	s.hs1.Stop()
	for i := 0; i < 2; i++ {
		page := s.bob.messages(t, other, "", 10)
		if got := ids(page.Chunk); !slices.Equal(got, []string{join.EventID()}) {
			t.Fatalf("page with hs1 gone: %v", got)
		}
	}
}

// TestMessagesBackfillsGapAfterRejoin: bob left hs1's room and joined it
// again; the messages sent while hs2 was out of the room are a gap in the
// middle of hs2's history, which bob's backwards pages cross: hs2 backfills
// them from hs1 on the way (as Synapse backfills from the backward
// extremities near a page), and bob reads them in order.
func TestMessagesBackfillsGapAfterRejoin(t *testing.T) {
	s := newPairSending(t)
	s.roomID = s.alice.createRoom(t, map[string]any{"preset": "public_chat", "room_version": "11"})
	join := "/join/" + url.PathEscape(s.roomID) + "?server_name=hs1"
	s.bob.mustDo(t, "POST", join, map[string]any{}, nil)
	aliceSince := s.alice.since(t)
	s.bob.mustDo(t, "POST", "/rooms/"+url.PathEscape(s.roomID)+"/leave", map[string]any{}, nil)
	s.alice.syncUntil(t, aliceSince, s.roomID, stateID(t, s.hs2, s.roomID, "m.room.member", s.bob.id))

	var missed []string
	for i := 1; i <= 15; i++ {
		missed = append(missed, s.alice.send(t, s.roomID, fmt.Sprintf("while bob was away %d", i)))
	}
	s.bob.mustDo(t, "POST", join, map[string]any{}, nil)
	if statusOn(t, s.hs2, missed[0]) != -1 {
		t.Fatal("hs2 holds what was sent while it was out of the room")
	}
	rejoin := stateID(t, s.hs2, s.roomID, "m.room.member", s.bob.id)

	var seen []string
	page := s.bob.messages(t, s.roomID, "", 5)
	seen = append(seen, ids(page.Chunk)...)
	for page.End != "" && len(seen) < 100 {
		page = s.bob.messages(t, s.roomID, page.End, 5)
		seen = append(seen, ids(page.Chunk)...)
	}
	want := []string{rejoin}
	for i := len(missed) - 1; i >= 0; i-- {
		want = append(want, missed[i])
	}
	if len(seen) < len(want) || !slices.Equal(seen[:len(want)], want) {
		t.Fatalf("bob paged %v\nwant it to start %v", seen, want)
	}
}

// TestMessagesFromSyncTokenLeavesOutLaterForks: a fork event that reached
// hs2's stream after bob's own messages but sits beside the first of them
// in the DAG came down /sync already; paging back from that sync's
// prev_batch shows what came before the sync (bob's messages), not the
// fork event again in their place, as Synapse bounds such a page by the
// token's stream position.
func TestMessagesFromSyncTokenLeavesOutLaterForks(t *testing.T) {
	s := newShared(t, nil)
	b1 := s.bob.send(t, s.roomID, "b1")
	b2 := s.bob.send(t, s.roomID, "b2")
	b3 := s.bob.send(t, s.roomID, "b3")
	// alice's message builds on bob's join: it forks beside b1.
	a1 := s.alice.send(t, s.roomID, "a1")
	_, ans := sendTxn(t, s.hs1, s.hs2.Name, "fork", s.fromHS1(t, a1), nil)
	ans.ok(t, a1)
	b4 := s.bob.send(t, s.roomID, "b4")

	var out struct {
		Rooms struct {
			Join map[string]struct {
				Timeline struct {
					Events    []syncEvent `json:"events"`
					PrevBatch string      `json:"prev_batch"`
				} `json:"timeline"`
			} `json:"join"`
		} `json:"rooms"`
	}
	filter := url.QueryEscape(`{"room":{"timeline":{"limit":2}}}`)
	s.bob.mustDo(t, "GET", "/sync?timeout=0&filter="+filter, nil, &out)
	tl := out.Rooms.Join[s.roomID].Timeline
	if got := ids(tl.Events); !slices.Equal(got, []string{a1, b4}) {
		t.Fatalf("sync timeline %v, want [a1 b4] (%s %s)", got, a1, b4)
	}
	page := s.bob.messages(t, s.roomID, tl.PrevBatch, 3)
	if got := ids(page.Chunk); !slices.Equal(got, []string{b3, b2, b1}) {
		t.Fatalf("page back from prev_batch: %v, want [b3 b2 b1] (a1 = %s)", got, a1)
	}
}
