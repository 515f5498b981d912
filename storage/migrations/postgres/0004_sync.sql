-- A user's membership events across rooms, in stream order (sync).
CREATE INDEX events_user_membership ON events (state_key, stream_pos) WHERE type = 'm.room.member' AND stream_pos IS NOT NULL;
