-- What the admin API shows of each destination (Synapse's federation
-- admin API, from what the sender records): when it started failing
-- (failure_ts, NULL while it answers), the last failed attempt and the
-- wait before the next (retry_last_ts, retry_interval, 0 when not backing
-- off), and the stream position of the newest event it took
-- (last_success_pos, NULL until one was sent).
ALTER TABLE federation_destinations ADD COLUMN failure_ts INTEGER;
ALTER TABLE federation_destinations ADD COLUMN retry_last_ts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE federation_destinations ADD COLUMN retry_interval INTEGER NOT NULL DEFAULT 0;
ALTER TABLE federation_destinations ADD COLUMN last_success_pos INTEGER;

-- The rooms whose events went to each destination, with the stream position
-- of the newest one it took (Synapse's destination_rooms).
CREATE TABLE federation_destination_rooms (
    destination TEXT NOT NULL,
    room_nid INTEGER NOT NULL,
    stream_pos INTEGER NOT NULL,
    PRIMARY KEY (destination, room_nid)
) WITHOUT ROWID;
