-- Application services (package appservice).

-- Per appservice: the stream position up to which events were considered
-- for it (a new appservice starts at the current position), the last
-- transaction ID used (IDs only grow, so one is never reused), the body of
-- the transaction in flight (NULL for none; kept so that a retry sends
-- exactly the same events under the same ID, also after a restart), and
-- how delivery is going (for the admin API and backoff).
CREATE TABLE appservice_state (
    as_id TEXT PRIMARY KEY,
    pos INTEGER NOT NULL,
    last_txn INTEGER NOT NULL DEFAULT 0,
    txn_body TEXT,
    txn_events INTEGER NOT NULL DEFAULT 0,
    txn_started_ts INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    last_success_ts INTEGER NOT NULL DEFAULT 0,
    last_failure_ts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT ''
);

-- Typing and presence waiting for an appservice, in queueing order: kind
-- is the transaction key it goes under ('ephemeral'); a newer entry with
-- the same ekey (typing per room, presence per user) replaces the older,
-- so the queue of a bridge that is down stays bounded.
CREATE TABLE appservice_queue (
    queue_nid INTEGER PRIMARY KEY AUTOINCREMENT,
    as_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    ekey TEXT NOT NULL,
    content TEXT NOT NULL
);
CREATE INDEX appservice_queue_by_as ON appservice_queue (as_id, queue_nid);
CREATE INDEX appservice_queue_by_key ON appservice_queue (as_id, ekey);

-- Appservices read the to-device messages of their users by position.
CREATE INDEX e2e_to_device_pos ON e2e_to_device (stream_pos);
