package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// searchFixture stores events the way the roomserver does: the event and,
// in the same write, its search text.
type searchFixture struct {
	t     *testing.T
	db    *DB
	rooms map[string]int64
	nids  map[string]int64
	pos   map[string]int64
}

func newSearchFixture(t *testing.T) *searchFixture {
	db, _ := openTestDB(t)
	return &searchFixture{t: t, db: db, rooms: map[string]int64{}, nids: map[string]int64{}, pos: map[string]int64{}}
}

func (f *searchFixture) room(tx *Tx, room string) int64 {
	nid, ok := f.rooms[room]
	if !ok {
		var err error
		if nid, err = tx.InsertRoom(context.Background(), room, "10", 0); err != nil {
			f.t.Fatal(err)
		}
		f.rooms[room] = nid
	}
	return nid
}

// add stores an accepted event; stateKey nil for timeline-only events.
func (f *searchFixture) add(room, eventID, typ, sender string, stateKey *string, content map[string]any, redacts string) {
	f.t.Helper()
	raw, _ := json.Marshal(content)
	ev := map[string]any{"type": typ, "sender": sender, "content": content}
	if stateKey != nil {
		ev["state_key"] = *stateKey
	}
	full, _ := json.Marshal(ev)
	ctx := context.Background()
	mustWrite(f.t, f.db, func(tx *Tx) error {
		rnid := f.room(tx, room)
		nid, pos, err := tx.InsertEvent(ctx, NewEvent{RoomNID: rnid, EventID: eventID, Type: typ, StateKey: stateKey, Sender: sender, JSON: full})
		if err != nil {
			return err
		}
		f.nids[eventID], f.pos[eventID] = nid, pos
		if stateKey != nil {
			var membership string
			if typ == "m.room.member" {
				membership, _ = content["membership"].(string)
			}
			if err := tx.SetCurrentState(ctx, rnid, StateKey{Type: typ, StateKey: *stateKey}, nid, membership, pos); err != nil {
				return err
			}
		}
		if err := tx.IndexEventText(ctx, nid, rnid, typ, raw, redacts); err != nil {
			return err
		}
		if redacts != "" {
			if tnid, ok := f.nids[redacts]; ok {
				return tx.RedactEvent(ctx, tnid, eventID, []byte(`{"type":"m.room.message","content":{}}`))
			}
		}
		return nil
	})
}

func (f *searchFixture) msg(room, eventID, sender, body string) {
	f.add(room, eventID, "m.room.message", sender, nil, map[string]any{"msgtype": "m.text", "body": body}, "")
}

func (f *searchFixture) member(room, userID, membership string) {
	f.add(room, fmt.Sprintf("$m%d", len(f.nids)), "m.room.member", userID, &userID, map[string]any{"membership": membership}, "")
}

// all is a window over every position of the rooms (wholly visible rooms).
func (f *searchFixture) all(rooms ...string) []SearchWindow {
	var out []SearchWindow
	for _, r := range rooms {
		out = append(out, SearchWindow{RoomNID: f.rooms[r], From: 0, To: 1 << 62})
	}
	return out
}

// ids runs a query and returns the event IDs of the hits, in order.
func (f *searchFixture) ids(q SearchQuery) ([]string, *SearchPage) {
	f.t.Helper()
	if q.Limit == 0 {
		q.Limit = 100
	}
	page, err := f.db.SearchEvents(context.Background(), q)
	if err != nil {
		f.t.Fatalf("search %q: %v", q.Term, err)
	}
	byNID := map[int64]string{}
	for id, nid := range f.nids {
		byNID[nid] = id
	}
	var out []string
	for _, h := range page.Hits {
		out = append(out, byNID[h.EventNID])
	}
	return out, page
}

