-- The Synapse-style admin API: purges, user flags, media quarantine.

-- Purges delete rows of rooms, events and state snapshots; SQLite gives a
-- new row the highest ID + 1, so deleting the newest rows would hand their
-- IDs out again, to rooms whose cached data (keyed by these IDs) would
-- then be wrong. A purge records each table's highest ID here first, and
-- new rows are numbered above it.
CREATE TABLE nid_floors (
    name TEXT PRIMARY KEY,
    nid BIGINT NOT NULL
);

-- Purges find a room's snapshots, and the rows of the events they delete.
CREATE INDEX state_snapshots_room ON state_snapshots (room_nid);
CREATE INDEX txn_ids_event ON txn_ids (event_id);
CREATE INDEX push_actions_event ON push_actions (event_nid);

-- shadow_banned: the user's sends are answered but go nowhere. locked: the
-- user cannot use the account (M_USER_LOCKED). suspended: the user may
-- read but not write (M_USER_SUSPENDED).
ALTER TABLE accounts ADD COLUMN shadow_banned BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN locked BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN suspended BIGINT NOT NULL DEFAULT 0;

-- Per-user overrides of the message rate limit (0: unlimited).
CREATE TABLE ratelimit_overrides (
    user_id TEXT PRIMARY KEY,
    messages_per_second BIGINT NOT NULL,
    burst_count BIGINT NOT NULL
);

-- Quarantined media is not served; protected media cannot be quarantined.
ALTER TABLE media ADD COLUMN quarantined_by TEXT;
ALTER TABLE media ADD COLUMN safe_from_quarantine BIGINT NOT NULL DEFAULT 0;

-- Sessions an admin opened as a user (login as a user): puppet_of is the
-- admin. They are not in the user's device list.
ALTER TABLE devices ADD COLUMN puppet_of TEXT;
