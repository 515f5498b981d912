package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"matrixhs/tests/testserver"
)

// relSend sends a message-like event with raw content and returns its ID.
func relSend(t *testing.T, cli *mautrix.Client, roomID id.RoomID, typ string, content map[string]any) string {
	t.Helper()
	res, err := cli.SendMessageEvent(ctxT(t), roomID, event.Type{Type: typ, Class: event.MessageEventType}, content)
	if err != nil {
		t.Fatalf("%s sending %s: %v", cli.UserID, typ, err)
	}
	return string(res.EventID)
}

// relMsg sends an m.room.message relating to parent with relType ("" for none).
func relMsg(t *testing.T, cli *mautrix.Client, roomID id.RoomID, body, parent, relType string) string {
	t.Helper()
	content := map[string]any{"msgtype": "m.text", "body": body}
	if parent != "" {
		content["m.relates_to"] = map[string]any{"rel_type": relType, "event_id": parent}
	}
	return relSend(t, cli, roomID, "m.room.message", content)
}

// relReact sends an m.reaction annotating parent.
func relReact(t *testing.T, cli *mautrix.Client, roomID id.RoomID, parent, key string) string {
	t.Helper()
	res, err := cli.SendReaction(ctxT(t), roomID, id.EventID(parent), key)
	if err != nil {
		t.Fatalf("%s reacting to %s: %v", cli.UserID, parent, err)
	}
	return string(res.EventID)
}

// relEdit sends an edit of parent (m.replace with m.new_content).
func relEdit(t *testing.T, cli *mautrix.Client, roomID id.RoomID, parent, body string) string {
	t.Helper()
	// Edits are ordered by origin_server_ts: keep successive edits apart.
	time.Sleep(3 * time.Millisecond)
	return relSend(t, cli, roomID, "m.room.message", map[string]any{
		"msgtype": "m.text", "body": "* " + body,
		"m.new_content": map[string]any{"msgtype": "m.text", "body": body},
		"m.relates_to":  map[string]any{"rel_type": "m.replace", "event_id": parent},
	})
}

// relations calls /relations through mautrix and returns the chunk's IDs and the response.
func relations(t *testing.T, cli *mautrix.Client, roomID id.RoomID, parent string, req *mautrix.ReqGetRelations) ([]string, *mautrix.RespGetRelations) {
	t.Helper()
	if req == nil {
		req = &mautrix.ReqGetRelations{}
	}
	res, err := cli.GetRelations(ctxT(t), roomID, id.EventID(parent), req)
	if err != nil {
		t.Fatalf("GetRelations(%s, %+v): %v", parent, req, err)
	}
	ids := []string{}
	for _, e := range res.Chunk {
		if e.RoomID != roomID || e.Sender == "" || e.Type.Type == "" {
			t.Fatalf("relations chunk holds a malformed event: %+v", e)
		}
		ids = append(ids, string(e.ID))
	}
	return ids, res
}

