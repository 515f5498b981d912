-- MSC4306 thread subscriptions. An unsubscription keeps its row (subscribed
-- = 0) so that a later automatic subscription caused by an event from
-- before it is refused; stream_pos orders changes against events.
CREATE TABLE thread_subscriptions (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    thread_root TEXT NOT NULL,
    subscribed BIGINT NOT NULL,
    automatic BIGINT NOT NULL,
    stream_pos BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, thread_root)
);
-- Push evaluation reads a thread's subscribers.
CREATE INDEX thread_subscriptions_subscribers ON thread_subscriptions (room_id, thread_root, user_id) WHERE subscribed = 1;
