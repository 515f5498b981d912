package storage

import "strings"

// SearchDocument is what PostgreSQL's search index holds for an event of
// type typ with this content: its words, space-separated, and the tsvector
// weight of the field they come from; ok is false when the event has no
// text to index. homeserver migrate-db rebuilds the index with it (SQLite's
// FTS5 index cannot be copied).
func SearchDocument(typ string, content []byte) (words, weight string, ok bool) {
	text := searchText(typ, content)
	if text == "" {
		return "", "", false
	}
	w := foldWords(text)
	if len(w) == 0 {
		return "", "", false
	}
	return strings.Join(w, " "), searchWeights[searchColumns[typ].column], true
}
