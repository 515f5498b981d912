-- What the admin API shows of each destination (Synapse's federation
-- admin API, from what the sender records): when it started failing
-- (failure_ts, NULL while it answers), the last failed attempt and the
-- wait before the next (retry_last_ts, retry_interval, 0 when not backing
-- off), and the stream position of the newest event it took
-- (last_success_pos, NULL until one was sent).
ALTER TABLE federation_destinations ADD COLUMN failure_ts BIGINT;
ALTER TABLE federation_destinations ADD COLUMN retry_last_ts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE federation_destinations ADD COLUMN retry_interval BIGINT NOT NULL DEFAULT 0;
ALTER TABLE federation_destinations ADD COLUMN last_success_pos BIGINT;

-- The rooms whose events went to each destination, with the stream position
-- of the newest one it took (Synapse's destination_rooms).
CREATE TABLE federation_destination_rooms (
    destination TEXT NOT NULL,
    room_nid BIGINT NOT NULL,
    stream_pos BIGINT NOT NULL,
    PRIMARY KEY (destination, room_nid)
);
