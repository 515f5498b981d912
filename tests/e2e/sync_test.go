package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

func syncOnce(t *testing.T, cli *mautrix.Client, since string, timeoutMS int, filter string) *mautrix.RespSync {
	t.Helper()
	resp, err := cli.FullSyncRequest(ctxT(t), mautrix.ReqSync{Since: since, Timeout: timeoutMS, FilterID: filter})
	if err != nil {
		t.Fatalf("sync since %q: %v", since, err)
	}
	return resp
}

func bodies(evs []*event.Event) []string {
	var out []string
	for _, e := range evs {
		if e.Type == event.EventMessage {
			out = append(out, e.Content.Raw["body"].(string))
		}
	}
	return out
}

func hasState(evs []*event.Event, typ, key string) bool {
	for _, e := range evs {
		if e.Type.Type == typ && e.StateKey != nil && *e.StateKey == key {
			return true
		}
	}
	return false
}

func TestSyncInitialIncrementalAndInvite(t *testing.T) {
	s := start(t, nil)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "Chat", Invite: []id.UserID{bob.UserID}})

	first := syncOnce(t, bob, "", 0, "")
	inv, ok := first.Rooms.Invite[room]
	if !ok {
		t.Fatalf("invite missing from initial sync: %+v", first.Rooms)
	}
	var sawName, sawInvite bool
	for _, e := range inv.State.Events {
		if e.Type == event.StateRoomName {
			sawName = true
		}
		if e.Type == event.StateMember && e.GetStateKey() == bob.UserID.String() && e.Content.Raw["membership"] == "invite" {
			sawInvite = true
		}
	}
	if !sawName || !sawInvite {
		t.Fatalf("stripped state lacks name (%v) or invite (%v)", sawName, sawInvite)
	}
	if first.NextBatch == "" {
		t.Fatal("no next_batch")
	}
	// Account data and push rules come with the initial sync.
	var sawRules bool
	for _, e := range first.AccountData.Events {
		if e.Type.Type == "m.push_rules" {
			sawRules = true
		}
	}
	if !sawRules {
		t.Fatal("initial sync lacks m.push_rules account data")
	}

	join(t, bob, room)
	second := syncOnce(t, bob, first.NextBatch, 0, "")
	jr, ok := second.Rooms.Join[room]
	if !ok {
		t.Fatalf("joined room missing: %+v", second.Rooms)
	}
	all := append(append([]*event.Event{}, jr.State.Events...), jr.Timeline.Events...)
	if !hasState(all, "m.room.name", "") || !hasState(all, "m.room.create", "") || !hasState(jr.Timeline.Events, "m.room.member", bob.UserID.String()) {
		t.Fatalf("fresh room lacks create/name state or the join in the timeline")
	}
	if jr.Summary.JoinedMemberCount == nil || *jr.Summary.JoinedMemberCount != 2 {
		t.Fatalf("summary = %+v", jr.Summary)
	}

	for i := 1; i <= 3; i++ {
		text(t, alice, room, fmt.Sprintf("m%d", i))
	}
	if err := bob.SetAccountData(ctxT(t), "org.example.ad", map[string]any{"x": 1}); err != nil {
		t.Fatal(err)
	}
	third := syncOnce(t, bob, second.NextBatch, 0, "")
	jr = third.Rooms.Join[room]
	if jr == nil || fmt.Sprint(bodies(jr.Timeline.Events)) != "[m1 m2 m3]" || jr.Timeline.Limited || len(jr.State.Events) != 0 {
		t.Fatalf("incremental room = %+v", jr)
	}
	var sawAD bool
	for _, e := range third.AccountData.Events {
		sawAD = sawAD || e.Type.Type == "org.example.ad"
	}
	if !sawAD {
		t.Fatal("account data change missing from incremental sync")
	}
	// Nothing new: an immediate empty answer with the same position.
	fourth := syncOnce(t, bob, third.NextBatch, 0, "")
	if len(fourth.Rooms.Join) != 0 || fourth.NextBatch != third.NextBatch {
		t.Fatalf("empty incremental sync = %+v", fourth)
	}

	// Leaving shows in rooms.leave with the leave event.
	if _, err := bob.LeaveRoom(ctxT(t), room); err != nil {
		t.Fatal(err)
	}
	fifth := syncOnce(t, bob, fourth.NextBatch, 0, "")
	lr, ok := fifth.Rooms.Leave[room]
	if !ok || !hasState(lr.Timeline.Events, "m.room.member", bob.UserID.String()) {
		t.Fatalf("leave missing: %+v", fifth.Rooms)
	}
}

