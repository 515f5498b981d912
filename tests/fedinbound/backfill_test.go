package fedinbound

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"testing"

	"matrixhs/tests/fedtest"
)

type messagesPage struct {
	Chunk []fedtest.ClientEvent `json:"chunk"`
	End   string                `json:"end"`
}

func messages(t testing.TB, u *fedtest.User, roomID, from string, limit int) messagesPage {
	t.Helper()
	path := fmt.Sprintf("/rooms/%s/messages?dir=b&limit=%d", url.PathEscape(roomID), limit)
	if from != "" {
		path += "&from=" + url.QueryEscape(from)
	}
	var page messagesPage
	u.MustDo(t, "GET", path, nil, &page)
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
	s.roomID = s.alice.CreateRoom(t, map[string]any{"preset": "public_chat", "room_version": "11"})
	var history []string
	for i := 1; i <= 12; i++ {
		history = append(history, s.alice.Send(t, s.roomID, fmt.Sprintf("history %d", i)))
	}
	since := s.bob.Since(t)
	s.bobJoin = joinLateFromHS2(t, s.hs1, s.hs2, s.roomID, s.bob)
	if s.hs2.Status(history[0]) != -1 {
		t.Fatal("hs2 holds history before the join")
	}

	var seen []string
	page := messages(t, s.bob, s.roomID, "", 5)
	seen = append(seen, fedtest.IDs(page.Chunk)...)
	for page.End != "" && len(seen) < 100 {
		page = messages(t, s.bob, s.roomID, page.End, 5)
		seen = append(seen, fedtest.IDs(page.Chunk)...)
	}
	want := []string{s.bobJoin.EventID()}
	for i := len(history) - 1; i >= 0; i-- {
		want = append(want, history[i])
	}
	if len(seen) < len(want) || !slices.Equal(seen[:len(want)], want) {
		t.Fatalf("bob paged %v\nwant it to start %v", seen, want)
	}
	create := s.hs1.StateID(t, s.roomID, "m.room.create", "")
	if seen[len(seen)-1] != create {
		t.Fatalf("paging ended at %s, not the room's creation (%s)", seen[len(seen)-1], create)
	}
	for _, id := range history {
		if e, err := s.hs2.DB.EventByID(context.Background(), id); err != nil || e.StreamPos >= 0 {
			t.Fatalf("backfilled %s: %+v, %v", id, e, err)
		}
	}
	// /sync delivers bob's join and nothing of the backfilled history.
	for _, e := range s.bob.SyncUntil(t, since, s.roomID, s.bobJoin.EventID()) {
		if slices.Contains(history, e.EventID) {
			t.Fatalf("backfilled %s reached /sync", e.EventID)
		}
	}

	// A second late room, whose only other server is gone: the page stops
	// at the join, at once and without an error, and again after that.
	other := s.alice.CreateRoom(t, map[string]any{"preset": "public_chat", "room_version": "11"})
	s.alice.Send(t, other, "unreachable history")
	join := joinLateFromHS2(t, s.hs1, s.hs2, other, s.bob)
	s.hs1.Stop()
	for i := 0; i < 2; i++ {
		page := messages(t, s.bob, other, "", 10)
		if got := fedtest.IDs(page.Chunk); !slices.Equal(got, []string{join.EventID()}) {
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
	s.roomID = s.alice.CreateRoom(t, map[string]any{"preset": "public_chat", "room_version": "11"})
	join := "/join/" + url.PathEscape(s.roomID) + "?server_name=hs1"
	s.bob.MustDo(t, "POST", join, map[string]any{}, nil)
	aliceSince := s.alice.Since(t)
	s.bob.MustDo(t, "POST", "/rooms/"+url.PathEscape(s.roomID)+"/leave", map[string]any{}, nil)
	s.alice.SyncUntil(t, aliceSince, s.roomID, s.hs2.StateID(t, s.roomID, "m.room.member", s.bob.ID))

	var missed []string
	for i := 1; i <= 15; i++ {
		missed = append(missed, s.alice.Send(t, s.roomID, fmt.Sprintf("while bob was away %d", i)))
	}
	s.bob.MustDo(t, "POST", join, map[string]any{}, nil)
	if s.hs2.Status(missed[0]) != -1 {
		t.Fatal("hs2 holds what was sent while it was out of the room")
	}
	rejoin := s.hs2.StateID(t, s.roomID, "m.room.member", s.bob.ID)

	var seen []string
	page := messages(t, s.bob, s.roomID, "", 5)
	seen = append(seen, fedtest.IDs(page.Chunk)...)
	for page.End != "" && len(seen) < 100 {
		page = messages(t, s.bob, s.roomID, page.End, 5)
		seen = append(seen, fedtest.IDs(page.Chunk)...)
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
// in the DAG came down an incremental /sync already (in stream order);
// paging back from that sync's prev_batch shows what came before the sync
// (bob's messages), not the fork event again in their place, as Synapse
// bounds such a page by the token's stream position. (A first sync takes
// its timeline in topological order instead: TestSyncKeepsLateForkStateInState.)
func TestMessagesFromSyncTokenLeavesOutLaterForks(t *testing.T) {
	s := newShared(t, nil)
	since := s.bob.Since(t)
	b1 := s.bob.Send(t, s.roomID, "b1")
	b2 := s.bob.Send(t, s.roomID, "b2")
	b3 := s.bob.Send(t, s.roomID, "b3")
	// alice's message builds on bob's join: it forks beside b1.
	a1 := s.alice.Send(t, s.roomID, "a1")
	_, ans := fedtest.SendTxn(t, s.hs1, s.hs2.Name, "fork", s.fromHS1(t, a1), nil)
	ans.OK(t, a1)
	b4 := s.bob.Send(t, s.roomID, "b4")

	var out struct {
		Rooms struct {
			Join map[string]struct {
				Timeline struct {
					Events    []fedtest.ClientEvent `json:"events"`
					PrevBatch string                `json:"prev_batch"`
				} `json:"timeline"`
			} `json:"join"`
		} `json:"rooms"`
	}
	filter := url.QueryEscape(`{"room":{"timeline":{"limit":2}}}`)
	s.bob.MustDo(t, "GET", "/sync?timeout=0&filter="+filter+"&since="+url.QueryEscape(since), nil, &out)
	tl := out.Rooms.Join[s.roomID].Timeline
	if got := fedtest.IDs(tl.Events); !slices.Equal(got, []string{a1, b4}) {
		t.Fatalf("sync timeline %v, want [a1 b4] (%s %s)", got, a1, b4)
	}
	page := messages(t, s.bob, s.roomID, tl.PrevBatch, 3)
	if got := fedtest.IDs(page.Chunk); !slices.Equal(got, []string{b3, b2, b1}) {
		t.Fatalf("page back from prev_batch: %v, want [b3 b2 b1] (a1 = %s)", got, a1)
	}
}

// TestMessagesBackfillsAGapInTheMiddle: hs2 held the room's whole history,
// then missed 40 messages; the newest reaches it, and it fetches the 20
// before it (/get_missing_events) and the state before those, which
// leaves a gap in the middle of its history. Bob paging back through it
// has hs2 backfill the gap from hs1: he sees every message, in order,
// down to the room's creation.
func TestMessagesBackfillsAGapInTheMiddle(t *testing.T) {
	s := newShared(t, nil)
	var missed []string
	for i := 1; i <= 40; i++ {
		missed = append(missed, s.alice.Send(t, s.roomID, fmt.Sprintf("missed %d", i)))
	}
	newest := missed[len(missed)-1]
	_, ans := fedtest.SendTxn(t, s.hs1, s.hs2.Name, "newest", s.fromHS1(t, newest), nil)
	ans.OK(t, newest)
	if s.hs2.Status(missed[0]) != -1 || s.hs2.Status(missed[len(missed)-2]) == -1 {
		t.Fatal("hs2 should hold the newest messages and not the first")
	}

	var seen []string
	page := messages(t, s.bob, s.roomID, "", 7)
	seen = append(seen, fedtest.IDs(page.Chunk)...)
	for page.End != "" && len(seen) < 200 {
		page = messages(t, s.bob, s.roomID, page.End, 7)
		seen = append(seen, fedtest.IDs(page.Chunk)...)
	}
	var want []string
	for _, e := range timeline(t, s.hs1, s.roomID) {
		want = append(want, e.EventID)
	}
	slices.Reverse(want)
	if !slices.Equal(seen, want) {
		t.Fatalf("bob paged %d events:\n%v\nwant the %d hs1 holds:\n%v", len(seen), seen, len(want), want)
	}
}

// TestMessagesBackfillsGapInHistory: hs2 holds the room's history, then
// misses many messages (as a server that was down, which hs1 sends only
// the newest): the transaction's gap is closed with the newest missing
// events and the state, leaving a hole in the middle of hs2's history.
// Bob paging back runs into the hole, and hs2 backfills it from hs1: he
// pages through every message, in order, down to the room's creation.
func TestMessagesBackfillsGapInHistory(t *testing.T) {
	s := newShared(t, nil)
	var sent []string
	for i := 0; i < 30; i++ {
		sent = append(sent, s.alice.Send(t, s.roomID, fmt.Sprintf("held %d", i)))
	}
	status, ans := fedtest.SendTxn(t, s.hs1, s.hs2.Name, "held", s.fromHS1(t, sent...), nil)
	if status != 200 {
		t.Fatalf("send: %d %s", status, ans.Raw)
	}
	ans.OK(t, sent...)
	for i := 0; i < 60; i++ {
		sent = append(sent, s.alice.Send(t, s.roomID, fmt.Sprintf("missed %d", i)))
	}
	last := sent[len(sent)-1]
	if status, ans = fedtest.SendTxn(t, s.hs1, s.hs2.Name, "newest", s.fromHS1(t, last), nil); status != 200 {
		t.Fatalf("send: %d %s", status, ans.Raw)
	}
	ans.OK(t, last)
	hole := sent[40]
	if s.hs2.Status(hole) != -1 {
		t.Fatalf("hs2 already holds %s: no hole in its history", hole)
	}

	var seen []string
	page := messages(t, s.bob, s.roomID, "", 10)
	seen = append(seen, fedtest.IDs(page.Chunk)...)
	for page.End != "" && len(seen) < 200 {
		page = messages(t, s.bob, s.roomID, page.End, 10)
		seen = append(seen, fedtest.IDs(page.Chunk)...)
	}
	var msgs []string
	for _, id := range seen {
		if slices.Contains(sent, id) {
			msgs = append(msgs, id)
		}
	}
	want := slices.Clone(sent)
	slices.Reverse(want)
	if !slices.Equal(msgs, want) {
		t.Fatalf("bob paged %d of the %d messages (want all, newest first)", len(msgs), len(sent))
	}
	if create := s.hs1.StateID(t, s.roomID, "m.room.create", ""); seen[len(seen)-1] != create {
		t.Fatalf("paging ended at %s, not the room's creation (%s)", seen[len(seen)-1], create)
	}
	if e, err := s.hs2.DB.EventByID(context.Background(), hole); err != nil || e.StreamPos >= 0 {
		t.Fatalf("%s in the hole: %+v, %v (want it backfilled)", hole, e, err)
	}
}
