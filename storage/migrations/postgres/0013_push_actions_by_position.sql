-- Push actions stored in stream order: an event's rows for all its
-- recipients land together at the end of the table instead of in one place
-- per recipient, so a message costs one table page plus one index page per
-- recipient (was three per recipient). The one index serves every per-user
-- query: unread counts (covering), /notifications and pushers.
CREATE TABLE push_actions_new (
    stream_pos BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    room_nid BIGINT NOT NULL,
    event_nid BIGINT NOT NULL,
    highlight BIGINT NOT NULL,
    thread_id TEXT NOT NULL DEFAULT 'main',
    actions TEXT NOT NULL,
    PRIMARY KEY (stream_pos, user_id)
);
INSERT INTO push_actions_new (stream_pos, user_id, room_nid, event_nid, highlight, thread_id, actions)
SELECT stream_pos, user_id, room_nid, event_nid, highlight, thread_id, actions FROM push_actions;
DROP TABLE push_actions;
ALTER TABLE push_actions_new RENAME TO push_actions;
CREATE INDEX push_actions_user ON push_actions (user_id, stream_pos, room_nid, thread_id, highlight);
