-- Rooms, their events (the DAG) and room state.
CREATE TABLE rooms (
    room_nid INTEGER PRIMARY KEY,
    room_id TEXT NOT NULL UNIQUE,
    room_version TEXT NOT NULL,
    -- The current state snapshot and the DAG's forward extremities (JSON array of event IDs).
    state_snapshot INTEGER NOT NULL DEFAULT 0,
    forward_extremities TEXT NOT NULL DEFAULT '[]',
    max_depth INTEGER NOT NULL DEFAULT 0,
    -- Listed in the public room directory.
    published INTEGER NOT NULL DEFAULT 0,
    created_ts INTEGER NOT NULL
);

-- Every event we hold. status: 0 accepted, 1 outlier (no state, not in the
-- timeline), 2 rejected, 3 soft-failed. Timeline events have a stream_pos.
CREATE TABLE events (
    event_nid INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    room_nid INTEGER NOT NULL REFERENCES rooms(room_nid),
    type TEXT NOT NULL,
    state_key TEXT,
    sender TEXT NOT NULL,
    depth INTEGER NOT NULL,
    origin_server_ts INTEGER NOT NULL,
    stream_pos INTEGER,
    -- Snapshot of the room state before this event (0 for outliers).
    state_before INTEGER NOT NULL DEFAULT 0,
    status INTEGER NOT NULL DEFAULT 0,
    -- Relation target and type (m.relates_to), for /relations and aggregations.
    relates_to TEXT,
    rel_type TEXT,
    -- Set once a redaction applied; json then holds the redacted event.
    redacted_by TEXT,
    -- The sending device and its transaction ID, for unsigned.transaction_id.
    sender_device TEXT,
    txn_id TEXT,
    -- Unsigned data computed when stored (prev_content, replaces_state).
    unsigned_extra TEXT,
    json TEXT NOT NULL
);
CREATE INDEX events_room_stream ON events (room_nid, stream_pos) WHERE stream_pos IS NOT NULL;
CREATE INDEX events_stream ON events (stream_pos) WHERE stream_pos IS NOT NULL;
CREATE INDEX events_state ON events (room_nid, type, state_key, stream_pos) WHERE state_key IS NOT NULL;
CREATE INDEX events_relates ON events (relates_to, rel_type) WHERE relates_to IS NOT NULL;
CREATE INDEX events_room_ts ON events (room_nid, origin_server_ts);

-- prev_events edges of the DAG.
CREATE TABLE event_edges (
    event_nid INTEGER NOT NULL,
    prev_event_id TEXT NOT NULL,
    PRIMARY KEY (event_nid, prev_event_id)
) WITHOUT ROWID;
CREATE INDEX event_edges_prev ON event_edges (prev_event_id);

-- State snapshots are deltas over a parent snapshot; every so often a full
-- copy bounds the chain, so state is never copied per event.
CREATE TABLE state_snapshots (
    snapshot_nid INTEGER PRIMARY KEY,
    room_nid INTEGER NOT NULL,
    parent_nid INTEGER NOT NULL DEFAULT 0,
    chain_len INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE state_entries (
    snapshot_nid INTEGER NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_nid INTEGER NOT NULL,
    PRIMARY KEY (snapshot_nid, type, state_key)
) WITHOUT ROWID;

-- The current state of each room, with membership denormalised for queries
-- such as "rooms this user is joined to".
CREATE TABLE current_state (
    room_nid INTEGER NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_nid INTEGER NOT NULL,
    membership TEXT,
    stream_pos INTEGER NOT NULL,
    PRIMARY KEY (room_nid, type, state_key)
) WITHOUT ROWID;
CREATE INDEX current_state_members ON current_state (state_key, membership) WHERE type = 'm.room.member';

-- Client transaction IDs, so a retried send returns the original event.
CREATE TABLE txn_ids (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, scope, txn_id)
) WITHOUT ROWID;

CREATE TABLE room_aliases (
    alias TEXT PRIMARY KEY,
    room_nid INTEGER NOT NULL REFERENCES rooms(room_nid),
    creator TEXT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_nid);

CREATE TABLE forgotten_rooms (
    user_id TEXT NOT NULL,
    room_nid INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_nid)
) WITHOUT ROWID;