// TestSyncLongPollWakes proves a waiting /sync returns when an event
// commits, long before its timeout.
func TestSyncLongPollWakes(t *testing.T) {
	s := start(t, nil)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	join(t, bob, room)
	since := syncOnce(t, bob, "", 0, "").NextBatch
	type result struct {
		resp *mautrix.RespSync
		took time.Duration
	}
	done := make(chan result, 1)
	go func() {
		t0 := time.Now()
		resp, err := bob.FullSyncRequest(ctxT(t), mautrix.ReqSync{Since: since, Timeout: 30000})
		if err != nil {
			t.Error(err)
		}
		done <- result{resp, time.Since(t0)}
	}()
	text(t, alice, room, "wake up")
	select {
	case r := <-done:
		if r.resp == nil || fmt.Sprint(bodies(r.resp.Rooms.Join[room].Timeline.Events)) != "[wake up]" {
			t.Fatalf("long-poll answer = %+v", r.resp)
		}
		if r.took >= 30*time.Second {
			t.Fatalf("long-poll ran into its timeout (%s)", r.took)
		}
	case <-time.After(25 * time.Second):
		t.Fatal("long-poll did not return after the event was sent")
	}
}

// TestSyncGapAndPrevBatch: more messages than the timeline limit gives a
// limited timeline whose prev_batch pages back exactly to the previous sync.
func TestSyncGapAndPrevBatch(t *testing.T) {
	s := start(t, nil)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	join(t, bob, room)
	filter, err := bob.CreateFilter(ctxT(t), &mautrix.Filter{Room: &mautrix.RoomFilter{Timeline: &mautrix.FilterPart{Limit: 5}}})
	if err != nil {
		t.Fatal(err)
	}
	since := syncOnce(t, bob, "", 0, filter.FilterID).NextBatch
	text(t, alice, room, "before-gap-topic-change")
	if _, err := alice.SendStateEvent(ctxT(t), room, event.StateTopic, "", map[string]any{"topic": "changed in the gap"}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 12; i++ {
		text(t, alice, room, fmt.Sprintf("g%02d", i))
	}
	resp := syncOnce(t, bob, since, 0, filter.FilterID)
	jr := resp.Rooms.Join[room]
	if jr == nil || !jr.Timeline.Limited || fmt.Sprint(bodies(jr.Timeline.Events)) != "[g08 g09 g10 g11 g12]" {
		t.Fatalf("gapped timeline = %+v", jr)
	}
	if !hasState(jr.State.Events, "m.room.topic", "") {
		t.Fatal("state delta across the gap lacks the topic change")
	}
	// prev_batch pages back over the gap and stops at the previous sync.
	q := url.Values{"dir": {"b"}, "from": {jr.Timeline.PrevBatch}, "to": {since}, "limit": {"100"}}
	page := messages(t, s, bob.AccessToken, room, q)
	var got []string
	for _, e := range page.Chunk {
		if b := e.body(); b != "" {
			got = append(got, b)
		}
	}
	want := "[g07 g06 g05 g04 g03 g02 g01 before-gap-topic-change]"
	if fmt.Sprint(got) != want {
		t.Fatalf("paging back from prev_batch = %v, want %s", got, want)
	}
}

// TestSyncLazyLoadMembers: with lazy loading only timeline senders' (and
// one's own) member events come in the state.
func TestSyncLazyLoadMembers(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	for _, n := range []string{"m1", "m2", "m3"} {
		join(t, newUser(t, s, n), room)
	}
	bob := newUser(t, s, "bob")
	join(t, bob, room)
	text(t, alice, room, "only alice talks")
	f, _ := json.Marshal(map[string]any{"room": map[string]any{
		"timeline": map[string]any{"limit": 1},
		"state":    map[string]any{"lazy_load_members": true},
	}})
	r := do(t, "GET", v3(s, "sync")+"?filter="+url.QueryEscape(string(f)), bob.AccessToken, nil).want(t, 200, "")
	var resp mautrix.RespSync
	decodeInto(t, r.Raw, &resp)
	jr := resp.Rooms.Join[room]
	if jr == nil {
		t.Fatalf("room missing: %s", r.Raw)
	}
	members := map[string]bool{}
	for _, e := range jr.State.Events {
		if e.Type == event.StateMember {
			members[e.GetStateKey()] = true
		}
	}
	if !members[alice.UserID.String()] || !members[bob.UserID.String()] || len(members) != 2 {
		t.Fatalf("lazy-loaded members = %v, want alice and bob", members)
	}
	if !hasState(jr.State.Events, "m.room.create", "") {
		t.Fatal("lazy loading dropped non-member state")
	}
}

// TestSyncTokenSurvivesRestart: a next_batch from before a restart still works.
func TestSyncTokenSurvivesRestart(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	since := syncOnce(t, alice, "", 0, "").NextBatch
	s = s.Restart()
	alice = withToken(t, s, alice.UserID.String(), alice.AccessToken)
	text(t, alice, room, "after restart")
	resp := syncOnce(t, alice, since, 0, "")
	if jr := resp.Rooms.Join[room]; jr == nil || fmt.Sprint(bodies(jr.Timeline.Events)) != "[after restart]" {
		t.Fatalf("sync after restart = %+v", resp.Rooms.Join)
	}
	do(t, "GET", v3(s, "sync")+"?since=garbage", alice.AccessToken, nil).want(t, 400, "M_INVALID_PARAM")
	do(t, "GET", v3(s, "sync")+"?filter=999", alice.AccessToken, nil).want(t, 404, "M_NOT_FOUND")
	do(t, "GET", v3(s, "sync"), "", nil).want(t, 401, "M_MISSING_TOKEN")
}

func TestSyncEventFieldsFormatAndLazyIncremental(t *testing.T) {
	s := start(t, nil)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	join(t, bob, room)
	text(t, alice, room, "hello fields")
	rawSync := func(token string, f map[string]any, since string) map[string]any {
		fj, _ := json.Marshal(f)
		u := v3(s, "sync") + "?filter=" + url.QueryEscape(string(fj))
		if since != "" {
			u += "&since=" + since
		}
		return do(t, "GET", u, token, nil).want(t, 200, "").Body
	}
	timelineOf := func(body map[string]any) []any {
		join := body["rooms"].(map[string]any)["join"].(map[string]any)[string(room)].(map[string]any)
		return join["timeline"].(map[string]any)["events"].([]any)
	}
	body := rawSync(bob.AccessToken, map[string]any{"event_fields": []string{"type", "content.body"}, "room": map[string]any{"timeline": map[string]any{"limit": 1}}}, "")
	ev := timelineOf(body)[0].(map[string]any)
	if len(ev) != 2 || ev["type"] != "m.room.message" || ev["content"].(map[string]any)["body"] != "hello fields" || len(ev["content"].(map[string]any)) != 1 {
		t.Fatalf("event_fields result = %v", ev)
	}
	body = rawSync(bob.AccessToken, map[string]any{"event_format": "federation", "room": map[string]any{"timeline": map[string]any{"limit": 1}}}, "")
	ev = timelineOf(body)[0].(map[string]any)
	if ev["hashes"] == nil || ev["signatures"] == nil || ev["depth"] == nil {
		t.Fatalf("federation format lacks PDU fields: %v", ev)
	}

	// Lazy loading on an incremental sync: a new sender's member event comes along.
	lazy := map[string]any{"room": map[string]any{"state": map[string]any{"lazy_load_members": true}}}
	since := rawSync(bob.AccessToken, lazy, "")["next_batch"].(string)
	carol := newUser(t, s, "carol")
	join(t, carol, room)
	since = rawSync(bob.AccessToken, lazy, since)["next_batch"].(string)
	text(t, carol, room, "carol speaks")
	body = rawSync(bob.AccessToken, lazy, since)
	joinRoom := body["rooms"].(map[string]any)["join"].(map[string]any)[string(room)].(map[string]any)
	found := false
	for _, e := range joinRoom["state"].(map[string]any)["events"].([]any) {
		m := e.(map[string]any)
		if m["type"] == "m.room.member" && m["state_key"] == string(carol.UserID) {
			found = true
		}
	}
	if !found {
		t.Fatalf("incremental lazy sync lacks the new sender's member event: %v", joinRoom["state"])
	}
}

// TestSyncFirstTokenOfFreshServer: on a fresh server the first next_batch
// is at stream position 0; a long-poll from it must still wake (it once
// was mistaken for an initial sync and slept until its timeout).
func TestSyncFirstTokenOfFreshServer(t *testing.T) {
	s := start(t, nil)
	alice, bob := newUser(t, s, "alice"), newUser(t, s, "bob")
	since := syncOnce(t, bob, "", 0, "").NextBatch
	done := make(chan *mautrix.RespSync, 1)
	go func() {
		resp, err := bob.FullSyncRequest(ctxT(t), mautrix.ReqSync{Since: since, Timeout: 20000})
		if err != nil {
			t.Error(err)
		}
		done <- resp
	}()
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{bob.UserID}})
	select {
	case resp := <-done:
		if resp == nil || resp.Rooms.Invite[room] == nil {
			t.Fatalf("long-poll answer lacks the invite: %+v", resp)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("long-poll from the first token did not wake for an invite")
	}
}
