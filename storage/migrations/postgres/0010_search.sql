-- Full-text search of room events (POST /search).
--
-- event_search holds the searchable text of accepted timeline events as a
-- tsvector, event_nid = events.event_nid, searched through its GIN index
-- and ranked by ts_rank. The text is tokenized as SQLite's unicode61
-- tokenizer does it (runs of letters and digits, diacritics removed; the
-- server does that before PostgreSQL's 'simple' configuration lowercases
-- the words), and weighted by where it comes from (A: m.room.message
-- content.body, B: m.room.name content.name, C: m.room.topic content.topic),
-- so the request's keys and type filter become weight labels of the query.
-- Encrypted events are never indexed.
CREATE TABLE event_search (
    event_nid BIGINT PRIMARY KEY,
    doc tsvector NOT NULL
);
CREATE INDEX event_search_doc ON event_search USING GIN (doc);

-- What a search filters and orders the matches by, one narrow row per indexed
-- event: looking these up in events would read each match's whole JSON row
-- (five times slower for ten thousand matches). has_url: content.url is a
-- string (the filter's contains_url). Rows come and go with event_search.
CREATE TABLE event_search_docs (
    event_nid BIGINT PRIMARY KEY,
    room_nid BIGINT NOT NULL,
    stream_pos BIGINT NOT NULL,
    sender TEXT NOT NULL,
    has_url BIGINT NOT NULL DEFAULT 0
);

-- No PostgreSQL database predates this migration: nothing to index yet.
