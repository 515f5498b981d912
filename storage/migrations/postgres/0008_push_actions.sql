-- Per-recipient push rule outcomes of events that notify: unread counts,
-- highlights, /notifications and (later) push gateways read them.
CREATE TABLE push_actions (
    user_id TEXT NOT NULL,
    room_nid BIGINT NOT NULL,
    event_nid BIGINT NOT NULL,
    stream_pos BIGINT NOT NULL,
    highlight BIGINT NOT NULL,
    thread_id TEXT NOT NULL DEFAULT 'main',
    actions TEXT NOT NULL,
    PRIMARY KEY (user_id, event_nid)
);
CREATE INDEX push_actions_user_room ON push_actions (user_id, room_nid, stream_pos);
CREATE INDEX push_actions_user_pos ON push_actions (user_id, stream_pos);
