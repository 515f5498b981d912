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
ALTER TABLE events ADD COLUMN current_after INTEGER NOT NULL DEFAULT 0;
-- A redaction's target, kept so that a redaction stored before its target
-- is applied when the target arrives.
ALTER TABLE events ADD COLUMN redacts TEXT;

ALTER TABLE stream_position ADD COLUMN backfill_pos INTEGER NOT NULL DEFAULT 0;

UPDATE events SET state_value = CASE type
        WHEN 'm.room.member' THEN json_extract(json, '$.content.membership')
        WHEN 'm.room.join_rules' THEN json_extract(json, '$.content.join_rule')
        WHEN 'm.room.history_visibility' THEN json_extract(json, '$.content.history_visibility')
    END
WHERE state_key IS NOT NULL AND type IN ('m.room.member', 'm.room.join_rules', 'm.room.history_visibility')
    AND json_type(json, CASE type
        WHEN 'm.room.member' THEN '$.content.membership'
        WHEN 'm.room.join_rules' THEN '$.content.join_rule'
        ELSE '$.content.history_visibility' END) = 'text';

UPDATE events SET redacts = COALESCE(json_extract(json, '$.redacts'), json_extract(json, '$.content.redacts'))
WHERE type = 'm.room.redaction' AND stream_pos IS NOT NULL;

-- Every room so far grew at one end: the current state after a message is
-- the state before it; after a state event it is the state before the next
-- timeline event of the room (or the room's current state for the last one).
UPDATE events SET current_after = state_before WHERE stream_pos IS NOT NULL AND state_key IS NULL;
UPDATE events SET current_after = COALESCE(
        (SELECT n.state_before FROM events n WHERE n.room_nid = events.room_nid AND n.stream_pos > events.stream_pos
            ORDER BY n.stream_pos LIMIT 1),
        (SELECT r.state_snapshot FROM rooms r WHERE r.room_nid = events.room_nid))
WHERE stream_pos IS NOT NULL AND state_key IS NOT NULL;

CREATE INDEX events_room_topo ON events (room_nid, depth, event_nid) WHERE stream_pos IS NOT NULL;
CREATE INDEX events_redacts ON events (redacts) WHERE redacts IS NOT NULL;
