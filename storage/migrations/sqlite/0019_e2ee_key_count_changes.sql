-- The stream position at which a device's one-time or fallback keys were
-- last claimed by someone else: its /sync wakes to report the new counts.
CREATE TABLE e2e_key_count_changes (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    stream_pos INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
) WITHOUT ROWID;
