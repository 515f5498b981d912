-- Unread counts read thread and highlight for every push action above a
-- receipt: with them in the index the count never visits the table.
DROP INDEX push_actions_user_room;
CREATE INDEX push_actions_user_room ON push_actions (user_id, room_nid, stream_pos, thread_id, highlight);
