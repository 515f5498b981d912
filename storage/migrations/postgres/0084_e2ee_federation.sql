-- End-to-end encryption across servers (internal/e2ee).

-- Local devices whose change other servers have yet to hear of: the latest
-- change of each device at its stream position (device_id '' stands for
-- the user's cross-signing keys). The publisher turns them into
-- m.device_list_update and m.signing_key_update EDUs and deletes them.
CREATE TABLE e2e_device_changes_outbound (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
CREATE INDEX e2e_device_changes_outbound_pos ON e2e_device_changes_outbound (stream_pos);

-- The stream position up to which the publisher has handled local device
-- changes and memberships. It starts at the current position.
CREATE TABLE e2e_device_list_cursor (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    pos BIGINT NOT NULL
);
INSERT INTO e2e_device_list_cursor (id, pos) SELECT 1, pos FROM stream_position;

-- The stream_id of the last m.device_list_update published for each local
-- user: the prev_id of the next one.
CREATE TABLE e2e_device_list_published (
    user_id TEXT PRIMARY KEY,
    stream_id BIGINT NOT NULL
);

-- Device lists of other servers' users this server shares a room with.
-- stream_id is the last update of their server reflected here; stale marks
-- a list that missed updates and is fetched again before it is used. Their
-- cross-signing keys live in e2e_cross_signing_keys.
CREATE TABLE e2e_remote_device_lists (
    user_id TEXT PRIMARY KEY,
    stream_id BIGINT NOT NULL,
    stale BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX e2e_remote_device_lists_stale ON e2e_remote_device_lists (user_id) WHERE stale = 1;

-- Their devices: the device keys as their server gave them (canonical JSON
-- without unsigned; NULL for a device without keys yet) and display name.
CREATE TABLE e2e_remote_devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    display_name TEXT,
    key_json TEXT,
    PRIMARY KEY (user_id, device_id)
);

-- m.direct_to_device EDUs delivered, by origin and message_id, so a
-- message sent again is not delivered twice (kept a week).
CREATE TABLE e2e_to_device_inbound (
    origin TEXT NOT NULL,
    message_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (origin, message_id)
);
CREATE INDEX e2e_to_device_inbound_ts ON e2e_to_device_inbound (origin, ts);
