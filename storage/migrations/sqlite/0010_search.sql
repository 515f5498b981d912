-- Full-text search of room events (POST /search).
--
-- event_search is the FTS5 index of the searchable text of accepted timeline
-- events, rowid = events.event_nid. Each event fills only the column of its
-- type (body: m.room.message content.body, name: m.room.name content.name,
-- topic: m.room.topic content.topic), so the request's keys and type filter
-- become an FTS5 column filter.
--
-- It is contentless (content=''): the text already lives in events.json, so
-- the index keeps only the inverted index and document sizes (bm25 needs
-- nothing more), not a second copy of every message. contentless_delete=1
-- (SQLite 3.43+) lets a redaction delete its target's row by rowid; the
-- redacted words stop matching at once and leave the index files at the next
-- segment merge. prefix='2 3' keeps prefix queries on short words cheap
-- (every search word is a prefix query). Encrypted events are never indexed.
CREATE VIRTUAL TABLE event_search USING fts5(
    body, name, topic,
    content = '',
    contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);

-- What a search filters and orders the matches by, one narrow row per indexed
-- event: looking these up in events would read each match's whole JSON row
-- (five times slower for ten thousand matches). has_url: content.url is a
-- string (the filter's contains_url). Rows come and go with event_search.
CREATE TABLE event_search_docs (
    event_nid INTEGER PRIMARY KEY,
    room_nid INTEGER NOT NULL,
    stream_pos INTEGER NOT NULL,
    sender TEXT NOT NULL,
    has_url INTEGER NOT NULL DEFAULT 0
);

-- Index what is already stored, so an upgraded server can search its history.
CREATE TEMP TABLE search_backfill AS
SELECT event_nid, room_nid, stream_pos, sender,
    CASE WHEN type = 'm.room.message' THEN json_extract(json, '$.content.body') END AS body,
    CASE WHEN type = 'm.room.name' THEN json_extract(json, '$.content.name') END AS name,
    CASE WHEN type = 'm.room.topic' THEN json_extract(json, '$.content.topic') END AS topic,
    COALESCE(json_type(json, '$.content.url'), '') = 'text' AS has_url
FROM events
WHERE status = 0 AND stream_pos IS NOT NULL AND redacted_by IS NULL
    AND ((type = 'm.room.message' AND json_type(json, '$.content.body') = 'text')
        OR (type = 'm.room.name' AND json_type(json, '$.content.name') = 'text')
        OR (type = 'm.room.topic' AND json_type(json, '$.content.topic') = 'text'));
INSERT INTO event_search (rowid, body, name, topic) SELECT event_nid, body, name, topic FROM search_backfill;
INSERT INTO event_search_docs (event_nid, room_nid, stream_pos, sender, has_url)
SELECT event_nid, room_nid, stream_pos, sender, has_url FROM search_backfill;
DROP TABLE search_backfill;