// indexed reports whether the event is in the index; its FTS5 row and its
// event_search_docs row come and go together.
func (f *searchFixture) indexed(eventID string) bool {
	var fts, docs int
	index := `SELECT COUNT(*) FROM event_search_docsize WHERE id = $1`
	if f.db.dialect == dialectPostgres {
		index = `SELECT COUNT(*) FROM event_search WHERE event_nid = $1`
	}
	err := f.db.q().QueryRowContext(context.Background(), `SELECT (`+index+`),
		(SELECT COUNT(*) FROM event_search_docs WHERE event_nid = $1)`, f.nids[eventID]).Scan(&fts, &docs)
	if err != nil {
		f.t.Fatal(err)
	}
	if fts != docs {
		f.t.Fatalf("%s: %d FTS rows, %d docs rows", eventID, fts, docs)
	}
	return fts > 0
}

func wantSearchIDs(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

func sortedIDs(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

func TestSearchFTSMatchQuotesUserInput(t *testing.T) {
	cases := []struct {
		term  string
		types []string
		expr  string
		words []string
	}{
		{"hello", nil, `("hello"*)`, []string{"hello"}},
		{"Martians and men", nil, `("Martians"* AND "and"* AND "men"*)`, []string{"Martians", "and", "men"}},
		{`"exact phrase" x`, nil, `("exact phrase" AND "x"*)`, []string{"exact", "phrase", "x"}},
		{"cats -dogs", nil, `("cats"*) NOT "dogs"*`, []string{"cats"}},
		{"cats OR dogs", nil, `("cats"* OR "dogs"*)`, []string{"cats", "dogs"}},
		{"or", nil, `("or"*)`, []string{"or"}},
		{"e-mail", nil, `("e mail"*)`, []string{"e", "mail"}},
		// FTS5 syntax in user text is only ever text.
		{`NEAR(a b) col:x "unterminated`, nil, `("NEAR a"* AND "b"* AND "col x"* AND "unterminated")`, []string{"NEAR", "a", "b", "col", "x", "unterminated"}},
		{`a"b*c^d{e}`, nil, `("a b c d e"*)`, []string{"a", "b", "c", "d", "e"}},
		{"-only", nil, "", nil},
		{"  !!! ", nil, "", nil},
		{"x", []string{"m.room.name"}, `{name} : (("x"*))`, []string{"x"}},
		{"x", []string{"m.room.topic", "m.room.message"}, `{body topic} : (("x"*))`, []string{"x"}},
		{"x", SearchableTypes, `("x"*)`, []string{"x"}},
		{"x", []string{}, "", nil},
		{"café Ünïcode", nil, `("café"* AND "Ünïcode"*)`, []string{"café", "Ünïcode"}},
	}
	for _, c := range cases {
		parts, words := parseSearchTerm(c.term)
		expr := ftsMatch(parts, c.types)
		if expr == "" {
			words = nil
		}
		if expr != c.expr || !slices.Equal(words, c.words) {
			t.Errorf("ftsMatch(%q, %v) = %q %q, want %q %q", c.term, c.types, expr, words, c.expr, c.words)
		}
	}
}

// The same terms as PostgreSQL tsquery texts: every word a quoted lexeme
// of letters and digits (diacritics removed), weights for the columns.
func TestSearchTSQueryQuotesUserInput(t *testing.T) {
	for _, c := range []struct {
		term  string
		types []string
		expr  string
	}{
		{"hello", nil, `(('hello':*))`},
		{"Martians and men", nil, `(('Martians':*) & ('and':*) & ('men':*))`},
		{`"exact phrase" x`, nil, `(('exact' <-> 'phrase') & ('x':*))`},
		{"cats -dogs", nil, `(('cats':*)) & !('dogs':*)`},
		{"cats OR dogs", nil, `(('cats':*) | ('dogs':*))`},
		{"e-mail", nil, `(('e' <-> 'mail':*))`},
		{`'; DROP TABLE x; -- "a`, nil, `(('DROP':*) & ('TABLE':*) & ('x':*) & ('a'))`},
		{"-only", nil, ""},
		{"x", []string{"m.room.name"}, `(('x':*B))`},
		{`"a b" c`, []string{"m.room.topic", "m.room.message"}, `(('a':AC <-> 'b':AC) & ('c':*AC))`},
		{"x", SearchableTypes, `(('x':*))`},
		{"x", []string{}, ""},
		{"café Ünïcode", nil, `(('cafe':*) & ('Unicode':*))`},
	} {
		parts, _ := parseSearchTerm(c.term)
		if got := tsQuery(parts, c.types); got != c.expr {
			t.Errorf("tsQuery(%q, %v) = %q, want %q", c.term, c.types, got, c.expr)
		}
	}
}

func TestSearchFTSMatchNeverFailsOnHostileInput(t *testing.T) {
	f := newSearchFixture(t)
	f.msg("!r", "$1", "@a:x", "hello world")
	for _, term := range []string{`"`, `""`, `*`, `-`, `- -`, `OR`, `a OR`, `OR a`, `a OR OR b`, `(`, `)`, `:`, `{body}:x`,
		`^hello`, `hello*`, `"hello" NOT`, `NOT hello`, `AND`, `a AND b`, `NEAR("a" "b", 2)`, "\x00hello", `rank:1`, `'; DROP TABLE events; --`} {
		_, err := f.db.SearchEvents(context.Background(), SearchQuery{Term: term, Windows: f.all("!r"), Limit: 10})
		if err != nil && err != ErrEmptySearch {
			t.Errorf("term %q: %v", term, err)
		}
	}
	if got, _ := f.ids(SearchQuery{Term: `hello*"`, Windows: f.all("!r")}); len(got) != 1 {
		t.Fatalf("hostile-looking term with a real word found %v", got)
	}
}

func TestSearchEventsMatchingAndWindows(t *testing.T) {
	f := newSearchFixture(t)
	empty := ""
	f.msg("!a", "$a1", "@alice:x", "The quick brown fox")
	f.msg("!a", "$a2", "@bob:x", "a lazy dog")
	f.msg("!b", "$b1", "@carol:x", "another fox, in room b")
	f.add("!a", "$name", "m.room.name", "@alice:x", &empty, map[string]any{"name": "Fox den"}, "")
	f.add("!a", "$topic", "m.room.topic", "@alice:x", &empty, map[string]any{"topic": "all about foxes",
		"m.topic": map[string]any{"m.text": []any{map[string]any{"mimetype": "text/html", "body": "<b>html</b>"},
			map[string]any{"body": "plain vixen"}}}}, "")
	f.add("!a", "$enc", "m.room.encrypted", "@alice:x", nil, map[string]any{"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "fox", "body": "fox"}, "")
	f.add("!a", "$notice", "m.room.message", "@alice:x", nil, map[string]any{"msgtype": "m.image", "body": "fox.png", "url": "mxc://x/fox"}, "")

	got, page := f.ids(SearchQuery{Term: "fox", Windows: f.all("!a", "!b"), Recent: true})
	wantSearchIDs(t, "fox, recent", got, "$notice", "$topic", "$name", "$b1", "$a1")
	if page.Count != 5 || page.More || !slices.Equal(page.Highlights, []string{"fox"}) {
		t.Fatalf("page = count %d more %v highlights %v", page.Count, page.More, page.Highlights)
	}
	if f.indexed("$enc") {
		t.Fatal("an encrypted event was indexed")
	}
	// Only the rooms (and positions) of the windows.
	got, _ = f.ids(SearchQuery{Term: "fox", Windows: f.all("!b")})
	wantSearchIDs(t, "room b only", got, "$b1")
	got, _ = f.ids(SearchQuery{Term: "fox", Windows: []SearchWindow{{RoomNID: f.rooms["!a"], From: f.pos["$name"], To: f.pos["$topic"]}}, Recent: true})
	wantSearchIDs(t, "window", got, "$topic", "$name")
	got, _ = f.ids(SearchQuery{Term: "fox"})
	wantSearchIDs(t, "no windows", got)
	// Wholly and partly visible rooms together, and the last position searched.
	mixed := append(f.all("!b"), SearchWindow{RoomNID: f.rooms["!a"], From: 0, To: f.pos["$a2"]},
		SearchWindow{RoomNID: f.rooms["!a"], From: f.pos["$topic"], To: f.pos["$enc"]})
	got, _ = f.ids(SearchQuery{Term: "fox", Windows: mixed, Recent: true})
	wantSearchIDs(t, "mixed windows", got, "$topic", "$b1", "$a1")
	got, _ = f.ids(SearchQuery{Term: "fox", Windows: mixed, UpTo: f.pos["$b1"] - 1, Recent: true})
	wantSearchIDs(t, "up to", got, "$a1")
	got, _ = f.ids(SearchQuery{Term: "fox", Windows: f.all("!a", "!b"), UpTo: f.pos["$name"], Recent: true})
	wantSearchIDs(t, "up to, whole rooms", got, "$name", "$b1", "$a1")
	// Types choose the columns: names, topics (with m.topic text/plain), bodies.
	got, _ = f.ids(SearchQuery{Term: "fox", Types: []string{"m.room.name"}, Windows: f.all("!a", "!b")})
	wantSearchIDs(t, "names", got, "$name")
	got, _ = f.ids(SearchQuery{Term: "vixen", Windows: f.all("!a")})
	wantSearchIDs(t, "m.topic plain text", got, "$topic")
	got, _ = f.ids(SearchQuery{Term: "html", Windows: f.all("!a")})
	wantSearchIDs(t, "m.topic html", got)
	got, _ = f.ids(SearchQuery{Term: "fox", Types: []string{"m.room.message"}, Windows: f.all("!a", "!b"), Recent: true})
	wantSearchIDs(t, "bodies", got, "$notice", "$b1", "$a1")
	// Prefixes, phrases, exclusions, OR, diacritics and case.
	for term, want := range map[string][]string{
		"QUI":                  {"$a1"},
		"quick fox":            {"$a1"},
		`"quick fox"`:          nil,
		`"quick brown"`:        {"$a1"},
		"fox -quick -vixen":    {"$notice", "$name", "$b1"},
		"lazy OR quick":        {"$a2", "$a1"},
		"dög":                  {"$a2"},
		"brown fox OR nomatch": {"$a1"},
	} {
		got, _ := f.ids(SearchQuery{Term: term, Windows: f.all("!a", "!b"), Recent: true})
		wantSearchIDs(t, term, got, want...)
	}
	// Senders and contains_url.
	got, _ = f.ids(SearchQuery{Term: "fox", Windows: f.all("!a", "!b"), Senders: []string{"@carol:x"}})
	wantSearchIDs(t, "senders", got, "$b1")
	got, _ = f.ids(SearchQuery{Term: "fox", Windows: f.all("!a", "!b"), Senders: []string{}})
	wantSearchIDs(t, "no senders", got)
	got, _ = f.ids(SearchQuery{Term: "fox", Windows: f.all("!a", "!b"), NotSenders: []string{"@alice:x"}})
	wantSearchIDs(t, "not senders", got, "$b1")
	yes, no := true, false
	got, _ = f.ids(SearchQuery{Term: "fox", Windows: f.all("!a", "!b"), ContainsURL: &yes})
	wantSearchIDs(t, "contains_url", got, "$notice")
	got, _ = f.ids(SearchQuery{Term: "fox", Types: []string{"m.room.message"}, Windows: f.all("!a", "!b"), ContainsURL: &no, Recent: true})
	wantSearchIDs(t, "no url", got, "$b1", "$a1")
	if _, err := f.db.SearchEvents(context.Background(), SearchQuery{Term: "  ", Windows: f.all("!a")}); err != ErrEmptySearch {
		t.Fatalf("empty term: %v", err)
	}
}

func TestSearchRedactionUnindexes(t *testing.T) {
	f := newSearchFixture(t)
	f.msg("!a", "$1", "@a:x", "secret plans")
	f.msg("!b", "$2", "@a:x", "secret elsewhere")
	if !f.indexed("$1") {
		t.Fatal("message not indexed")
	}
	// A redaction in another room does not touch the event.
	f.add("!b", "$r0", "m.room.redaction", "@a:x", nil, map[string]any{}, "$1x")
	f.add("!b", "$r1", "m.room.redaction", "@a:x", nil, map[string]any{"redacts": "$1"}, "")
	if !f.indexed("$1") {
		t.Fatal("an event of another room was unindexed")
	}
	f.add("!a", "$r2", "m.room.redaction", "@a:x", nil, map[string]any{}, "$1")
	if f.indexed("$1") {
		t.Fatal("redacted event still indexed")
	}
	got, _ := f.ids(SearchQuery{Term: "secret", Windows: f.all("!a", "!b")})
	wantSearchIDs(t, "after redaction", got, "$2")
	if !f.indexed("$2") || f.indexed("$r2") {
		t.Fatal("index rows of other events changed")
	}
}

func TestSearchOrderAndPagination(t *testing.T) {
	f := newSearchFixture(t)
	f.msg("!a", "$triple", "@a:x", "apple apple apple")
	f.msg("!a", "$long", "@a:x", "an apple in a very long sentence with many other words in it")
	f.msg("!b", "$single", "@b:x", "apple")
	for i := 0; i < 20; i++ {
		f.msg("!a", fmt.Sprintf("$filler%d", i), "@a:x", fmt.Sprintf("banana number %d", i))
	}
	got, page := f.ids(SearchQuery{Term: "apple", Windows: f.all("!a", "!b")})
	wantSearchIDs(t, "rank", got, "$triple", "$single", "$long")
	for i := 1; i < len(page.Hits); i++ {
		if page.Hits[i].Rank > page.Hits[i-1].Rank {
			t.Fatalf("ranks not descending: %+v", page.Hits)
		}
	}
	got, recent := f.ids(SearchQuery{Term: "apple", Windows: f.all("!a", "!b"), Recent: true})
	wantSearchIDs(t, "recent", got, "$single", "$long", "$triple")
	// By recency, results carry the same ranks.
	ranks := map[int64]float64{}
	for _, h := range page.Hits {
		ranks[h.EventNID] = h.Rank
	}
	for _, h := range recent.Hits {
		if h.Rank != ranks[h.EventNID] || h.Rank <= 0 {
			t.Fatalf("rank by recency %v, by rank %v", h.Rank, ranks[h.EventNID])
		}
	}

	upTo := f.db.StreamPosition()
	for _, recent := range []bool{false, true} {
		var all []string
		var after *SearchCursor
		pages := 0
		for {
			ids, page := f.ids(SearchQuery{Term: "banana", Windows: f.all("!a", "!b"), UpTo: upTo, Recent: recent, After: after, Limit: 6})
			pages++
			if page.Count != 20 {
				t.Fatalf("count = %d on page %d", page.Count, pages)
			}
			all = append(all, ids...)
			if !page.More {
				break
			}
			after = &page.Next
			// The index grows between pages (bm25 scores all shift); the
			// search goes on up to where it started.
			f.msg("!a", fmt.Sprintf("$late%v%d", recent, pages), "@a:x", "banana banana late")
			if pages > 10 {
				t.Fatal("pagination does not end")
			}
		}
		if pages != 4 || len(all) != 20 || len(sortedIDs(all)) != len(slices.Compact(sortedIDs(all))) {
			t.Fatalf("recent=%v: %d pages, %d results: %v", recent, pages, len(all), all)
		}
		// Past the end: no hits, still the count.
		_, page := f.ids(SearchQuery{Term: "banana", Windows: f.all("!a"), UpTo: upTo, Recent: recent, After: &SearchCursor{Offset: 50, Pos: 1}})
		if len(page.Hits) != 0 || page.Count != 20 || page.More {
			t.Fatalf("past the end: %+v", page)
		}
	}
	// Groups: whether each room and sender goes on after the page, and
	// where a search restricted to the group continues.
	for _, recent := range []bool{false, true} {
		ids, page := f.ids(SearchQuery{Term: "apple", Windows: f.all("!a", "!b"), Limit: 1, Groups: true, Recent: recent})
		first, other := "$triple", "$long"
		if recent {
			first, other = "$single", "$long"
		}
		wantSearchIDs(t, "first of apple", ids, first)
		if !page.More || len(page.Rooms) != 1 || len(page.Senders) != 1 {
			t.Fatalf("groups: %+v", page)
		}
		if recent {
			if g := page.Rooms[f.rooms["!b"]]; g.More {
				t.Fatalf("room b's group: %+v", g)
			}
			continue
		}
		g := page.Rooms[f.rooms["!a"]]
		if !g.More || page.Senders["@a:x"] != g {
			t.Fatalf("room a's group %+v, sender's %+v", g, page.Senders["@a:x"])
		}
		ids, page = f.ids(SearchQuery{Term: "apple", Windows: f.all("!a"), Limit: 5, Groups: true, After: &g.Next})
		wantSearchIDs(t, "rest of room a", ids, other)
		if page.More || page.Rooms[f.rooms["!a"]].More {
			t.Fatalf("room a after its last result: %+v", page)
		}
	}
	if _, page := f.ids(SearchQuery{Term: "apple", Windows: f.all("!a", "!b"), Limit: 1}); page.Rooms != nil {
		t.Fatal("groups without asking")
	}
}

func TestSearchRoomsAndMarks(t *testing.T) {
	f := newSearchFixture(t)
	empty := ""
	f.member("!a", "@u:x", "join")
	f.msg("!a", "$1", "@u:x", "hi")
	f.add("!a", "$hv", "m.room.history_visibility", "@u:x", &empty, map[string]any{"history_visibility": "joined"}, "")
	f.member("!a", "@u:x", "leave")
	f.member("!b", "@u:x", "invite") // never joined: not searchable
	f.member("!c", "@other:x", "join")
	f.add("!c", "$enc", "m.room.encryption", "@other:x", &empty, map[string]any{"algorithm": "m.megolm.v1.aes-sha2"}, "")
	f.member("!c", "@u:x", "join")
	rooms, err := f.db.SearchRooms(context.Background(), "@u:x")
	if err != nil {
		t.Fatal(err)
	}
	if len(rooms) != 2 || rooms[0].ID != "!a" || rooms[1].ID != "!c" || rooms[0].Encrypted || !rooms[1].Encrypted {
		t.Fatalf("rooms = %+v", rooms)
	}
	if len(rooms[0].Marks) != 3 || rooms[0].Marks[1] != f.pos["$hv"] || !slices.IsSorted(rooms[0].Marks) {
		t.Fatalf("marks of !a = %v (hv at %d)", rooms[0].Marks, f.pos["$hv"])
	}
	if rooms, _ := f.db.SearchRooms(context.Background(), "@nobody:x"); len(rooms) != 0 {
		t.Fatalf("rooms of a stranger: %+v", rooms)
	}
}

// TestSearchMigrationBackfills simulates an upgrade: events stored before
// migration 0010 become searchable when it runs.
func TestSearchMigrationBackfills(t *testing.T) {
	sqliteOnly(t, "upgrades a database of an older schema; no PostgreSQL database predates the port")
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "up.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	empty := ""
	var room int64
	mustWrite(t, db, func(tx *Tx) error {
		if room, err = tx.InsertRoom(ctx, "!old", "10", 0); err != nil {
			return err
		}
		for i, e := range []struct {
			id, typ string
			sk      *string
			content string
			status  int
		}{
			{"$m", "m.room.message", nil, `{"body":"ancient scroll"}`, EventAccepted},
			{"$n", "m.room.name", &empty, `{"name":"Ancient library"}`, EventAccepted},
			{"$t", "m.room.topic", &empty, `{"topic":"ancient texts"}`, EventAccepted},
			{"$e", "m.room.encrypted", nil, `{"ciphertext":"ancient"}`, EventAccepted},
			{"$x", "m.room.message", nil, `{"body":42}`, EventAccepted},
			{"$o", "m.room.message", nil, `{"body":"ancient outlier"}`, EventOutlier},
			{"$s", "m.room.message", nil, `{"body":"ancient soft-failed"}`, EventSoftFailed},
			{"$r", "m.room.message", nil, `{"body":"ancient redacted"}`, EventAccepted},
			{"$u", "m.room.message", nil, `{"body":"ancient map","url":"mxc://x/map"}`, EventAccepted},
		} {
			js := fmt.Sprintf(`{"type":%q,"content":%s}`, e.typ, e.content)
			nid, _, err := tx.InsertEvent(ctx, NewEvent{RoomNID: room, EventID: e.id, Type: e.typ, StateKey: e.sk, Sender: "@a:x",
				Depth: int64(i), Status: e.status, JSON: []byte(js)})
			if err != nil {
				return err
			}
			if e.id == "$r" {
				if err := tx.RedactEvent(ctx, nid, "$red", []byte(`{}`)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	// Undo migration 0010 as if the database predated it.
	for _, q := range []string{`DROP TABLE event_search`, `DROP TABLE event_search_docs`, `DELETE FROM schema_migrations WHERE version = 10`} {
		if _, err := db.wconn.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	db, err = Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen (migration 0010): %v", err)
	}
	defer db.Close()
	page, err := db.SearchEvents(ctx, SearchQuery{Term: "ancient", Windows: []SearchWindow{{RoomNID: room, From: 0, To: 1 << 60}}, Limit: 10, Recent: true})
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, h := range page.Hits {
		evs, _ := db.EventsByNID(ctx, []int64{h.EventNID})
		found = append(found, evs[0].EventID)
	}
	if strings.Join(found, " ") != "$u $t $n $m" {
		t.Fatalf("backfilled search found %v", found)
	}
	yes := true
	page, err = db.SearchEvents(ctx, SearchQuery{Term: "ancient", Windows: []SearchWindow{{RoomNID: room, From: 0, To: 1 << 62}}, Limit: 10, ContainsURL: &yes})
	if err != nil || len(page.Hits) != 1 || page.Count != 1 {
		t.Fatalf("backfilled contains_url: %+v %v", page, err)
	}
}

// TestSearchQueryPlan keeps the search on the index: the FTS5 match first,
// events by primary key, the windows through an index.
func TestSearchQueryPlan(t *testing.T) {
	sqliteOnly(t, "reads SQLite's query plans")
	f := newSearchFixture(t)
	f.msg("!a", "$1", "@a:x", "hello")
	rows, err := f.db.q().QueryContext(context.Background(), `EXPLAIN QUERY PLAN `+searchQueries[[2]bool{false, true}],
		`("hello"*)`, `[1]`, 100, `[]`, nil, `[]`, nil, 0, nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		rows.Scan(&id, &parent, &unused, &detail)
		plan = append(plan, detail)
	}
	joined := strings.Join(plan, "\n")
	t.Logf("plan:\n%s", joined)
	for _, want := range []string{"VIRTUAL TABLE INDEX", "SEARCH d USING INTEGER PRIMARY KEY"} {
		if !strings.Contains(joined, want) {
			t.Fatalf("plan lacks %q:\n%s", want, joined)
		}
	}
	if strings.Contains(joined, "SCAN d\n") || strings.Contains(joined, "events") {
		t.Fatalf("plan scans events:\n%s", joined)
	}
}
