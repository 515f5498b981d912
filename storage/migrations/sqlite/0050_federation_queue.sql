-- Outbound federation (package federationapi/sender).

-- The stream position up to which the sender has queued local events for
-- other servers. It starts at the current position: events older than the
-- sender are never sent.
CREATE TABLE federation_cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pos INTEGER NOT NULL
);
INSERT INTO federation_cursor (id, pos) SELECT 1, pos FROM stream_position;

-- What each destination still has to receive, in queueing order. kind 0 is
-- a PDU (event_nid, room_nid), kind 1 an EDU (edu_type, edu_content; edu_key
-- for EDUs a newer one replaces). txn_id is set once the row is in a
-- transaction: the rows of one transaction are retried together under the
-- same ID until the destination answers, then deleted.
CREATE TABLE federation_queue (
    queue_nid INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    kind INTEGER NOT NULL,
    event_nid INTEGER,
    room_nid INTEGER,
    edu_type TEXT,
    edu_key TEXT,
    edu_content TEXT,
    txn_id TEXT
);
CREATE INDEX federation_queue_pending ON federation_queue (destination, kind, queue_nid) WHERE txn_id IS NULL;
CREATE INDEX federation_queue_txn ON federation_queue (destination, txn_id) WHERE txn_id IS NOT NULL;
CREATE INDEX federation_queue_keyed ON federation_queue (destination, edu_type, edu_key) WHERE edu_key IS NOT NULL;

-- Per destination: its backoff (consecutive failures, when to try again,
-- in ms), the transaction in flight ('' for none) and the last transaction
-- ID used (IDs only grow, so one is never reused).
CREATE TABLE federation_destinations (
    destination TEXT PRIMARY KEY,
    failures INTEGER NOT NULL DEFAULT 0,
    retry_at INTEGER NOT NULL DEFAULT 0,
    txn_id TEXT NOT NULL DEFAULT '',
    last_txn INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
