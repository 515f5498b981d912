package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"matrixhs/storage"
	"matrixhs/tests/testserver"
)

// searchContext is the context of one search result.
type searchContext struct {
	Start        string                       `json:"start"`
	End          string                       `json:"end"`
	EventsBefore []rev                        `json:"events_before"`
	EventsAfter  []rev                        `json:"events_after"`
	ProfileInfo  map[string]map[string]string `json:"profile_info"`
}

type searchGroup struct {
	NextBatch string   `json:"next_batch"`
	Order     int      `json:"order"`
	Results   []string `json:"results"`
}

// searchRes is search_categories.room_events of a /search response.
type searchRes struct {
	Count      int      `json:"count"`
	Highlights []string `json:"highlights"`
	NextBatch  string   `json:"next_batch"`
	Results    []struct {
		Rank    float64        `json:"rank"`
		Result  rev            `json:"result"`
		Context *searchContext `json:"context"`
	} `json:"results"`
	State  map[string][]rev                  `json:"state"`
	Groups map[string]map[string]searchGroup `json:"groups"`
}

func (r searchRes) ids() []string {
	var out []string
	for _, x := range r.Results {
		out = append(out, x.Result.EventID)
	}
	return out
}

func (r searchRes) bodies() []string {
	var out []string
	for _, x := range r.Results {
		out = append(out, x.Result.body())
	}
	return out
}

// searchRaw POSTs /search with room_events criteria and an optional next_batch.
func searchRaw(t *testing.T, s *testserver.Server, token string, crit map[string]any, nextBatch string) *resp {
	t.Helper()
	u := v3(s, "search")
	if nextBatch != "" {
		u += "?next_batch=" + url.QueryEscape(nextBatch)
	}
	return do(t, "POST", u, token, map[string]any{"search_categories": map[string]any{"room_events": crit}})
}

// searchOK runs a search that must succeed.
func searchOK(t *testing.T, s *testserver.Server, token string, crit map[string]any, nextBatch string) searchRes {
	t.Helper()
	r := searchRaw(t, s, token, crit, nextBatch).want(t, http.StatusOK, "")
	var body struct {
		SearchCategories struct {
			RoomEvents *searchRes `json:"room_events"`
		} `json:"search_categories"`
	}
	decodeInto(t, r.Raw, &body)
	if body.SearchCategories.RoomEvents == nil {
		t.Fatalf("no room_events in %s", r.Raw)
	}
	return *body.SearchCategories.RoomEvents
}

func searchFor(term string) map[string]any { return map[string]any{"search_term": term} }