func wantEventIDs(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

// relURL is /_matrix/client/v1/rooms/{roomID}/{segments...}.
func relURL(s *testserver.Server, roomID id.RoomID, segments ...string) string {
	return cs(s, "v1", append([]string{"rooms", string(roomID)}, segments...)...)
}

// bundle returns unsigned.m.relations of an event (nil when absent).
func bundle(e rev) map[string]any {
	m, _ := e.Unsigned["m.relations"].(map[string]any)
	return m
}

// threadSummary returns the m.thread bundle of an event, failing when absent.
func threadSummary(t *testing.T, e rev) (latest rev, count int64, participated bool) {
	t.Helper()
	th, ok := bundle(e)["m.thread"].(map[string]any)
	if !ok {
		t.Fatalf("event %s has no m.thread bundle: unsigned %v", e.EventID, e.Unsigned)
	}
	raw, _ := json.Marshal(th["latest_event"])
	decodeInto(t, raw, &latest)
	p, ok := th["current_user_participated"].(bool)
	if !ok {
		t.Fatalf("m.thread bundle without current_user_participated: %v", th)
	}
	return latest, num(t, th["count"], "m.thread count"), p
}

// twoUserRoom creates a public room of alice that bob joined.
func twoUserRoom(t *testing.T) (*testserver.Server, *mautrix.Client, *mautrix.Client, id.RoomID) {
	t.Helper()
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	roomID := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	join(t, bob, roomID)
	return s, alice, bob, roomID
}

// TestRelationsByTypeAndDirection: /relations lists direct children of each
// relationship type newest first (dir=f: oldest first), filters by rel type
// and event type, leaves out unrelated events, replies and redacted children.
func TestRelationsByTypeAndDirection(t *testing.T) {
	s, alice, bob, roomID := twoUserRoom(t)
	root := text(t, alice, roomID, "root")
	react := relReact(t, bob, roomID, root, "👍")
	thread := relMsg(t, bob, roomID, "in thread", root, "m.thread")
	text(t, alice, roomID, "unrelated")
	edit := relEdit(t, alice, roomID, root, "root v2")
	ref := relMsg(t, bob, roomID, "a reference", root, "m.reference")
	relSend(t, bob, roomID, "m.room.message", map[string]any{"msgtype": "m.text", "body": "a reply",
		"m.relates_to": map[string]any{"m.in_reply_to": map[string]any{"event_id": root}}})
	gone := relReact(t, bob, roomID, root, "👎")
	if _, err := bob.RedactEvent(ctxT(t), roomID, id.EventID(gone)); err != nil {
		t.Fatal(err)
	}

	ids, res := relations(t, bob, roomID, root, nil)
	wantEventIDs(t, "all relations", ids, ref, edit, thread, react)
	if res.NextBatch != "" || res.PrevBatch != "" || res.RecursionDepth != 0 {
		t.Fatalf("single page has tokens or depth: %+v", res)
	}
	ids, _ = relations(t, bob, roomID, root, &mautrix.ReqGetRelations{Dir: mautrix.DirectionForward})
	wantEventIDs(t, "dir=f", ids, react, thread, edit, ref)
	ids, res = relations(t, bob, roomID, root, &mautrix.ReqGetRelations{RelationType: event.RelAnnotation})
	wantEventIDs(t, "m.annotation", ids, react)
	if k := res.Chunk[0].Content.Raw["m.relates_to"].(map[string]any)["key"]; k != "👍" {
		t.Fatalf("reaction content = %v", res.Chunk[0].Content.Raw)
	}
	ids, _ = relations(t, bob, roomID, root, &mautrix.ReqGetRelations{RelationType: event.RelThread,
		EventType: event.EventMessage})
	wantEventIDs(t, "m.thread/m.room.message", ids, thread)
	ids, _ = relations(t, bob, roomID, root, &mautrix.ReqGetRelations{RelationType: event.RelThread, EventType: event.EventReaction})
	wantEventIDs(t, "m.thread/m.reaction", ids)
	ids, _ = relations(t, bob, roomID, root, &mautrix.ReqGetRelations{RelationType: event.RelReference})
	wantEventIDs(t, "m.reference", ids, ref)
	ids, _ = relations(t, bob, roomID, thread, nil)
	wantEventIDs(t, "children of a childless event", ids)

	// Raw: no recursion_depth without recurse; bad parameters are refused.
	r := do(t, "GET", relURL(s, roomID, "relations", root), bob.AccessToken, nil).want(t, 200, "")
	if _, ok := r.Body["recursion_depth"]; ok {
		t.Fatalf("recursion_depth without recurse: %s", r.Raw)
	}
	do(t, "GET", relURL(s, roomID, "relations", root)+"?dir=x", bob.AccessToken, nil).want(t, 400, "M_INVALID_PARAM")
	do(t, "GET", relURL(s, roomID, "relations", root)+"?limit=-1", bob.AccessToken, nil).want(t, 400, "M_INVALID_PARAM")
	do(t, "GET", relURL(s, roomID, "relations", root)+"?recurse=maybe", bob.AccessToken, nil).want(t, 400, "M_INVALID_PARAM")
	do(t, "GET", relURL(s, roomID, "relations", root), "", nil).want(t, 401, "M_MISSING_TOKEN")
}

// TestRelationsPagination: paging with limit and next_batch returns every
// relation exactly once, in both directions; tokens interoperate (a
// backwards next_batch used as `to` or as a forwards `from` bounds the first
// page); prev_batch echoes from.
func TestRelationsPagination(t *testing.T) {
	_, alice, bob, roomID := twoUserRoom(t)
	root := text(t, alice, roomID, "root")
	var want []string
	for i := range 7 {
		if i%2 == 0 {
			want = append(want, relReact(t, bob, roomID, root, string(rune('a'+i))))
		} else {
			want = append(want, relMsg(t, bob, roomID, "reply", root, "m.thread"))
		}
		text(t, alice, roomID, "noise")
	}
	page := func(dir mautrix.Direction) []string {
		t.Helper()
		var all []string
		from := ""
		for i := 0; ; i++ {
			if i > 10 {
				t.Fatalf("pagination does not end")
			}
			ids, res := relations(t, alice, roomID, root, &mautrix.ReqGetRelations{Dir: dir, Limit: 2, From: from})
			if len(ids) > 2 {
				t.Fatalf("page of %d with limit 2", len(ids))
			}
			if res.PrevBatch != from {
				t.Fatalf("prev_batch = %q, want from %q", res.PrevBatch, from)
			}
			all = append(all, ids...)
			if res.NextBatch == "" {
				if len(ids) == 0 {
					t.Fatalf("last page is empty: next_batch was given with nothing left")
				}
				return all
			}
			from = res.NextBatch
		}
	}
	wantEventIDs(t, "backwards pages", page(mautrix.DirectionBackward), reversed(want)...)
	wantEventIDs(t, "forwards pages", page(mautrix.DirectionForward), want...)

	first, res := relations(t, alice, roomID, root, &mautrix.ReqGetRelations{Limit: 3})
	wantEventIDs(t, "first page", first, want[6], want[5], want[4])
	ids, _ := relations(t, alice, roomID, root, &mautrix.ReqGetRelations{To: res.NextBatch})
	wantEventIDs(t, "to = next_batch", ids, first...)
	ids, _ = relations(t, alice, roomID, root, &mautrix.ReqGetRelations{Dir: mautrix.DirectionForward, From: res.NextBatch})
	wantEventIDs(t, "forwards from next_batch", ids, want[4], want[5], want[6])
	ids, _ = relations(t, alice, roomID, root, &mautrix.ReqGetRelations{From: res.NextBatch, Limit: 10})
	wantEventIDs(t, "backwards from next_batch", ids, want[3], want[2], want[1], want[0])
}

// TestRelationsRecurse: a reaction to a thread reply is a relation of the
// root only with recurse=true; filters apply to the intermediate events.
func TestRelationsRecurse(t *testing.T) {
	s, alice, bob, roomID := twoUserRoom(t)
	root := text(t, alice, roomID, "root")
	reply := relMsg(t, bob, roomID, "reply", root, "m.thread")
	react := relReact(t, alice, roomID, reply, "🎉")
	edit := relEdit(t, bob, roomID, reply, "reply v2")
	editRef := relMsg(t, alice, roomID, "about the edit", edit, "m.reference")
	deep := relMsg(t, alice, roomID, "too deep", editRef, "m.reference")

	ids, res := relations(t, alice, roomID, root, nil)
	wantEventIDs(t, "without recurse", ids, reply)
	ids, res = relations(t, alice, roomID, root, &mautrix.ReqGetRelations{Recurse: true})
	wantEventIDs(t, "with recurse", ids, editRef, edit, react, reply)
	if res.RecursionDepth != 3 {
		t.Fatalf("recursion_depth = %d, want 3", res.RecursionDepth)
	}
	if slices.Contains(ids, deep) {
		t.Fatalf("recursed deeper than 3 levels")
	}
	ids, _ = relations(t, alice, roomID, root, &mautrix.ReqGetRelations{Recurse: true, RelationType: event.RelAnnotation})
	wantEventIDs(t, "recurse, m.annotation (through an m.thread event)", ids)
	ids, _ = relations(t, alice, roomID, reply, &mautrix.ReqGetRelations{Recurse: true, RelationType: event.RelAnnotation})
	wantEventIDs(t, "recurse from the reply, m.annotation", ids, react)
	r := do(t, "GET", relURL(s, roomID, "relations", root)+"?recurse=false", alice.AccessToken, nil).want(t, 200, "")
	if _, ok := r.Body["recursion_depth"]; !ok || len(r.Body["chunk"].([]any)) != 1 {
		t.Fatalf("recurse=false: want recursion_depth and one direct child: %s", r.Raw)
	}
}

// TestRelationsVisibility: the parent must be visible (else 404), non-members
// get 403, children the user may not see are left out.
func TestRelationsVisibility(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	carol := newUser(t, s, "carol")
	dave := newUser(t, s, "dave")
	roomID := mkRoomRaw(t, s, alice.AccessToken, map[string]any{"preset": "public_chat", "initial_state": []any{
		map[string]any{"type": "m.room.history_visibility", "state_key": "", "content": map[string]any{"history_visibility": "joined"}},
	}})
	join(t, bob, roomID)
	hidden := text(t, alice, roomID, "before carol")
	relReact(t, bob, roomID, hidden, "x")
	join(t, carol, roomID)
	root := text(t, alice, roomID, "root")
	r1 := relReact(t, bob, roomID, root, "1")
	if _, err := carol.LeaveRoom(ctxT(t), roomID); err != nil {
		t.Fatal(err)
	}
	relReact(t, bob, roomID, root, "2")
	join(t, carol, roomID)
	r3 := relReact(t, bob, roomID, root, "3")

	ids, _ := relations(t, carol, roomID, root, nil)
	wantEventIDs(t, "carol's view", ids, r3, r1)
	ids, _ = relations(t, bob, roomID, root, nil)
	if len(ids) != 3 {
		t.Fatalf("bob sees %v, want 3 reactions", ids)
	}
	_, err := carol.GetRelations(ctxT(t), roomID, id.EventID(hidden), &mautrix.ReqGetRelations{})
	wantMatrixErr(t, err, http.StatusNotFound, "M_NOT_FOUND")
	do(t, "GET", relURL(s, roomID, "relations", hidden, "m.annotation"), carol.AccessToken, nil).want(t, 404, "M_NOT_FOUND")
	do(t, "GET", relURL(s, roomID, "relations", "$nonexistent"), carol.AccessToken, nil).want(t, 404, "M_NOT_FOUND")
	_, err = dave.GetRelations(ctxT(t), roomID, id.EventID(root), &mautrix.ReqGetRelations{})
	wantMatrixErr(t, err, http.StatusForbidden, "M_FORBIDDEN")
	do(t, "GET", relURL(s, roomID, "threads"), dave.AccessToken, nil).want(t, 403, "M_FORBIDDEN")
	// An event of another room is not found through this one.
	other := mkRoom(t, bob, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	elsewhere := text(t, bob, other, "elsewhere")
	do(t, "GET", relURL(s, roomID, "relations", elsewhere), bob.AccessToken, nil).want(t, 404, "M_NOT_FOUND")
}

// TestThreadAggregation: the m.thread bundle of a root after 3 replies
// (count, latest_event in full, current_user_participated per user), on
// /event, /messages, /context and /relations; redacted replies drop out;
// the latest event carries its own edit; a reply the user may not see is
// never the latest_event.
func TestThreadAggregation(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	carol := newUser(t, s, "carol")
	dave := newUser(t, s, "dave")
	roomID := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	for _, c := range []*mautrix.Client{bob, carol, dave} {
		join(t, c, roomID)
	}
	root := text(t, alice, roomID, "root")
	plain := text(t, alice, roomID, "no thread")
	relMsg(t, bob, roomID, "one", root, "m.thread")
	relMsg(t, carol, roomID, "two", root, "m.thread")
	third := relMsg(t, bob, roomID, "three", root, "m.thread")

	for _, tc := range []struct {
		who  *mautrix.Client
		part bool
	}{{alice, true}, {bob, true}, {carol, true}, {dave, false}} {
		e := eventOK(t, s, tc.who.AccessToken, roomID, root)
		latest, count, part := threadSummary(t, e)
		if count != 3 || part != tc.part {
			t.Fatalf("%s: count %d participated %v, want 3 %v", tc.who.UserID, count, part, tc.part)
		}
		if latest.EventID != third || latest.body() != "three" || latest.Sender != string(bob.UserID) ||
			latest.RoomID != string(roomID) || latest.Type != "m.room.message" {
			t.Fatalf("latest_event = %+v, want the third reply", latest)
		}
	}
	if b := bundle(eventOK(t, s, dave.AccessToken, roomID, plain)); b != nil {
		t.Fatalf("event without children has m.relations %v", b)
	}
	if b := bundle(eventOK(t, s, dave.AccessToken, roomID, third)); b != nil {
		t.Fatalf("thread reply without children has m.relations %v", b)
	}

	// The same bundle on /messages and /context.
	var found bool
	for _, e := range messages(t, s, dave.AccessToken, roomID, url.Values{"limit": {"20"}}).Chunk {
		if e.EventID == root {
			found = true
			if _, count, _ := threadSummary(t, e); count != 3 {
				t.Fatalf("/messages thread count = %d", count)
			}
		}
	}
	if !found {
		t.Fatalf("/messages lacks the root")
	}
	r := do(t, "GET", roomURL(s, roomID, "context", plain)+"?limit=4", dave.AccessToken, nil).want(t, 200, "")
	var ctxResp struct {
		Before []rev `json:"events_before"`
	}
	decodeInto(t, r.Raw, &ctxResp)
	found = false
	for _, e := range ctxResp.Before {
		if e.EventID == root {
			found = true
			threadSummary(t, e)
		}
	}
	if !found {
		t.Fatalf("/context events_before lacks the root: %s", r.Raw)
	}

	// The latest event's own edit is bundled inside latest_event.
	edit := relEdit(t, bob, roomID, third, "three, edited")
	latest, _, _ := threadSummary(t, eventOK(t, s, dave.AccessToken, roomID, root))
	rep, ok := bundle(latest)["m.replace"].(map[string]any)
	if !ok || rep["event_id"] != edit {
		t.Fatalf("latest_event bundle = %v, want m.replace %s", latest.Unsigned, edit)
	}

	// A redacted reply breaks its relation.
	if _, err := bob.RedactEvent(ctxT(t), roomID, id.EventID(third)); err != nil {
		t.Fatal(err)
	}
	latest, count, part := threadSummary(t, eventOK(t, s, dave.AccessToken, roomID, root))
	if count != 2 || latest.body() != "two" || part {
		t.Fatalf("after redaction: count %d latest %q participated %v", count, latest.body(), part)
	}
	// Dave replies: now he participated.
	relMsg(t, dave, roomID, "four", root, "m.thread")
	if _, count, part := threadSummary(t, eventOK(t, s, dave.AccessToken, roomID, root)); count != 3 || !part {
		t.Fatalf("after dave's reply: count %d participated %v", count, part)
	}

	// Bob ignores dave: dave's reply leaves bob's aggregation and relations.
	if err := bob.SetAccountData(ctxT(t), "m.ignored_user_list",
		map[string]any{"ignored_users": map[string]any{string(dave.UserID): map[string]any{}}}); err != nil {
		t.Fatal(err)
	}
	latest, count, _ = threadSummary(t, eventOK(t, s, bob.AccessToken, roomID, root))
	if count != 2 || latest.body() != "two" {
		t.Fatalf("bob ignoring dave: count %d latest %q", count, latest.body())
	}
	ids, _ := relations(t, bob, roomID, root, nil)
	if len(ids) != 2 {
		t.Fatalf("bob ignoring dave sees relations %v", ids)
	}
}

// TestThreadLatestEventVisibility: a user who left sees as latest_event the
// last reply from before they left, not the newer one they may not see.
func TestThreadLatestEventVisibility(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	carol := newUser(t, s, "carol")
	roomID := mkRoomRaw(t, s, alice.AccessToken, map[string]any{"preset": "public_chat", "initial_state": []any{
		map[string]any{"type": "m.room.history_visibility", "state_key": "", "content": map[string]any{"history_visibility": "joined"}},
	}})
	join(t, carol, roomID)
	root := text(t, alice, roomID, "root")
	seen := relMsg(t, alice, roomID, "seen", root, "m.thread")
	if _, err := carol.LeaveRoom(ctxT(t), roomID); err != nil {
		t.Fatal(err)
	}
	unseen := relMsg(t, alice, roomID, "unseen", root, "m.thread")

	latest, _, _ := threadSummary(t, eventOK(t, s, alice.AccessToken, roomID, root))
	if latest.EventID != unseen {
		t.Fatalf("alice's latest_event = %s, want %s", latest.EventID, unseen)
	}
	latest, _, part := threadSummary(t, eventOK(t, s, carol.AccessToken, roomID, root))
	if latest.EventID != seen || part {
		t.Fatalf("carol's latest_event = %s (participated %v), want %s", latest.EventID, part, seen)
	}
	ids, _ := relations(t, carol, roomID, root, nil)
	wantEventIDs(t, "carol's relations", ids, seen)
}

// threadsPage GETs one page of /threads.
func threadsPage(t *testing.T, s *testserver.Server, token string, roomID id.RoomID, q url.Values) ([]rev, string) {
	t.Helper()
	r := do(t, "GET", relURL(s, roomID, "threads")+"?"+q.Encode(), token, nil).want(t, 200, "")
	var body struct {
		Chunk     []rev   `json:"chunk"`
		NextBatch *string `json:"next_batch"`
	}
	decodeInto(t, r.Raw, &body)
	if body.Chunk == nil {
		t.Fatalf("/threads without chunk: %s", r.Raw)
	}
	next := ""
	if body.NextBatch != nil {
		next = *body.NextBatch
		if next == "" {
			t.Fatalf("/threads with an empty next_batch: %s", r.Raw)
		}
	}
	return body.Chunk, next
}

// TestThreadsList: /threads lists thread roots by latest activity with their
// m.thread bundle, pages with next_batch, and include=participated keeps the
// threads the user started or replied in.
func TestThreadsList(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	carol := newUser(t, s, "carol")
	roomID := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	join(t, bob, roomID)
	join(t, carol, roomID)
	rootA := text(t, alice, roomID, "A")
	rootB := text(t, bob, roomID, "B")
	rootC := text(t, alice, roomID, "C")
	text(t, alice, roomID, "no thread")
	relMsg(t, bob, roomID, "a1", rootA, "m.thread")
	relMsg(t, alice, roomID, "b1", rootB, "m.thread")
	relMsg(t, carol, roomID, "c1", rootC, "m.thread")
	relReact(t, carol, roomID, rootB, "not a thread")
	relMsg(t, alice, roomID, "a2", rootA, "m.thread") // A is now the most recently active

	all, next := threadsPage(t, s, carol.AccessToken, roomID, url.Values{})
	wantEventIDs(t, "threads", eventIDs(all), rootA, rootC, rootB)
	if next != "" {
		t.Fatalf("single page with next_batch %q", next)
	}
	latest, count, part := threadSummary(t, all[0])
	if latest.body() != "a2" || count != 2 || part {
		t.Fatalf("thread A for carol: latest %q count %d participated %v", latest.body(), count, part)
	}
	if _, _, part := threadSummary(t, all[1]); !part {
		t.Fatalf("carol replied in C but participated is false")
	}

	// Paging with limit 1 returns each root once, in order.
	var paged []string
	q := url.Values{"limit": {"1"}}
	for i := 0; ; i++ {
		if i > 5 {
			t.Fatalf("/threads paging does not end")
		}
		chunk, next := threadsPage(t, s, carol.AccessToken, roomID, q)
		if len(chunk) > 1 {
			t.Fatalf("page of %d with limit 1", len(chunk))
		}
		paged = append(paged, eventIDs(chunk)...)
		if next == "" {
			break
		}
		q.Set("from", next)
	}
	wantEventIDs(t, "paged threads", paged, rootA, rootC, rootB)

	part1, _ := threadsPage(t, s, carol.AccessToken, roomID, url.Values{"include": {"participated"}})
	wantEventIDs(t, "carol participated", eventIDs(part1), rootC)
	part2, _ := threadsPage(t, s, bob.AccessToken, roomID, url.Values{"include": {"participated"}})
	wantEventIDs(t, "bob participated (root sender or replier)", eventIDs(part2), rootA, rootB)

	// A root sent by an ignored user is listed redacted.
	if err := carol.SetAccountData(ctxT(t), "m.ignored_user_list",
		map[string]any{"ignored_users": map[string]any{string(bob.UserID): map[string]any{}}}); err != nil {
		t.Fatal(err)
	}
	all, _ = threadsPage(t, s, carol.AccessToken, roomID, url.Values{})
	wantEventIDs(t, "threads while ignoring bob", eventIDs(all), rootA, rootC, rootB)
	if len(all[2].Content) != 0 || all[0].body() != "A" {
		t.Fatalf("root of an ignored user not redacted: %+v / %+v", all[2].Content, all[0].Content)
	}
	if latest, count, _ := threadSummary(t, all[0]); count != 1 || latest.body() != "a2" {
		t.Fatalf("thread A while ignoring bob: count %d latest %q", count, latest.body())
	}

	do(t, "GET", relURL(s, roomID, "threads")+"?include=mine", carol.AccessToken, nil).want(t, 400, "M_INVALID_PARAM")
	do(t, "GET", relURL(s, roomID, "threads")+"?limit=0", carol.AccessToken, nil).want(t, 400, "M_INVALID_PARAM")
}

// TestEditAggregation: m.replace bundles the most recent valid edit in full,
// leaving the original content intact; edits by another sender, edits
// without m.new_content and edits of edits are ignored; a redacted original
// bundles no edit, a redacted edit falls back to the one before.
func TestEditAggregation(t *testing.T) {
	s, alice, bob, roomID := twoUserRoom(t)
	orig := text(t, alice, roomID, "original")
	first := relEdit(t, alice, roomID, orig, "first edit")
	second := relEdit(t, alice, roomID, orig, "second edit")
	relEdit(t, bob, roomID, orig, "bob's edit")
	time.Sleep(3 * time.Millisecond)
	relSend(t, alice, roomID, "m.room.message", map[string]any{"msgtype": "m.text", "body": "* no new content",
		"m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": orig}})
	editOfEdit := relEdit(t, alice, roomID, second, "edit of the edit")

	replace := func(who *mautrix.Client, eventID string) map[string]any {
		t.Helper()
		e := eventOK(t, s, who.AccessToken, roomID, eventID)
		if eventID == orig && e.body() != "original" {
			t.Fatalf("original content was replaced: %v", e.Content)
		}
		m, _ := bundle(e)["m.replace"].(map[string]any)
		return m
	}
	rep := replace(bob, orig)
	if rep == nil || rep["event_id"] != second || rep["sender"] != string(alice.UserID) || rep["room_id"] != string(roomID) {
		t.Fatalf("m.replace = %v, want alice's second edit %s", rep, second)
	}
	nc, _ := rep["content"].(map[string]any)["m.new_content"].(map[string]any)
	if nc["body"] != "second edit" || rep["type"] != "m.room.message" {
		t.Fatalf("m.replace is not the full edit event: %v", rep)
	}
	if b := bundle(eventOK(t, s, bob.AccessToken, roomID, second)); b != nil {
		t.Fatalf("an edit has aggregations (edit of edit %s): %v", editOfEdit, b)
	}
	// Messages carry the same bundle.
	for _, e := range messages(t, s, bob.AccessToken, roomID, url.Values{"limit": {"30"}}).Chunk {
		if e.EventID == orig {
			if m, _ := bundle(e)["m.replace"].(map[string]any); m == nil || m["event_id"] != second {
				t.Fatalf("/messages m.replace = %v", bundle(e))
			}
		}
	}

	// Only bob edited bob's message: nothing valid to bundle.
	bobMsg := text(t, bob, roomID, "bob's")
	relEdit(t, alice, roomID, bobMsg, "alice edits bob")
	if rep := replace(bob, bobMsg); rep != nil {
		t.Fatalf("edit by another sender bundled: %v", rep)
	}

	// A redacted latest edit falls back to the previous one.
	if _, err := alice.RedactEvent(ctxT(t), roomID, id.EventID(second)); err != nil {
		t.Fatal(err)
	}
	if rep := replace(bob, orig); rep == nil || rep["event_id"] != first {
		t.Fatalf("after redacting the latest edit, m.replace = %v, want %s", rep, first)
	}
	// A redacted original bundles no edit.
	if _, err := alice.RedactEvent(ctxT(t), roomID, id.EventID(orig)); err != nil {
		t.Fatal(err)
	}
	e := eventOK(t, s, bob.AccessToken, roomID, orig)
	if _, ok := bundle(e)["m.replace"]; ok {
		t.Fatalf("redacted original bundles an edit: %v", e.Unsigned)
	}
}

// TestReferenceAggregation: m.reference bundles the referencing event IDs;
// annotations are not bundled.
func TestReferenceAggregation(t *testing.T) {
	s, alice, bob, roomID := twoUserRoom(t)
	root := text(t, alice, roomID, "poll-ish")
	ref1 := relMsg(t, bob, roomID, "ref one", root, "m.reference")
	relReact(t, bob, roomID, root, "👍")
	ref2 := relSend(t, alice, roomID, "org.example.vote", map[string]any{
		"m.relates_to": map[string]any{"rel_type": "m.reference", "event_id": root}})
	e := eventOK(t, s, bob.AccessToken, roomID, root)
	b := bundle(e)
	if _, ok := b["m.annotation"]; ok {
		t.Fatalf("annotations are bundled: %v", b)
	}
	raw, _ := json.Marshal(b["m.reference"])
	jsonEqual(t, raw, map[string]any{"chunk": []any{map[string]any{"event_id": ref1}, map[string]any{"event_id": ref2}}})
	if len(b) != 1 {
		t.Fatalf("m.relations = %v, want only m.reference", b)
	}
}
