-- The ordering model for a DAG that does not only grow at one end.
--
-- stream_pos is the sync stream only: new timeline events take the next
-- positive position; backfilled history takes negative positions (counting
-- down), so it never wakes or reorders /sync. /messages, /context and
-- threads page in topological order: (depth, event_nid), event_nid being
-- arrival order. History visibility and "state at an event" read the
-- event's own state_before snapshot; current_after records the room's
-- current state once a timeline event was applied (what sync shows at a
-- stream position, also after a fork was resolved).

-- The one content field that queries filter on: membership for
-- m.room.member, join_rule for m.room.join_rules, history_visibility for
-- m.room.history_visibility (NULL otherwise).
ALTER TABLE events ADD COLUMN state_value TEXT;
ALTER TABLE events ADD COLUMN current_after BIGINT NOT NULL DEFAULT 0;
-- A redaction's target, kept so that a redaction stored before its target
-- is applied when the target arrives.
ALTER TABLE events ADD COLUMN redacts TEXT;

ALTER TABLE stream_position ADD COLUMN backfill_pos BIGINT NOT NULL DEFAULT 0;

-- No PostgreSQL database predates this migration: the events table is
-- empty, so there is nothing to fill in.

CREATE INDEX events_room_topo ON events (room_nid, depth, event_nid) WHERE stream_pos IS NOT NULL;
CREATE INDEX events_redacts ON events (redacts) WHERE redacts IS NOT NULL;
