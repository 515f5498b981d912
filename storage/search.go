package storage

// Full-text search of room events (POST /search). This file holds the
// search of both engines and every SQLite-only piece of it: the FTS5 table
// event_search (migration 0010), the translation of a user's search term
// into an FTS5 MATCH expression, bm25 ranking, the search windows as a JSON
// array parameter and a CROSS JOIN that fixes the join order. Their
// PostgreSQL forms (tsvector, GIN, ts_rank) are in search_postgres.go; the
// term's syntax and the order of results are the same on both.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode"
)

// searchColumns maps the event types whose text is indexed to their column
// in event_search and the content field holding the text.
var searchColumns = map[string]struct{ column, field string }{
	"m.room.message": {"body", "body"},
	"m.room.name":    {"name", "name"},
	"m.room.topic":   {"topic", "topic"},
}

// SearchableTypes are the event types whose text POST /search can find.
var SearchableTypes = []string{"m.room.message", "m.room.name", "m.room.topic"}

// searchText is the text of an event worth indexing ("" for none): the body
// of a message, a room's name, a room's topic (with the text/plain forms of
// m.topic that differ from it).
func searchText(typ string, content []byte) string {
	col, ok := searchColumns[typ]
	if !ok || len(content) == 0 {
		return ""
	}
	var c map[string]json.RawMessage
	if json.Unmarshal(content, &c) != nil {
		return ""
	}
	var text string
	json.Unmarshal(c[col.field], &text)
	if typ == "m.room.topic" {
		var mt struct {
			Text []struct {
				MIME string `json:"mimetype"`
				Body string `json:"body"`
			} `json:"m.text"`
		}
		if raw, ok := c["m.topic"]; ok && json.Unmarshal(raw, &mt) == nil {
			for _, t := range mt.Text {
				if (t.MIME == "" || t.MIME == "text/plain") && t.Body != "" && t.Body != text {
					text = strings.TrimSpace(text + "\n" + t.Body)
				}
			}
		}
	}
	return text
}

// IndexEventText keeps the search index in step with an accepted timeline
// event, inside the write that stores it (after InsertEvent): the text of a
// message, room name or topic is indexed under the event's NID; an
// m.room.redaction removes the text of its target (redacts) in the same
// room. Other events cost a map lookup.
func (tx *Tx) IndexEventText(ctx context.Context, eventNID, roomNID int64, typ string, content []byte, redacts string) error {
	if typ == "m.room.redaction" {
		if redacts == "" {
			return nil
		}
		var target int64
		err := tx.q().QueryRowContext(ctx, `SELECT event_nid FROM events WHERE event_id = $1 AND room_nid = $2`, redacts, roomNID).Scan(&target)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("finding redacted event: %w", err)
		}
		unindex := `DELETE FROM event_search WHERE rowid = $1`
		if tx.dialect == dialectPostgres {
			unindex = `DELETE FROM event_search WHERE event_nid = $1`
		}
		for _, q := range []string{unindex, `DELETE FROM event_search_docs WHERE event_nid = $1`} {
			if _, err := tx.exec(ctx, q, target); err != nil {
				return fmt.Errorf("unindexing redacted event: %w", err)
			}
		}
		return nil
	}
	text := searchText(typ, content)
	if text == "" {
		return nil
	}
	if err := tx.indexText(ctx, eventNID, typ, text); err != nil {
		return fmt.Errorf("indexing event text: %w", err)
	}
	var c struct {
		URL any `json:"url"`
	}
	json.Unmarshal(content, &c)
	_, hasURL := c.URL.(string)
	if err := tx.execLater(ctx, `INSERT INTO event_search_docs (event_nid, room_nid, stream_pos, sender, has_url)
		SELECT event_nid, room_nid, stream_pos, sender, $2 FROM events WHERE event_nid = $1 AND stream_pos IS NOT NULL`, eventNID, hasURL); err != nil {
		return fmt.Errorf("indexing event: %w", err)
	}
	return nil
}

