-- A user's memberships (every /sync pass) come from this index alone: with
-- the position and event in it, no lookup lands in the rooms' state rows,
-- which lie one room here, one there.
DROP INDEX current_state_members;
CREATE INDEX current_state_members ON current_state (state_key, membership, stream_pos, event_nid) WHERE type = 'm.room.member';
