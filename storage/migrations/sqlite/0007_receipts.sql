-- Read receipts: the latest of each type (and thread) per user and room.
CREATE TABLE receipts (
    room_nid INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    thread_id TEXT NOT NULL DEFAULT '',
    event_id TEXT NOT NULL,
    event_pos INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    stream_pos INTEGER NOT NULL,
    PRIMARY KEY (room_nid, user_id, receipt_type, thread_id)
) WITHOUT ROWID;
CREATE INDEX receipts_room_pos ON receipts (room_nid, stream_pos);