// indexText adds the text of an event of type typ to the index.
func (tx *Tx) indexText(ctx context.Context, eventNID int64, typ, text string) error {
	if tx.dialect == dialectPostgres {
		return tx.pgIndexText(ctx, eventNID, typ, text)
	}
	// Column names are constants of searchColumns, never input.
	col := searchColumns[typ].column
	return tx.execLater(ctx, `INSERT INTO event_search (rowid, `+col+`) VALUES ($1, $2)`, eventNID, text)
}

// SearchRoom is a room a user may have searchable history in: one they
// have been joined to at some point.
type SearchRoom struct {
	NID       int64
	ID        string
	Encrypted bool // m.room.encryption is in the current state
	// Marks are the stream positions where the user's membership or the
	// room's history visibility changed, ascending: visibility of the
	// room's other events is constant between two marks.
	Marks []int64
}

const searchRoomsQuery = `SELECT r.room_nid, r.room_id,
		EXISTS (SELECT 1 FROM current_state c WHERE c.room_nid = r.room_nid AND c.type = 'm.room.encryption' AND c.state_key = '')
	FROM rooms r WHERE r.room_nid IN (
		SELECT e.room_nid FROM events e WHERE e.type = 'm.room.member' AND e.state_key = $1 AND e.stream_pos IS NOT NULL
			AND e.state_value = 'join')
	ORDER BY r.room_nid`

