package storage

// The PostgreSQL forms of full-text search (see search.go): the index is a
// tsvector per event (migration 0010 of migrations/postgres) with a GIN
// index, the weight of its words telling the field they come from, and
// ts_rank ranks the matches. Words are cut and folded in Go exactly as
// SQLite's unicode61 tokenizer does (runs of letters and digits, diacritics
// removed) before PostgreSQL's 'simple' configuration lowercases them, so
// that a term finds the same events on both engines.

import (
	"context"
	"strings"
	"unicode"

	"golang.org/x/text/runes"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"
)

// searchWeights are the tsvector weights of the index columns.
var searchWeights = map[string]string{"body": "A", "name": "B", "topic": "C"}

// foldWords is text as the words the index holds, separated by spaces:
// letters and digits only, diacritics removed.
func foldWords(text string) []string {
	folded, _, err := transform.String(transform.Chain(norm.NFD, runes.Remove(runes.In(unicode.Mn)), norm.NFC), text)
	if err != nil {
		folded = text
	}
	return searchWords(folded)
}

// pgIndexText adds an event's text to the index, weighted by its column.
func (tx *Tx) pgIndexText(ctx context.Context, eventNID int64, typ, text string) error {
	words := foldWords(text)
	if len(words) == 0 {
		return nil
	}
	weight := searchWeights[searchColumns[typ].column]
	return tx.execLater(ctx, `INSERT INTO event_search (event_nid, doc) VALUES ($1, setweight(to_tsvector('simple', $2), '`+weight+`'))`,
		eventNID, strings.Join(words, " "))
}

// tsQuery turns a parsed search term into a tsquery text, restricted to
// the weights of the columns of types (nil: all). The meaning is
// ftsMatch's: positive parts joined by AND (&) and OR (|, AND binding
// tighter, as in FTS5), each excluded part and-ed in negated; a word is a
// prefix (:*), a phrase's words follow one another (<->), its last word a
// prefix unless quoted. Every word is letters and digits only, quoted as a
// lexeme: user text never becomes tsquery syntax.
func tsQuery(parts []searchPart, types []string) string {
	cols, all := searchColumnsOf(types)
	if len(cols) == 0 {
		return ""
	}
	labels := ""
	if !all {
		for _, c := range cols {
			labels += searchWeights[c]
		}
	}
	return combineSearchParts(parts, searchOperators{and: "&", or: "|", andNot: " & !"}, func(p searchPart) string {
		var words []string
		for _, w := range p.words {
			words = append(words, foldWords(w)...)
		}
		if len(words) == 0 {
			return ""
		}
		lexemes := make([]string, len(words))
		for i, w := range words {
			suffix := labels
			if i == len(words)-1 && !p.quoted {
				suffix = "*" + labels
			}
			if suffix != "" {
				suffix = ":" + suffix
			}
			lexemes[i] = "'" + w + "'" + suffix
		}
		return "(" + strings.Join(lexemes, " <-> ") + ")"
	})
}

// pgSearchRanksQuery ranks the matches of a tsquery ($1) among the events
// whose NIDs lie in [$2, $3].
const pgSearchRanksQuery = `SELECT event_nid, ts_rank(doc, to_tsquery('simple', $1)) FROM event_search
	WHERE doc @@ to_tsquery('simple', $1) AND event_nid BETWEEN $2 AND $3`

// pgSearchQuery is searchQuery for PostgreSQL: the same parameters and
// result rows, a tsquery text in $1, the partial windows as jsonb in $4.
// ts_rank is higher for better matches; ties go to the newer event.
func pgSearchQuery(recent, groups bool) string {
	score, reverse, after, upToLast := `ts_rank(s.doc, to_tsquery('simple', $1))`, `score ASC, stream_pos ASC`,
		// $9 (the recency cursor) is unused here but must have a type.
		`($9::bigint IS NULL OR TRUE) ORDER BY score DESC, stream_pos DESC LIMIT $10 OFFSET $8`,
		`f.score > l.score OR (f.score = l.score AND f.stream_pos >= l.stream_pos)`
	if recent {
		score, reverse, after, upToLast = `0::real`, `stream_pos ASC`,
			`($9::bigint IS NULL OR stream_pos < $9) ORDER BY stream_pos DESC LIMIT $10 OFFSET $8`, `f.stream_pos >= l.stream_pos`
	}
	counts := `SELECT 1, 0, 0::real, 0, 0, '', COUNT(*), COALESCE(SUM(CASE WHEN ` + upToLast + ` THEN 1 ELSE 0 END), 0)
	FROM found f LEFT JOIN last l ON TRUE`
	if groups {
		counts = `SELECT 1, 0, 0::real, 0, f.room_nid, f.sender, COUNT(*), SUM(CASE WHEN ` + upToLast + ` THEN 1 ELSE 0 END)
	FROM found f LEFT JOIN last l ON TRUE GROUP BY f.room_nid, f.sender`
	}
	return `WITH found AS MATERIALIZED (
	SELECT s.event_nid AS nid, ` + score + ` AS score, d.stream_pos, d.room_nid, d.sender
	FROM event_search s JOIN event_search_docs d ON d.event_nid = s.event_nid
	WHERE s.doc @@ to_tsquery('simple', $1) AND d.stream_pos <= $3
		AND (d.room_nid = ANY($2)
			OR EXISTS (SELECT 1 FROM jsonb_array_elements($4::jsonb) w WHERE (w->>0)::bigint = d.room_nid
				AND d.stream_pos BETWEEN (w->>1)::bigint AND (w->>2)::bigint))
		AND ($5::text[] IS NULL OR d.sender = ANY($5))
		AND d.sender <> ALL($6)
		AND ($7::bigint IS NULL OR d.has_url = $7)
), page AS MATERIALIZED (
	SELECT * FROM found WHERE ` + after + `
), last AS (
	SELECT score, stream_pos FROM page ORDER BY ` + reverse + ` LIMIT 1
)
SELECT 0, nid, score, stream_pos, room_nid, sender, 0, 0 FROM page
UNION ALL
` + counts
}

// pgSearchQueries are the page statements by [recent, groups].
var pgSearchQueries = map[[2]bool]string{
	{false, false}: pgSearchQuery(false, false), {false, true}: pgSearchQuery(false, true),
	{true, false}: pgSearchQuery(true, false), {true, true}: pgSearchQuery(true, true),
}