func wantSearchSet(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	g, w := slices.Clone(got), slices.Clone(want)
	sort.Strings(g)
	sort.Strings(w)
	if !slices.Equal(g, w) {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

func searchRoomWithHistory(t *testing.T, s *testserver.Server, token, preset, vis string) id.RoomID {
	t.Helper()
	return mkRoomRaw(t, s, token, map[string]any{"preset": preset,
		"initial_state": []any{map[string]any{"type": "m.room.history_visibility", "state_key": "",
			"content": map[string]any{"history_visibility": vis}}}})
}

// TestSearchVisibility: results come only from rooms the user is or was
// joined to, only from what the room's history visibility lets them see,
// and the count leaks nothing else.
func TestSearchVisibility(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	carol := newUser(t, s, "carol")
	dave := newUser(t, s, "dave")

	shared := searchRoomWithHistory(t, s, alice.AccessToken, "public_chat", "shared")
	one := text(t, alice, shared, "zebra one")
	join(t, bob, shared)
	two := text(t, bob, shared, "zebra two")
	carols := mkRoom(t, carol, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	carolMsg := text(t, carol, carols, "zebra in carol's room")

	joined := searchRoomWithHistory(t, s, alice.AccessToken, "public_chat", "joined")
	text(t, alice, joined, "yak before bob")
	join(t, bob, joined)
	during := text(t, alice, joined, "yak while bob is here")
	if _, err := bob.LeaveRoom(ctxT(t), joined); err != nil {
		t.Fatal(err)
	}
	text(t, alice, joined, "yak after bob left")

	t.Run("joined rooms only", func(t *testing.T) {
		r := searchOK(t, s, bob.AccessToken, searchFor("zebra"), "")
		wantSearchSet(t, "bob's zebra", r.ids(), one, two) // shared: history before joining too
		if r.Count != 2 || !slices.Equal(r.Highlights, []string{"zebra"}) {
			t.Fatalf("count %d highlights %v", r.Count, r.Highlights)
		}
		wantSearchSet(t, "alice's zebra", searchOK(t, s, alice.AccessToken, searchFor("zebra"), "").ids(), one, two)
		wantSearchSet(t, "carol's zebra", searchOK(t, s, carol.AccessToken, searchFor("zebra"), "").ids(), carolMsg)
		r = searchOK(t, s, dave.AccessToken, searchFor("zebra"), "")
		if len(r.Results) != 0 || r.Count != 0 {
			t.Fatalf("a user in no room found %v (count %d)", r.ids(), r.Count)
		}
		// Naming a room one is not in does not let one search it.
		r = searchOK(t, s, bob.AccessToken, map[string]any{"search_term": "zebra", "filter": map[string]any{"rooms": []string{string(carols)}}}, "")
		if len(r.Results) != 0 || r.Count != 0 {
			t.Fatalf("filter naming carol's room found %v", r.ids())
		}
	})

	t.Run("joined visibility and leaving", func(t *testing.T) {
		r := searchOK(t, s, bob.AccessToken, searchFor("yak"), "")
		wantSearchSet(t, "bob's yak", r.ids(), during)
		if r.Count != 1 {
			t.Fatalf("count = %d: it counts messages bob may not see", r.Count)
		}
		if n := len(searchOK(t, s, alice.AccessToken, searchFor("yak"), "").Results); n != 3 {
			t.Fatalf("alice finds %d yaks, want 3", n)
		}
		// Forgetting the room ends searching it.
		do(t, "POST", roomURL(s, joined, "forget"), bob.AccessToken, map[string]any{}).want(t, 200, "")
		if r := searchOK(t, s, bob.AccessToken, searchFor("yak"), ""); len(r.Results) != 0 {
			t.Fatalf("forgotten room still searched: %v", r.bodies())
		}
	})

	t.Run("mautrix client", func(t *testing.T) {
		res, err := bob.Search(ctxT(t), &mautrix.ReqSearch{SearchTerm: "zebra", OrderBy: "recent"})
		if err != nil {
			t.Fatalf("mautrix Search: %v", err)
		}
		if len(res.Results) != 2 || res.Results[0].Event.ID != id.EventID(two) || res.Results[1].Event.ID != id.EventID(one) ||
			res.Results[0].Event.RoomID != shared || res.Count != 2 {
			t.Fatalf("mautrix results: %+v", res)
		}
	})
}

// TestSearchRedactedAndEncrypted: redacted messages and encrypted events
// are never found, nor is anything in a room with encryption enabled.
func TestSearchRedactedAndEncrypted(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	visible := text(t, alice, room, "walrus visible")
	secret := text(t, alice, room, "walrus secret plans")
	if _, err := alice.RedactEvent(ctxT(t), room, id.EventID(secret)); err != nil {
		t.Fatal(err)
	}
	// An encrypted event whose fields happen to hold the word.
	do(t, "PUT", roomURL(s, room, "send", "m.room.encrypted", "e1"), alice.AccessToken, map[string]any{
		"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "walrus", "body": "walrus", "sender_key": "k", "session_id": "s", "device_id": "D",
	}).want(t, 200, "")
	enc := mkRoomRaw(t, s, alice.AccessToken, map[string]any{"preset": "private_chat", "name": "walrus den",
		"initial_state": []any{map[string]any{"type": "m.room.encryption", "state_key": "", "content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}}}})
	text(t, alice, enc, "walrus in plain text in an encrypted room")

	r := searchOK(t, s, alice.AccessToken, searchFor("walrus"), "")
	wantSearchSet(t, "walrus", r.ids(), visible)
	if r.Count != 1 {
		t.Fatalf("count = %d", r.Count)
	}
	if r := searchOK(t, s, alice.AccessToken, searchFor("secret plans"), ""); len(r.Results) != 0 {
		t.Fatalf("redacted message found: %v", r.ids())
	}
	// The redaction took the text out of the index itself (the roomserver's
	// hook), not just out of the answer.
	info, err := s.DB.Room(ctxT(t), string(room))
	if err != nil {
		t.Fatal(err)
	}
	page, err := s.DB.SearchEvents(ctxT(t), storage.SearchQuery{Term: "walrus", Limit: 10,
		Windows: []storage.SearchWindow{{RoomNID: info.NID, From: 0, To: 1 << 62}}})
	if err != nil || len(page.Hits) != 1 || page.Count != 1 {
		t.Fatalf("index holds %+v (%v), want only the visible walrus", page, err)
	}
	// Redacting after a restart (the index is on disk) and searching again.
	s2 := s.Restart()
	alice = withToken(t, s2, string(alice.UserID), alice.AccessToken)
	if _, err := alice.RedactEvent(ctxT(t), room, id.EventID(visible)); err != nil {
		t.Fatal(err)
	}
	if r := searchOK(t, s2, alice.AccessToken, searchFor("walrus"), ""); len(r.Results) != 0 || r.Count != 0 {
		t.Fatalf("after redacting the last walrus: %v", r.ids())
	}
}

// TestSearchOrderAndPagination: rank and recent order; next_batch returns
// every result once, and later messages do not slip into later pages.
func TestSearchOrderAndPagination(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	triple := text(t, alice, room, "apple apple apple")
	long := text(t, alice, room, "an apple in a very long sentence with many other words in it")
	single := text(t, alice, room, "apple")

	rank := searchOK(t, s, alice.AccessToken, searchFor("apple"), "")
	if !slices.Equal(rank.ids(), []string{triple, single, long}) {
		t.Fatalf("rank order = %v, want %v", rank.bodies(), []string{"apple apple apple", "apple", "an apple ..."})
	}
	for i := 1; i < len(rank.Results); i++ {
		if rank.Results[i].Rank > rank.Results[i-1].Rank {
			t.Fatalf("ranks not descending: %v then %v", rank.Results[i-1].Rank, rank.Results[i].Rank)
		}
	}
	recent := searchOK(t, s, alice.AccessToken, map[string]any{"search_term": "apple", "order_by": "recent"}, "")
	if !slices.Equal(recent.ids(), []string{single, long, triple}) {
		t.Fatalf("recent order = %v", recent.bodies())
	}

	for _, order := range []string{"rank", "recent"} {
		word := order + "marker"
		var want []string
		for i := 0; i < 25; i++ {
			want = append(want, text(t, alice, room, fmt.Sprintf("pagination %s %d", word, i)))
		}
		crit := map[string]any{"search_term": word, "order_by": order, "filter": map[string]any{"limit": 10}}
		var got []string
		next, pages := "", 0
		for {
			page := searchOK(t, s, alice.AccessToken, crit, next)
			pages++
			if page.Count != 25 {
				t.Fatalf("%s page %d: count %d", order, pages, page.Count)
			}
			got = append(got, page.ids()...)
			if pages == 1 {
				// Sent after the first page: not part of this search.
				text(t, alice, room, "pagination late "+word)
			}
			if page.NextBatch == "" {
				break
			}
			if pages > 5 {
				t.Fatal("pagination does not end")
			}
			next = page.NextBatch
		}
		if pages != 3 || len(got) != 25 {
			t.Fatalf("%s: %d pages, %d results", order, pages, len(got))
		}
		wantSearchSet(t, order+" pages", got, want...)
		if order == "recent" && !slices.Equal(got, reversed(want)) {
			t.Fatal("recent pages are not newest first")
		}
		// A token only continues the search it came from.
		first := searchOK(t, s, alice.AccessToken, crit, "")
		other := map[string]any{"search_term": word, "order_by": map[string]string{"rank": "recent", "recent": "rank"}[order]}
		searchRaw(t, s, alice.AccessToken, other, first.NextBatch).want(t, http.StatusBadRequest, "M_INVALID_PARAM")
	}
	searchRaw(t, s, alice.AccessToken, searchFor("marker"), "not-a-token").want(t, http.StatusBadRequest, "M_INVALID_PARAM")
}

// TestSearchGroupings: results grouped by room and by sender, and a group's
// next_batch continues within the group.
func TestSearchGroupings(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	roomA := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	roomB := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	join(t, bob, roomA)
	join(t, bob, roomB)
	a1 := text(t, alice, roomA, "grouped otter 1")
	a2 := text(t, bob, roomA, "grouped otter 2")
	a3 := text(t, alice, roomA, "grouped otter 3")
	b1 := text(t, alice, roomB, "grouped otter 4")

	crit := map[string]any{"search_term": "otter", "order_by": "recent",
		"groupings": map[string]any{"group_by": []any{map[string]any{"key": "room_id"}, map[string]any{"key": "sender"}}}}
	r := searchOK(t, s, alice.AccessToken, crit, "")
	rooms, senders := r.Groups["room_id"], r.Groups["sender"]
	if len(rooms) != 2 || len(senders) != 2 {
		t.Fatalf("groups = %+v", r.Groups)
	}
	if g := rooms[string(roomA)]; !slices.Equal(g.Results, []string{a3, a2, a1}) || g.NextBatch != "" || g.Order != 2 {
		t.Fatalf("room A group = %+v", g)
	}
	if g := rooms[string(roomB)]; !slices.Equal(g.Results, []string{b1}) || g.Order != 1 {
		t.Fatalf("room B group = %+v", g)
	}
	if g := senders[string(alice.UserID)]; !slices.Equal(g.Results, []string{b1, a3, a1}) {
		t.Fatalf("alice's group = %+v", g)
	}
	if g := senders[string(bob.UserID)]; !slices.Equal(g.Results, []string{a2}) {
		t.Fatalf("bob's group = %+v", g)
	}

	// One result per page: groups with more get a next_batch that stays in the group.
	crit["filter"] = map[string]any{"limit": 1}
	r = searchOK(t, s, alice.AccessToken, crit, "")
	if !slices.Equal(r.ids(), []string{b1}) || r.NextBatch == "" {
		t.Fatalf("first page = %v next %q", r.ids(), r.NextBatch)
	}
	if g := r.Groups["room_id"][string(roomB)]; g.NextBatch != "" {
		t.Fatalf("room B has no more results but a next_batch")
	}
	aliceGroup := r.Groups["sender"][string(alice.UserID)]
	if aliceGroup.NextBatch == "" {
		t.Fatalf("alice's group has more results but no next_batch: %+v", aliceGroup)
	}
	var got []string
	next := aliceGroup.NextBatch
	for next != "" {
		page := searchOK(t, s, alice.AccessToken, crit, next)
		got = append(got, page.ids()...)
		next = page.NextBatch
		if len(got) > 5 {
			t.Fatal("group pagination does not end")
		}
	}
	if !slices.Equal(got, []string{a3, a1}) {
		t.Fatalf("alice's group, paginated: %v, want %v", got, []string{a3, a1})
	}
	searchRaw(t, s, alice.AccessToken, map[string]any{"search_term": "otter",
		"groupings": map[string]any{"group_by": []any{map[string]any{"key": "type"}}}}, "").want(t, http.StatusBadRequest, "M_INVALID_PARAM")
}

// TestSearchContextAndProfile: event_context returns the events around a
// result and the senders' profiles; include_state the rooms' state.
func TestSearchContextAndProfile(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	if err := alice.SetDisplayName(ctxT(t), "Alice Liddell"); err != nil {
		t.Fatal(err)
	}
	if err := bob.SetDisplayName(ctxT(t), "Bob Builder"); err != nil {
		t.Fatal(err)
	}
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Context room"})
	join(t, bob, room)
	first := text(t, bob, room, "before the fruit")
	hit := text(t, alice, room, "a kiwi in context")
	after1 := text(t, bob, room, "after the fruit")
	text(t, alice, room, "later still")

	r := searchOK(t, s, bob.AccessToken, map[string]any{"search_term": "kiwi",
		"event_context": map[string]any{"before_limit": 1, "after_limit": 1, "include_profile": true}, "include_state": true}, "")
	if len(r.Results) != 1 || r.Results[0].Result.EventID != hit || r.Results[0].Context == nil {
		t.Fatalf("results = %+v", r.Results)
	}
	c := r.Results[0].Context
	if len(c.EventsBefore) != 1 || c.EventsBefore[0].EventID != first || len(c.EventsAfter) != 1 || c.EventsAfter[0].EventID != after1 {
		t.Fatalf("context = before %v after %v", eventIDs(c.EventsBefore), eventIDs(c.EventsAfter))
	}
	if c.Start == "" || c.End == "" {
		t.Fatalf("context tokens: %+v", c)
	}
	if c.ProfileInfo[string(alice.UserID)]["displayname"] != "Alice Liddell" || c.ProfileInfo[string(bob.UserID)]["displayname"] != "Bob Builder" {
		t.Fatalf("profile_info = %v", c.ProfileInfo)
	}
	// The context pages like /context: its tokens work with /messages.
	page := messages(t, s, bob.AccessToken, room, url.Values{"from": {c.End}, "dir": {"f"}, "limit": {"5"}})
	if got := messageBodies(page.Chunk); !slices.Equal(got, []string{"later still"}) {
		t.Fatalf("/messages from the context's end token: %v", got)
	}
	st := r.State[string(room)]
	if len(st) == 0 || stateEvent(t, st, "m.room.name", "").Content["name"] != "Context room" {
		t.Fatalf("state = %v", st)
	}

	// Without event_context: no context; defaults are 5 and 5.
	r = searchOK(t, s, bob.AccessToken, searchFor("kiwi"), "")
	if r.Results[0].Context != nil || r.State != nil {
		t.Fatalf("context or state without asking: %+v", r.Results[0])
	}
	r = searchOK(t, s, bob.AccessToken, map[string]any{"search_term": "kiwi", "event_context": map[string]any{}}, "")
	if c := r.Results[0].Context; c == nil || len(c.EventsAfter) != 2 || len(c.EventsBefore) == 0 || c.ProfileInfo != nil {
		t.Fatalf("default context = %+v", c)
	}
}

// TestSearchKeysAndFilters: keys choose name, topic and body; the filter's
// rooms, not_rooms, types and senders narrow the results; bad requests.
func TestSearchKeysAndFilters(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	bob := newUser(t, s, "bob")
	roomA := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "Astronomy club", Topic: "stars and galaxies"})
	roomB := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	join(t, bob, roomA)
	inA := text(t, alice, roomA, "astronomy chat")
	byBob := text(t, bob, roomA, "astronomy from bob")
	inB := text(t, alice, roomB, "astronomy elsewhere")
	nameEvent := stateEvent(t, fullState(t, s, alice.AccessToken, roomA), "m.room.name", "").EventID
	topicEvent := stateEvent(t, fullState(t, s, alice.AccessToken, roomA), "m.room.topic", "").EventID

	search := func(crit map[string]any) []string {
		t.Helper()
		return searchOK(t, s, alice.AccessToken, crit, "").ids()
	}
	wantSearchSet(t, "all keys", search(searchFor("astronomy")), nameEvent, inA, byBob, inB)
	wantSearchSet(t, "content.name", search(map[string]any{"search_term": "astronomy", "keys": []string{"content.name"}}), nameEvent)
	wantSearchSet(t, "content.body", search(map[string]any{"search_term": "astronomy", "keys": []string{"content.body"}}), inA, byBob, inB)
	wantSearchSet(t, "content.topic", search(map[string]any{"search_term": "galaxies", "keys": []string{"content.topic"}}), topicEvent)
	wantSearchSet(t, "topic not in names", search(map[string]any{"search_term": "galaxies", "keys": []string{"content.name"}}))
	filtered := func(f map[string]any) []string {
		t.Helper()
		return search(map[string]any{"search_term": "astronomy", "filter": f})
	}
	wantSearchSet(t, "rooms", filtered(map[string]any{"rooms": []string{string(roomB)}}), inB)
	wantSearchSet(t, "not_rooms", filtered(map[string]any{"not_rooms": []string{string(roomB)}}), nameEvent, inA, byBob)
	wantSearchSet(t, "types", filtered(map[string]any{"types": []string{"m.room.message"}}), inA, byBob, inB)
	wantSearchSet(t, "not_types", filtered(map[string]any{"not_types": []string{"m.room.mess*"}}), nameEvent)
	wantSearchSet(t, "senders", filtered(map[string]any{"senders": []string{string(bob.UserID)}}), byBob)
	wantSearchSet(t, "not_senders", filtered(map[string]any{"not_senders": []string{string(alice.UserID)}}), byBob)
	// Phrases, exclusions, OR and prefixes.
	wantSearchSet(t, "phrase", search(searchFor(`"astronomy from"`)), byBob)
	wantSearchSet(t, "exclusion", search(searchFor("astronomy -chat -elsewhere -bob")), nameEvent)
	wantSearchSet(t, "or", search(searchFor("chat OR elsewhere")), inA, inB)
	wantSearchSet(t, "prefix", search(searchFor("astro elsew")), inB)

	// Bad requests.
	bad := func(body any, code string) {
		t.Helper()
		do(t, "POST", v3(s, "search"), alice.AccessToken, body).want(t, http.StatusBadRequest, code)
	}
	bad(map[string]any{}, "M_MISSING_PARAM")
	bad(map[string]any{"search_categories": map[string]any{"room_events": map[string]any{}}}, "M_MISSING_PARAM")
	bad(map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": "x", "keys": []string{"content.url"}}}}, "M_INVALID_PARAM")
	bad(map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": "x", "order_by": "oldest"}}}, "M_INVALID_PARAM")
	bad(map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": 5}}}, "M_BAD_JSON")
	do(t, "POST", v3(s, "search"), "", map[string]any{"search_categories": map[string]any{}}).want(t, http.StatusUnauthorized, "M_MISSING_TOKEN")
	// No category, or nothing to search for: an empty answer.
	r := do(t, "POST", v3(s, "search"), alice.AccessToken, map[string]any{"search_categories": map[string]any{}}).want(t, 200, "")
	if cats, _ := r.Body["search_categories"].(map[string]any); cats == nil || len(cats) != 0 {
		t.Fatalf("no categories: %s", r.Raw)
	}
	if res := searchOK(t, s, alice.AccessToken, searchFor(`"" -- ?!`), ""); len(res.Results) != 0 || res.Count != 0 {
		t.Fatalf("an empty term found %v", res.ids())
	}
	// mautrix's filter type (rooms, types) reaches the server intact.
	res, err := alice.Search(ctxT(t), &mautrix.ReqSearch{SearchTerm: "astronomy",
		Filter: &mautrix.FilterPart{Rooms: []id.RoomID{roomA}, Types: []event.Type{event.EventMessage}}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, x := range res.Results {
		ids = append(ids, string(x.Event.ID))
	}
	wantSearchSet(t, "mautrix filter", ids, inA, byBob)
}

// A full page carries a next_batch even when it holds the last results (as
// Synapse does); the page after it is empty and has none.
func TestSearchFullPageHasNextBatch(t *testing.T) {
	s := start(t, nil)
	alice := newUser(t, s, "alice")
	room := mkRoom(t, alice, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	var sent []string
	for i := 0; i < 20; i++ {
		sent = append(sent, text(t, alice, room, fmt.Sprintf("Message number %d", i)))
	}
	crit := map[string]any{"keys": []string{"content.body"}, "search_term": "Message", "order_by": "recent",
		"filter": map[string]any{"limit": 10, "rooms": []string{string(room)}}}
	first := searchOK(t, s, alice.AccessToken, crit, "")
	if first.Count != 20 || !slices.Equal(first.ids(), reversed(sent[10:])) || first.NextBatch == "" {
		t.Fatalf("first page: count %d, %v, next %q", first.Count, first.bodies(), first.NextBatch)
	}
	second := searchOK(t, s, alice.AccessToken, crit, first.NextBatch)
	if !slices.Equal(second.ids(), reversed(sent[:10])) || second.NextBatch == "" {
		t.Fatalf("second (full, last) page: %v, next %q", second.bodies(), second.NextBatch)
	}
	third := searchOK(t, s, alice.AccessToken, crit, second.NextBatch)
	if third.Count != 20 || len(third.Results) != 0 || third.NextBatch != "" {
		t.Fatalf("third page: count %d, %v, next %q", third.Count, third.bodies(), third.NextBatch)
	}
	// One result asked for, one found: still a next_batch.
	crit["search_term"], crit["filter"] = "number 4", map[string]any{"limit": 1, "rooms": []string{string(room)}}
	if one := searchOK(t, s, alice.AccessToken, crit, ""); len(one.Results) != 1 || one.NextBatch == "" {
		t.Fatalf("single full page: %v, next %q", one.bodies(), one.NextBatch)
	}
}