// SearchRooms lists the rooms the user has ever been joined to, with what
// decides which of their events the user may see.
func (db *DB) SearchRooms(ctx context.Context, userID string) ([]SearchRoom, error) {
	rows, err := db.q().QueryContext(ctx, searchRoomsQuery, userID)
	if err != nil {
		return nil, fmt.Errorf("listing searchable rooms: %w", err)
	}
	var out []SearchRoom
	index := map[int64]int{}
	for rows.Next() {
		var r SearchRoom
		if err := rows.Scan(&r.NID, &r.ID, &r.Encrypted); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading searchable room: %w", err)
		}
		index[r.NID] = len(out)
		out = append(out, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, nil
	}
	rows, err = db.q().QueryContext(ctx, `SELECT room_nid, stream_pos FROM events
			WHERE type = 'm.room.member' AND state_key = $1 AND stream_pos IS NOT NULL
		UNION ALL
		SELECT room_nid, stream_pos FROM events
			WHERE type = 'm.room.history_visibility' AND state_key = '' AND stream_pos IS NOT NULL
			AND room_nid IN (SELECT room_nid FROM events WHERE type = 'm.room.member' AND state_key = $1 AND stream_pos IS NOT NULL)`, userID)
	if err != nil {
		return nil, fmt.Errorf("reading visibility marks: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var nid, pos int64
		if err := rows.Scan(&nid, &pos); err != nil {
			return nil, fmt.Errorf("reading visibility mark: %w", err)
		}
		if i, ok := index[nid]; ok {
			out[i].Marks = append(out[i].Marks, pos)
		}
	}
	for i := range out {
		sort.Slice(out[i].Marks, func(a, b int) bool { return out[i].Marks[a] < out[i].Marks[b] })
	}
	return out, rows.Err()
}

// SearchWindow is a range of stream positions [From, To] of one room whose
// events the searcher may see.
type SearchWindow struct {
	RoomNID, From, To int64
}

// SearchCursor is where a page of results ends. Ordered by rank, it
// counts the results already returned: bm25 scores shift as the index
// grows, so a score is no stable place to resume from, while the order
// of the results mostly holds. Ordered by recency it is the last result's
// stream position, which never moves.
type SearchCursor struct {
	Offset int
	Pos    int64
}

// SearchQuery is one page of a search.
type SearchQuery struct {
	// Term is the user's search term, as typed: words (each matched as a
	// word prefix, all required), "quoted phrases", -excluded words and OR.
	Term string
	// Types restricts the event types whose text may match (a subset of
	// SearchableTypes); nil means all of them.
	Types []string
	// Windows are the only places results may come from, and UpTo the
	// last stream position searched (0: no limit).
	Windows []SearchWindow
	UpTo    int64
	// Senders (when non-nil) and NotSenders restrict the senders.
	Senders    []string
	NotSenders []string
	// ContainsURL, when set, keeps only events whose content has (or lacks) a url.
	ContainsURL *bool
	// Recent orders newest first; otherwise by rank, best first.
	Recent bool
	// After continues after a previous page's last result.
	After *SearchCursor
	Limit int
	// Groups asks for SearchPage.Rooms and Senders.
	Groups bool
}

// SearchHit is one result.
type SearchHit struct {
	EventNID  int64
	RoomNID   int64
	Sender    string
	StreamPos int64
	// Rank is how well the event matches: higher is better.
	Rank float64
}

// SearchPage is a page of results.
type SearchPage struct {
	Hits []SearchHit
	// Count is the number of results in all pages.
	Count int
	// More reports results after this page, which Next continues with.
	More bool
	Next SearchCursor
	// Rooms and Senders (with SearchQuery.Groups) tell, for each room and
	// sender of the page, whether the group has results after this page
	// and where a search restricted to the group continues.
	Rooms   map[int64]SearchGroup
	Senders map[string]SearchGroup
	// Highlights are the words searched for.
	Highlights []string
}

// SearchGroup is where a group of results stands after a page.
type SearchGroup struct {
	More bool
	Next SearchCursor
}

// ErrEmptySearch is returned for a search term with no word to search for.
var ErrEmptySearch = errors.New("the search term has no words")

// SearchEvents runs one page of a search. The result comes from the events
// in q.Windows only; redacted events never match.
func (db *DB) SearchEvents(ctx context.Context, q SearchQuery) (*SearchPage, error) {
	parts, words := parseSearchTerm(q.Term)
	expr := ftsMatch(parts, q.Types)
	query := searchQueries[[2]bool{q.Recent, q.Groups}]
	if db.dialect == dialectPostgres {
		expr, query = tsQuery(parts, q.Types), pgSearchQueries[[2]bool{q.Recent, q.Groups}]
	}
	if expr == "" {
		return nil, ErrEmptySearch
	}
	page := &SearchPage{Highlights: words}
	if len(q.Windows) == 0 || q.Limit <= 0 || (q.Senders != nil && len(q.Senders) == 0) {
		return page, nil
	}
	upTo := q.UpTo
	if upTo <= 0 {
		upTo = 1 << 62
	}
	full, partial := []int64{}, [][3]int64{}
	for _, w := range q.Windows {
		if w.From <= 1 && w.To >= upTo {
			full = append(full, w.RoomNID)
		} else if w.From <= w.To {
			partial = append(partial, [3]int64{w.RoomNID, w.From, w.To})
		}
	}
	partialJSON, _ := json.Marshal(partial)
	var senders any // NULL: any sender
	if q.Senders != nil {
		senders = arrayArg(q.Senders)
	}
	var containsURL any
	if q.ContainsURL != nil {
		containsURL = *q.ContainsURL
	}
	var offset, afterPos any = 0, nil
	if q.After != nil {
		offset, afterPos = q.After.Offset, q.After.Pos
		if q.Recent {
			offset = 0
		}
	}
	rows, err := db.q().QueryContext(ctx, query,
		expr, arrayArg(full), upTo, string(partialJSON), senders, arrayArg(q.NotSenders), containsURL, offset, afterPos, q.Limit)
	if err != nil {
		return nil, fmt.Errorf("searching: %w", err)
	}
	defer rows.Close()
	type group struct{ total, done int }
	var total, done int
	roomGroups, senderGroups := map[int64]*group{}, map[string]*group{}
	for rows.Next() {
		var kind, n, d int
		var h SearchHit
		var score float64
		if err := rows.Scan(&kind, &h.EventNID, &score, &h.StreamPos, &h.RoomNID, &h.Sender, &n, &d); err != nil {
			return nil, fmt.Errorf("reading search result: %w", err)
		}
		if kind == 0 {
			h.Rank = score // ts_rank: higher is better
			if db.dialect == dialectSQLite {
				h.Rank = -score // bm25: lower is better
			}
			page.Hits = append(page.Hits, h)
			continue
		}
		// Counts per room and sender: matches, and those up to the
		// page's end (in earlier pages or this one).
		total, done = total+n, done+d
		if q.Groups {
			if roomGroups[h.RoomNID] == nil {
				roomGroups[h.RoomNID] = &group{}
			}
			if senderGroups[h.Sender] == nil {
				senderGroups[h.Sender] = &group{}
			}
			for _, g := range []*group{roomGroups[h.RoomNID], senderGroups[h.Sender]} {
				g.total, g.done = g.total+n, g.done+d
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("searching: %w", err)
	}
	page.Count = total
	if len(page.Hits) == 0 {
		return page, nil
	}
	if q.Recent {
		sort.Slice(page.Hits, func(i, j int) bool { return page.Hits[i].StreamPos > page.Hits[j].StreamPos })
		if err := db.searchRanks(ctx, expr, page.Hits); err != nil {
			return nil, err
		}
	} else {
		sort.SliceStable(page.Hits, func(i, j int) bool {
			a, b := page.Hits[i], page.Hits[j]
			return a.Rank > b.Rank || (a.Rank == b.Rank && a.StreamPos > b.StreamPos)
		})
	}
	// Where the next page starts, for the whole search and within a group.
	lastPos := page.Hits[len(page.Hits)-1].StreamPos
	next := func(done int) SearchCursor {
		if q.Recent {
			return SearchCursor{Pos: lastPos}
		}
		return SearchCursor{Offset: done}
	}
	page.More, page.Next = total > done, next(done)
	if q.Groups {
		page.Rooms, page.Senders = map[int64]SearchGroup{}, map[string]SearchGroup{}
		for _, h := range page.Hits {
			g := roomGroups[h.RoomNID]
			page.Rooms[h.RoomNID] = SearchGroup{More: g.total > g.done, Next: next(g.done)}
			g = senderGroups[h.Sender]
			page.Senders[h.Sender] = SearchGroup{More: g.total > g.done, Next: next(g.done)}
		}
	}
	return page, nil
}

// searchRanks fills in the rank of hits found without ranking (by
// recency): bm25 of the matches in the hits' range of rowids, one FTS5 scan
// (a rowid IN list would repeat the query setup for every rowid).
func (db *DB) searchRanks(ctx context.Context, expr string, hits []SearchHit) error {
	lo, hi := hits[0].EventNID, hits[0].EventNID
	for _, h := range hits {
		lo, hi = min(lo, h.EventNID), max(hi, h.EventNID)
	}
	query, sign := `SELECT rowid, bm25(event_search) FROM event_search
		WHERE event_search MATCH $1 AND rowid BETWEEN $2 AND $3`, -1.0
	if db.dialect == dialectPostgres {
		query, sign = pgSearchRanksQuery, 1
	}
	rows, err := db.q().QueryContext(ctx, query, expr, lo, hi)
	if err != nil {
		return fmt.Errorf("ranking search results: %w", err)
	}
	defer rows.Close()
	want := make(map[int64]int, len(hits))
	for i, h := range hits {
		want[h.EventNID] = i
	}
	for rows.Next() {
		var nid int64
		var score float64
		if err := rows.Scan(&nid, &score); err != nil {
			return fmt.Errorf("ranking search results: %w", err)
		}
		if i, ok := want[nid]; ok {
			hits[i].Rank = sign * score
		}
	}
	return rows.Err()
}

// searchQuery is one page of a search in one statement. found: the FTS5
// match (first: CROSS JOIN fixes the order), each hit looked up in
// event_search_docs by primary key and kept if its room is wholly visible
// ($2, an array parameter of room NIDs: SQLite builds a temporary index
// for the IN list) or its position is inside a window of a partly visible room ($4,
// a JSON array of [room_nid, from, to]; short, as most rooms are wholly
// visible), up to position $3. $5 senders (an array parameter or NULL), $6
// excluded senders, $7 contains_url (NULL for either). page: the next $10 of found
// in result order, after $8 results (by rank) or before position $9 (by
// recency). The statement answers the page's rows (kind 0) and then counts
// (kind 1) of all matches and of those up to the page's end, in all or
// (with groups) per room and sender.
func searchQuery(recent, groups bool) string {
	// bm25 is negative, lower is better; ties go to the newer event.
	score, reverse, after, upToLast := `bm25(event_search)`, `score DESC, stream_pos ASC`,
		`TRUE ORDER BY score ASC, stream_pos DESC LIMIT $10 OFFSET $8`,
		`f.score < l.score OR (f.score = l.score AND f.stream_pos >= l.stream_pos)`
	if recent {
		score, reverse, after, upToLast = `0`, `stream_pos ASC`,
			`($9 IS NULL OR stream_pos < $9) ORDER BY stream_pos DESC LIMIT $10`, `f.stream_pos >= l.stream_pos`
	}
	counts := `SELECT 1, 0, 0, 0, 0, '', COUNT(*), COALESCE(SUM(CASE WHEN ` + upToLast + ` THEN 1 ELSE 0 END), 0)
	FROM found f LEFT JOIN last l`
	if groups {
		counts = `SELECT 1, 0, 0, 0, f.room_nid, f.sender, COUNT(*), SUM(CASE WHEN ` + upToLast + ` THEN 1 ELSE 0 END)
	FROM found f LEFT JOIN last l GROUP BY f.room_nid, f.sender`
	}
	return `WITH found AS MATERIALIZED (
	SELECT s.rowid AS nid, ` + score + ` AS score, d.stream_pos, d.room_nid, d.sender
	FROM event_search s CROSS JOIN event_search_docs d ON d.event_nid = s.rowid
	WHERE event_search MATCH $1 AND d.stream_pos <= $3
		AND (` + inArray("d.room_nid", 2) + `
			OR EXISTS (SELECT 1 FROM json_each($4) w WHERE json_extract(w.value, '$[0]') = d.room_nid
				AND d.stream_pos BETWEEN json_extract(w.value, '$[1]') AND json_extract(w.value, '$[2]')))
		AND ($5 IS NULL OR ` + inArray("d.sender", 5) + `)
		AND ` + notInArray("d.sender", 6) + `
		AND ($7 IS NULL OR d.has_url = $7)
), page AS MATERIALIZED (
	SELECT * FROM found WHERE ` + after + `
), last AS (
	SELECT score, stream_pos FROM page ORDER BY ` + reverse + ` LIMIT 1
)
SELECT 0, nid, score, stream_pos, room_nid, sender, 0, 0 FROM page
UNION ALL
` + counts
}

// searchQueries are the page statements by [recent, groups].
var searchQueries = map[[2]bool]string{
	{false, false}: searchQuery(false, false), {false, true}: searchQuery(false, true),
	{true, false}: searchQuery(true, false), {true, true}: searchQuery(true, true),
}

// searchPart is one element of a search term: a word or phrase, to match,
// to exclude, or to match as an alternative to the previous part.
type searchPart struct {
	words   []string
	quoted  bool // the user quoted it: its last word is no prefix
	negated bool
	or      bool // joined to the previous positive part by OR
}

// parseSearchTerm reads a search term in the manner of web search engines:
// words must all match, each as a prefix of a word; "a quoted phrase" must
// match as is; -word excludes; OR between two terms matches either. It
// returns the parts and the words to highlight.
func parseSearchTerm(term string) (parts []searchPart, highlights []string) {
	seen := map[string]bool{}
	pendingOr := false
	rs := []rune(term)
	for i := 0; i < len(rs); {
		if unicode.IsSpace(rs[i]) {
			i++
			continue
		}
		negated := false
		if rs[i] == '-' && i+1 < len(rs) && !unicode.IsSpace(rs[i+1]) {
			negated = true
			i++
		}
		var chunk string
		quoted := rs[i] == '"'
		if quoted {
			j := i + 1
			for j < len(rs) && rs[j] != '"' {
				j++
			}
			chunk = string(rs[i+1 : j])
			i = j + 1
		} else {
			j := i
			for j < len(rs) && !unicode.IsSpace(rs[j]) {
				j++
			}
			chunk = string(rs[i:j])
			i = j
		}
		words := searchWords(chunk)
		if len(words) == 0 {
			continue
		}
		if !quoted && !negated && len(words) == 1 && strings.EqualFold(words[0], "or") && len(parts) > 0 {
			pendingOr = true
			continue
		}
		p := searchPart{words: words, quoted: quoted, negated: negated}
		if !negated {
			p.or = pendingOr
			for _, w := range words {
				if k := strings.ToLower(w); !seen[k] {
					seen[k] = true
					highlights = append(highlights, w)
				}
			}
		}
		pendingOr = false
		parts = append(parts, p)
	}
	for _, p := range parts {
		if !p.negated {
			return parts, highlights
		}
	}
	return nil, nil // nothing to search for
}

// searchColumnsOf lists the index columns of types (nil: all) in
// SearchableTypes order, and whether that is all of them.
func searchColumnsOf(types []string) (cols []string, all bool) {
	if types == nil {
		for _, t := range SearchableTypes {
			cols = append(cols, searchColumns[t].column)
		}
		return cols, true
	}
	for _, t := range SearchableTypes {
		if slices.Contains(types, t) {
			cols = append(cols, searchColumns[t].column)
		}
	}
	return cols, len(cols) == len(SearchableTypes)
}

// ftsMatch turns a parsed search term into an FTS5 MATCH expression,
// restricted to the columns of types (nil: all). User text never reaches
// FTS5 as syntax: every word is a double-quoted string (FTS5 treats its
// contents as text to tokenize). An empty expression means nothing to
// search for.
func ftsMatch(parts []searchPart, types []string) string {
	// One word is a prefix query; several (a phrase, or a chunk such as
	// e-mail that the tokenizer splits) a phrase, whose last word is a
	// prefix unless the user quoted it.
	expr := combineSearchParts(parts, searchOperators{and: "AND", or: "OR", andNot: " NOT "}, func(p searchPart) string {
		text := `"` + strings.Join(p.words, " ") + `"`
		if !p.quoted {
			text += "*"
		}
		return text
	})
	if expr == "" {
		return ""
	}
	cols, all := searchColumnsOf(types)
	if len(cols) == 0 {
		return ""
	}
	if !all {
		expr = "{" + strings.Join(cols, " ") + "} : (" + expr + ")"
	}
	return expr
}

// searchOperators are an engine's spelling of a search expression's
// operators.
type searchOperators struct{ and, or, andNot string }

// combineSearchParts joins the expressions of the parts (term's; "" leaves
// a part out) the way both engines read a search term: positive parts by
// AND, or OR where the user wrote it (AND binding tighter), each negated
// part and-ed in excluded. "" when no positive part is left.
func combineSearchParts(parts []searchPart, ops searchOperators, term func(searchPart) string) string {
	var pos, neg []string
	for _, p := range parts {
		text := term(p)
		switch {
		case text == "":
		case p.negated:
			neg = append(neg, text)
		case p.or && len(pos) > 0:
			pos = append(pos, ops.or, text)
		case len(pos) > 0:
			pos = append(pos, ops.and, text)
		default:
			pos = append(pos, text)
		}
	}
	if len(pos) == 0 {
		return ""
	}
	expr := "(" + strings.Join(pos, " ") + ")"
	for _, n := range neg {
		expr += ops.andNot + n
	}
	return expr
}

// searchWords splits text into words the way the index's unicode61
// tokenizer does: runs of letters, digits and private-use characters.
// Quotes can never be part of a word, so quoting a word is always safe.
func searchWords(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return !(unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.Is(unicode.Co, r))
	})
}

// unindexEvents removes events from the search index (purges).
func (tx *Tx) unindexEvents(ctx context.Context, nids []int64) error {
	key := "rowid"
	if tx.dialect == dialectPostgres {
		key = "event_nid"
	}
	for _, q := range []string{`DELETE FROM event_search WHERE ` + inArray(key, 1),
		`DELETE FROM event_search_docs WHERE ` + inArray("event_nid", 1)} {
		if _, err := tx.exec(ctx, q, arrayArg(nids)); err != nil {
			return fmt.Errorf("unindexing purged events: %w", err)
		}
	}
	return nil
}
